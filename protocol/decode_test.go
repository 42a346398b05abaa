package protocol

import (
	"bytes"
	"compress/zlib"
	"errors"
	"fmt"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"
)

// v2Headers returns minimal v2 headers for task proj.add, id "id1".
func v2Headers() map[string]any {
	return map[string]any{"task": "proj.add", "id": "id1"}
}

const v2Body = `[[2, 2], {}, {"callbacks": null, "errbacks": null, "chain": null, "chord": null}]`

func zlibCompress(t *testing.T, data []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	w := zlib.NewWriter(&buf)
	if _, err := w.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestDecodeErrors(t *testing.T) {
	t.Parallel()
	with := func(k string, v any) map[string]any {
		h := v2Headers()
		h[k] = v
		return h
	}
	bomb := zlibCompress(t, make([]byte, maxBodySize+1))
	tests := []struct {
		name     string
		env      Envelope
		sentinel error
		id, task string
	}{
		{"pickle", Envelope{ContentType: "application/x-python-serialize", Headers: v2Headers(), Body: []byte("\x80\x04")}, ErrContentDisallowed, "id1", "proj.add"},
		{"yaml", Envelope{ContentType: "application/x-yaml", Headers: v2Headers()}, ErrContentDisallowed, "id1", "proj.add"},
		{"msgpack", Envelope{ContentType: "application/x-msgpack", Headers: v2Headers()}, ErrContentDisallowed, "id1", "proj.add"},
		{"content encoding", Envelope{ContentEncoding: "latin-1", Headers: v2Headers(), Body: []byte(v2Body)}, ErrContentDisallowed, "id1", "proj.add"},
		{"lzma", Envelope{Headers: with("compression", "application/x-lzma"), Body: []byte(v2Body)}, ErrContentDisallowed, "id1", "proj.add"},
		{"bad zlib", Envelope{Headers: with("compression", "application/x-gzip"), Body: []byte(v2Body)}, ErrInvalidBody, "id1", "proj.add"},
		{"zlib bomb", Envelope{Headers: with("compression", "application/x-gzip"), Body: bomb}, ErrInvalidBody, "id1", "proj.add"},
		{"not json", Envelope{Headers: v2Headers(), Body: []byte("[[2, 2], {}")}, ErrInvalidBody, "id1", "proj.add"},
		{"2-element body", Envelope{Headers: v2Headers(), Body: []byte(`[[], {}]`)}, ErrInvalidBody, "id1", "proj.add"},
		{"args not a list", Envelope{Headers: v2Headers(), Body: []byte(`[{}, {}, null]`)}, ErrInvalidBody, "id1", "proj.add"},
		{"kwargs not a dict", Envelope{Headers: v2Headers(), Body: []byte(`[[], [], null]`)}, ErrInvalidBody, "id1", "proj.add"},
		{"embed not a dict", Envelope{Headers: v2Headers(), Body: []byte(`[[], {}, 1]`)}, ErrInvalidBody, "id1", "proj.add"},
		{"bad callback", Envelope{Headers: v2Headers(), Body: []byte(`[[], {}, {"callbacks": [1]}]`)}, ErrInvalidBody, "id1", "proj.add"},
		{"dict body without args", Envelope{Headers: v2Headers(), Body: []byte(`{"task": "x"}`)}, ErrInvalidBody, "id1", "proj.add"},
		{"no task anywhere", Envelope{Body: []byte(v2Body)}, ErrUnknownFormat, "", ""},
		{"v1 dict without task", Envelope{Body: []byte(`{"id": "v1id", "args": []}`)}, ErrUnknownFormat, "v1id", ""},
		{"bad eta", Envelope{Headers: with("eta", "tomorrow"), Body: []byte(v2Body)}, ErrBadHeader, "id1", "proj.add"},
		{"bad expires type", Envelope{Headers: with("expires", int32(5)), Body: []byte(v2Body)}, ErrBadHeader, "id1", "proj.add"},
		{"bad retries", Envelope{Headers: with("retries", "1"), Body: []byte(v2Body)}, ErrBadHeader, "id1", "proj.add"},
		{"bad timelimit", Envelope{Headers: with("timelimit", []any{int32(1)}), Body: []byte(v2Body)}, ErrBadHeader, "id1", "proj.add"},
		{"negative timelimit", Envelope{Headers: with("timelimit", []any{-1.0, nil}), Body: []byte(v2Body)}, ErrBadHeader, "id1", "proj.add"},
		{"task not a string", Envelope{Headers: map[string]any{"task": int32(1), "id": "id1"}, Body: []byte(v2Body)}, ErrBadHeader, "id1", ""},
		{"no id", Envelope{Headers: map[string]any{"task": "proj.add"}, Body: []byte(v2Body)}, ErrBadHeader, "", "proj.add"},
		{"v1 bad eta", Envelope{Body: []byte(`{"task": "proj.add", "id": "v1id", "args": [], "eta": "x"}`)}, ErrBadHeader, "v1id", "proj.add"},

		// Hostile headers and properties: rejected before use, and the
		// DecodeError carries only what is safe to store under.
		{"task not UTF-8", Envelope{Headers: with("task", "no.such\xff\xfe"), Body: []byte(v2Body)}, ErrBadHeader, "id1", ""},
		{"id not UTF-8", Envelope{Headers: with("id", "id\xff"), Body: []byte(v2Body)}, ErrBadHeader, "", "proj.add"},
		{"task as bytes", Envelope{Headers: with("task", []byte("proj.add")), Body: []byte(v2Body)}, ErrBadHeader, "id1", ""},
		{"id as a table", Envelope{Headers: with("id", map[string]any{"a": "b"}), Body: []byte(v2Body)}, ErrBadHeader, "", "proj.add"},
		{"task name too long", Envelope{Headers: with("task", strings.Repeat("t", MaxNameLen+1)), Body: []byte(v2Body)}, ErrBadHeader, "id1", ""},
		{"id too long", Envelope{Headers: with("id", strings.Repeat("i", MaxIDLen+1)), Body: []byte(v2Body)}, ErrBadHeader, "", "proj.add"},
		{"id with a newline", Envelope{Headers: with("id", "id1\nFAKE LOG LINE"), Body: []byte(v2Body)}, ErrBadHeader, "", "proj.add"},
		{"task with a NUL", Envelope{Headers: with("task", "proj.add\x00"), Body: []byte(v2Body)}, ErrBadHeader, "id1", ""},
		{"root_id not UTF-8", Envelope{Headers: with("root_id", "\xc3"), Body: []byte(v2Body)}, ErrBadHeader, "id1", "proj.add"},
		{"parent_id too long", Envelope{Headers: with("parent_id", strings.Repeat("p", MaxIDLen+1)), Body: []byte(v2Body)}, ErrBadHeader, "id1", "proj.add"},
		{"group of the wrong type", Envelope{Headers: with("group", int64(1)), Body: []byte(v2Body)}, ErrBadHeader, "id1", "proj.add"},
		{"shadow not UTF-8", Envelope{Headers: with("shadow", "\xff"), Body: []byte(v2Body)}, ErrBadHeader, "id1", "proj.add"},
		{"argsrepr too long", Envelope{Headers: with("argsrepr", strings.Repeat("a", MaxHeaderStringLen+1)), Body: []byte(v2Body)}, ErrBadHeader, "id1", "proj.add"},
		{"custom header not UTF-8", Envelope{Headers: with("x-trace", "\xfe"), Body: []byte(v2Body)}, ErrBadHeader, "id1", "proj.add"},
		{"nested header not UTF-8", Envelope{Headers: with("stamps", map[string]any{"k": []any{"ok", "\xfe"}}), Body: []byte(v2Body)}, ErrBadHeader, "id1", "proj.add"},
		{"header name not UTF-8", Envelope{Headers: with("x-\xff", "v"), Body: []byte(v2Body)}, ErrBadHeader, "id1", "proj.add"},
		{"header name too long", Envelope{Headers: with(strings.Repeat("k", MaxHeaderKeyLen+1), "v"), Body: []byte(v2Body)}, ErrBadHeader, "id1", "proj.add"},
		{"headers too large", Envelope{Headers: manyHeaders(), Body: []byte(v2Body)}, ErrBadHeader, "id1", "proj.add"},
		{"NaN header", Envelope{Headers: with("x-n", math.NaN()), Body: []byte(v2Body)}, ErrBadHeader, "id1", "proj.add"},
		{"correlation_id not UTF-8", Envelope{Headers: v2Headers(), Body: []byte(v2Body), CorrelationID: "\xff"}, ErrBadHeader, "id1", "proj.add"},
		{"reply_to too long", Envelope{Headers: v2Headers(), Body: []byte(v2Body), ReplyTo: strings.Repeat("r", MaxIDLen+1)}, ErrBadHeader, "id1", "proj.add"},
		{"content_type not UTF-8", Envelope{Headers: v2Headers(), Body: []byte(v2Body), ContentType: "application/json\xff"}, ErrBadHeader, "id1", "proj.add"},
		{"v1 task too long", Envelope{Body: []byte(`{"task": "` + strings.Repeat("t", MaxNameLen+1) + `", "id": "v1id", "args": []}`)}, ErrBadHeader, "v1id", ""},
		{"v1 id with a control character", Envelope{Body: []byte(`{"task": "proj.add", "id": "v1\u0007", "args": []}`)}, ErrBadHeader, "", "proj.add"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			m, err := Decode(tt.env)
			if err == nil {
				t.Fatalf("Decode = %+v, want an error", m)
			}
			var derr *DecodeError
			if !errors.As(err, &derr) {
				t.Fatalf("error %v is a %T, not a *DecodeError", err, err)
			}
			if !errors.Is(err, tt.sentinel) {
				t.Errorf("error %q does not wrap %v", err, tt.sentinel)
			}
			if derr.TaskID != tt.id || derr.Task != tt.task {
				t.Errorf("DecodeError carries %q[%q], want %q[%q]", derr.Task, derr.TaskID, tt.task, tt.id)
			}
			if !strings.HasPrefix(err.Error(), "protocol: decode task ") || strings.Count(err.Error(), "protocol:") != 1 {
				t.Errorf("error text %q", err)
			}
		})
	}
}

