package protocol

import (
	"encoding/json"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestUnmarshalJSON(t *testing.T) {
	t.Parallel()
	ts := time.Date(2026, 11, 27, 12, 26, 13, 421915000, time.UTC)
	tests := []struct {
		in   string
		want any
	}{
		{`2`, int64(2)},
		{`-0`, int64(0)},
		{`2.0`, 2.0},
		{`1e2`, 100.0},
		{`-1.5E-7`, -1.5e-7},
		{`1e400`, math.Inf(1)},
		{`9223372036854775807`, int64(math.MaxInt64)},
		{`9223372036854775808`, json.Number("9223372036854775808")},
		{`-9223372036854775809`, json.Number("-9223372036854775809")},
		{` [Infinity, -Infinity, true, false, null] `, []any{math.Inf(1), math.Inf(-1), true, false, nil}},
		{`{"a": {"b": []}, "a": 1}`, map[string]any{"a": int64(1)}},
		{`"\u00e9\ud83d\ude00\n\"\\\/\b\f\r\t"`, "é😀\n\"\\/\b\f\r\t"},
		{`"\ud800x"`, "\uFFFDx"},
		{`"日本"`, "日本"},
		{`{"__type__": "datetime", "__value__": "2026-11-27T12:26:13.421915+00:00"}`, ts},
		{`{"__type__": "datetime", "__value__": "2026-11-27T13:26:13.421915+01:00"}`, ts},
		{`{"__type__": "datetime", "__value__": "2026-11-27T12:26:13.421915"}`, ts},
		{`{"__type__": "datetime", "__value__": "2026-11-27T12:26:13.421915Z"}`, ts},
		{`{"__type__": "date", "__value__": "2026-11-27"}`, time.Date(2026, 11, 27, 0, 0, 0, 0, time.UTC)},
		{`{"__type__": "time", "__value__": "12:26:13"}`, "12:26:13"},
		{`{"__type__": "uuid", "__value__": {"hex": "6FA459EAEE8A3CA4894EDB77E160355E"}}`, "6fa459ea-ee8a-3ca4-894e-db77e160355e"},
		{`{"__type__": "uuid", "__value__": "6fa459ea-ee8a-3ca4-894e-db77e160355e"}`, "6fa459ea-ee8a-3ca4-894e-db77e160355e"},
		{`{"__type__": "decimal", "__value__": "1.50"}`, json.Number("1.50")},
		{`{"__type__": "decimal", "__value__": "NaN"}`, math.NaN()},
		{`{"__type__": "bytes", "__value__": "héllo"}`, []byte("héllo")},
		{`{"__type__": "base64", "__value__": "/w=="}`, []byte{0xff}},
		{`{"__type__": "datetime", "__value__": "x", "other": 1}`, map[string]any{"__type__": "datetime", "__value__": "x", "other": int64(1)}},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			t.Parallel()
			got, err := UnmarshalJSON([]byte(tt.in))
			if err != nil {
				t.Fatalf("UnmarshalJSON(%s): %v", tt.in, err)
			}
			if !equalJSONValues(got, tt.want) {
				t.Errorf("UnmarshalJSON(%s) = %#v, want %#v", tt.in, got, tt.want)
			}
		})
	}
}

func TestUnmarshalJSONErrors(t *testing.T) {
	t.Parallel()
	for _, in := range []string{
		``, ` `, `{`, `[1,]`, `[1 2]`, `{"a" 1}`, `{1: 2}`, `01`, `1.`, `.5`, `+1`, `-`, `1e`,
		`tru`, `nan`, `"abc`, "\"a\x01\"", `"\x"`, `"\u12"`, `1 2`, `{} x`, "\xff",
		`{"__type__": "set", "__value__": [1]}`,
		`{"__type__": "datetime", "__value__": "2026-02-30T00:00:00"}`,
		`{"__type__": "datetime", "__value__": 5}`,
		`{"__type__": "uuid", "__value__": {"hex": "xyz"}}`,
		`{"__type__": "decimal", "__value__": "one"}`,
		`{"__type__": "base64", "__value__": "***"}`,
		strings.Repeat("[", 513) + strings.Repeat("]", 513),
		"1" + strings.Repeat("0", 4300),
	} {
		if v, err := UnmarshalJSON([]byte(in)); err == nil || !strings.HasPrefix(err.Error(), "protocol: json: ") {
			t.Errorf("UnmarshalJSON(%.40q) = %v, %v; want a protocol: json: error", in, v, err)
		}
	}
	if _, err := UnmarshalJSON([]byte(strings.Repeat("[", 512) + strings.Repeat("]", 512))); err != nil {
		t.Errorf("512 levels: %v", err)
	}
}

type taggedStruct struct {
	Name  string `json:"name"`
	Count int    `json:"count,omitempty"`
}