// manyHeaders returns valid headers whose total size exceeds
// MaxHeadersSize, each value within MaxHeaderStringLen.
func manyHeaders() map[string]any {
	h := v2Headers()
	for i := 0; i*MaxHeaderStringLen <= MaxHeadersSize; i++ {
		h[fmt.Sprintf("x-big-%d", i)] = strings.Repeat("b", MaxHeaderStringLen)
	}
	return h
}

// TestDecodeLimits: values exactly at the limits are accepted.
func TestDecodeLimits(t *testing.T) {
	t.Parallel()
	h := v2Headers()
	h["task"] = strings.Repeat("t", MaxNameLen)
	h["id"] = strings.Repeat("i", MaxIDLen)
	h["argsrepr"] = strings.Repeat("a", MaxHeaderStringLen)
	h["x-bytes"] = make([]byte, MaxHeaderStringLen)
	h["x-unicode"] = "é ✓ 視頻"
	env := Envelope{Headers: h, Body: []byte(v2Body), CorrelationID: strings.Repeat("c", MaxIDLen), ReplyTo: "amq.rabbitmq.reply-to.g1h2"}
	m, err := Decode(env)
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Task) != MaxNameLen || len(m.ID) != MaxIDLen {
		t.Errorf("Decode cut the values: task %d bytes, id %d bytes", len(m.Task), len(m.ID))
	}
}

// TestDecodeHeaderTypes feeds headers as amqp091-go returns them.
func TestDecodeHeaderTypes(t *testing.T) {
	t.Parallel()
	type table map[string]any // stands in for amqp091.Table
	eta := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	env := Envelope{
		ContentType: "application/json; charset=utf-8",
		Headers: map[string]any{
			"lang": "py", "task": "proj.add", "id": "id1", "shadow": nil,
			"eta": eta, "expires": "2026-11-27T13:00:00", "group": "g", "group_index": int8(3),
			"retries": int16(2), "timelimit": []any{int64(30), float32(1.5)},
			"root_id": "r", "parent_id": nil, "argsrepr": "(2, 2)", "kwargsrepr": "{}",
			"origin": "gen1@host", "ignore_result": true, "replaced_task_nesting": int(1),
			"x-table": table{"n": int32(7)}, "x-bytes": []byte("b"), "x-float": float32(0.25),
			"meth": nil, "compression": nil,
		},
		Body: []byte(v2Body), CorrelationID: "id1", ReplyTo: "reply", Priority: 4,
	}
	m, err := Decode(env)
	if err != nil {
		t.Fatal(err)
	}
	three := 3
	want := &Message{
		Version: 2, ID: "id1", Task: "proj.add", Args: []any{int64(2), int64(2)}, Kwargs: map[string]any{},
		Lang: "py", ETA: eta, Expires: eta.Add(time.Hour), Group: "g", GroupIndex: &three, Retries: 2,
		TimeLimit: TimeLimit{Hard: 30 * time.Second, Soft: 1500 * time.Millisecond}, RootID: "r",
		ArgsRepr: "(2, 2)", KwargsRepr: "{}", Origin: "gen1@host", IgnoreResult: true, ReplacedTaskNesting: 1,
		ExtraHeaders:  map[string]any{"x-table": map[string]any{"n": int64(7)}, "x-bytes": []byte("b"), "x-float": 0.25},
		CorrelationID: "id1", ReplyTo: "reply", Priority: 4,
	}
	if !reflect.DeepEqual(m, want) {
		t.Errorf("Decode =\n%+v\nwant\n%+v", m, want)
	}
}