func TestMarshalJSON(t *testing.T) {
	t.Parallel()
	type named string
	tests := []struct {
		name string
		in   any
		want string
	}{
		{"nil", nil, `null`},
		{"whole float", 2.0, `2.0`},
		{"floats", []any{0.1, math.Copysign(0, -1), 1e16, 1e15, 1.5e-7, 0.0001, 1e-5, 123456789.125, float32(0.5)},
			`[0.1, -0.0, 1e+16, 1000000000000000.0, 1.5e-07, 0.0001, 1e-05, 123456789.125, 0.5]`},
		{"special floats", []any{math.NaN(), math.Inf(1), math.Inf(-1)}, `[NaN, Infinity, -Infinity]`},
		{"ints", []any{int8(-1), int16(2), int32(3), int64(math.MinInt64), uint8(5), uint64(math.MaxUint64), 7},
			`[-1, 2, 3, -9223372036854775808, 5, 18446744073709551615, 7]`},
		{"json.Number", json.Number("12345678901234567890"), `12345678901234567890`},
		{"strings", []any{"é", "😀", "\x7f", "a\"b\\c\n\t\x01", named("n")},
			`["\u00e9", "\ud83d\ude00", "\u007f", "a\"b\\c\n\t\u0001", "n"]`},
		{"sorted map", map[string]any{"b": 1, "a": []any{true, nil}}, `{"a": [true, null], "b": 1}`},
		{"typed map and slice", map[string]int{"x": 1}, `{"x": 1}`},
		{"nil slice and map", []any{[]any(nil), map[string]any(nil)}, `[null, null]`},
		{"time", time.Date(2026, 11, 27, 12, 26, 13, 421915999, time.UTC), `"2026-11-27T12:26:13.421915+00:00"`},
		{"time without micros", time.Date(2026, 1, 2, 3, 4, 5, 0, time.FixedZone("", -5*3600)), `"2026-01-02T03:04:05-05:00"`},
		{"utf-8 bytes", []byte("héllo"), `"h\u00e9llo"`},
		{"binary bytes", []byte{0xff, 0x00}, `{"__type__": "base64", "__value__": "/wA="}`},
		{"state", StateSuccess, `"SUCCESS"`},
		{"exception", ExceptionInfo{Type: "ValueError", Message: []any{"boom"}, Module: "builtins"},
			`{"exc_type": "ValueError", "exc_message": ["boom"], "exc_module": "builtins"}`},
		{"signature", Signature{Task: "proj.add", Args: []any{int64(2)}},
			`{"args": [2], "immutable": false, "kwargs": {}, "options": {}, "subtask_type": null, "task": "proj.add"}`},
		{"struct", taggedStruct{Name: "x"}, `{"name":"x"}`},
		{"pointer", &taggedStruct{Name: "y", Count: 2}, `{"name":"y","count":2}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := MarshalJSON(tt.in)
			if err != nil || string(got) != tt.want {
				t.Errorf("MarshalJSON(%#v) = %s, %v; want %s", tt.in, got, err, tt.want)
			}
		})
	}
}

func TestMarshalJSONErrors(t *testing.T) {
	t.Parallel()
	cycle := map[string]any{}
	cycle["self"] = cycle
	for _, in := range []any{cycle, make(chan int), map[int]func(){1: nil}} {
		if _, err := MarshalJSON(in); err == nil || !strings.HasPrefix(err.Error(), "protocol: json: ") {
			t.Errorf("MarshalJSON(%T) error = %v", in, err)
		}
	}
}

func TestJSONRoundTrip(t *testing.T) {
	t.Parallel()
	in := `{"a": [1, 2.0, -0.0, NaN, Infinity, 1e+16, "\u00e9", null, true], "b": {"c": 18446744073709551616}}`
	v, err := UnmarshalJSON([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	out, err := MarshalJSON(v)
	if err != nil || string(out) != in {
		t.Errorf("round trip = %s, %v; want %s", out, err, in)
	}
}

func TestFormatPythonFloat(t *testing.T) {
	t.Parallel()
	// Expected values are Python 3's repr().
	for f, want := range map[float64]string{
		0: "0.0", 1: "1.0", -2.5: "-2.5", 1e22: "1e+22", 1.7976931348623157e308: "1.7976931348623157e+308",
		5e-324: "5e-324", 9999999999999998: "9999999999999998.0", 0.3: "0.3", 1.0 / 3: "0.3333333333333333",
		123e-20: "1.23e-18", 0.00012: "0.00012",
	} {
		if got := formatPythonFloat(f); got != want {
			t.Errorf("formatPythonFloat(%v) = %s, want %s", f, got, want)
		}
	}
}

func TestParseISOTime(t *testing.T) {
	t.Parallel()
	want := time.Date(2026, 11, 27, 12, 26, 13, 421915000, time.UTC)
	for _, in := range []string{
		"2026-11-27T12:26:13.421915+00:00", "2026-11-27 12:26:13.421915", "2026-11-27T12:26:13.4219159Z",
		"2026-11-27T14:26:13.421915+0200", "2026-11-27T10:26:13.421915-02", "2026-11-27T12:26:13,421915",
	} {
		got, err := parseISOTime(in)
		if err != nil || !got.Equal(want) || got.Location() != time.UTC {
			t.Errorf("parseISOTime(%q) = %v, %v", in, got, err)
		}
	}
	for _, in := range []string{
		"", "2026", "2026-13-01", "2026-11-27T25:00:00", "2026-11-27T12", "2026-11-27T12:26:13+25:00",
		"2026-11-27T12:26:13.", "2026-11-27X12:26", "0001-01-01T00:00:00+01:00", "2026-11-27T12:26:13 ",
	} {
		if got, err := parseISOTime(in); err == nil {
			t.Errorf("parseISOTime(%q) = %v, want an error", in, got)
		}
	}
	if got := formatISOTime(want); got != "2026-11-27T12:26:13.421915+00:00" {
		t.Errorf("formatISOTime = %s", got)
	}
}

func TestValuesOfAnyWidth(t *testing.T) {
	t.Parallel()
	type table map[string]any // like amqp091.Table
	got := normalizeValue(table{"a": int8(1), "b": []any{int16(2), float32(0.5)}, "c": uint32(3), "d": []string{"x"}}, 0)
	want := map[string]any{"a": int64(1), "b": []any{int64(2), 0.5}, "c": int64(3), "d": []any{"x"}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("normalizeValue = %#v, want %#v", got, want)
	}
}