func TestDecodeFormats(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		env     Envelope
		version int
		check   func(*Message) bool
	}{
		{"empty content type is json", Envelope{Headers: v2Headers(), Body: []byte(v2Body)}, 2,
			func(m *Message) bool { return len(m.Args) == 2 }},
		{"null embed", Envelope{Headers: v2Headers(), Body: []byte(`[[], {}, null]`)}, 2,
			func(m *Message) bool { return m.Callbacks == nil && m.Chain == nil }},
		{"empty chain stays empty, not null", Envelope{Headers: v2Headers(), Body: []byte(`[[], {}, {"chain": []}]`)}, 2,
			func(m *Message) bool { return m.Chain != nil && len(m.Chain) == 0 }},
		{"zlib", Envelope{Headers: map[string]any{"task": "proj.add", "id": "id1", "compression": "application/x-gzip"},
			Body: zlibCompress(t, []byte(v2Body))}, 2, func(m *Message) bool { return len(m.Args) == 2 }},
		{"hybrid: headers override the body", Envelope{
			Headers: map[string]any{"task": "proj.add", "id": "id1", "retries": int32(3)},
			Body:    []byte(`{"task": "old", "id": "id1", "args": [1], "kwargs": {"k": 1}, "retries": 1, "group": "g", "callbacks": [{"task": "cb"}]}`)},
			2, func(m *Message) bool {
				return m.Task == "proj.add" && m.Retries == 3 && m.Group == "g" && len(m.Callbacks) == 1 && m.Kwargs["k"] == int64(1)
			}},
		{"v1 with taskset", Envelope{Headers: map[string]any{"x-h": "v"},
			Body: []byte(`{"task": "proj.add", "id": "v1", "args": [1], "taskset": "ts", "group": null, "utc": true}`)},
			1, func(m *Message) bool {
				return m.Group == "ts" && m.ArgsRepr == "[1]" && m.KwargsRepr == "{}" && m.ExtraHeaders["x-h"] == "v"
			}},
		{"v1 without args", Envelope{Body: []byte(`{"task": "proj.add", "id": "v1"}`)}, 1,
			func(m *Message) bool { return m.Args != nil && m.Kwargs != nil }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			m, err := Decode(tt.env)
			if err != nil {
				t.Fatal(err)
			}
			if m.Version != tt.version || !tt.check(m) {
				t.Errorf("Decode =\n%s(version %d)", canonicalMessage(t, m), m.Version)
			}
		})
	}
}
