package protocol

import (
	"encoding/json"
	"math"
	"strings"
	"testing"
	"time"
)

func TestPythonRepr(t *testing.T) {
	t.Parallel()
	// Expected values are celery.utils.saferepr.saferepr(x, 1024) in
	// Python 3 (see also TestGoldenReprs for reprs Python computed).
	tests := []struct {
		name string
		in   any
		want string
	}{
		{"none", nil, "None"},
		{"bools", []any{true, false}, "[True, False]"},
		{"numbers", []any{int64(-3), 2.0, 1e16, math.NaN(), math.Inf(-1), json.Number("123456789012345678901")},
			"[-3, 2.0, 1e+16, nan, -inf, 123456789012345678901]"},
		{"strings only escape single quotes", []any{"it's", "a\nb", "é"}, `['it\'s', 'a` + "\n" + `b', 'é']`},
		{"dict with sorted keys", map[string]any{"b": int64(1), "a": map[string]any{}}, "{'a': {}, 'b': 1}"},
		{"deeper than 3 levels", []any{[]any{[]any{[]any{int64(1)}}}}, "[[[[...]]]]"},
		{"dict deeper than 3 levels", map[string]any{"a": map[string]any{"b": map[string]any{"c": map[string]any{}}}},
			"{'a': {'b': {'c': {...}}}}"},
		{"bytes", []any{[]byte("hi"), []byte{0xff}}, "[b'hi', b'ff']"},
		{"time", time.Date(2026, 1, 2, 3, 4, 0, 0, time.UTC), "datetime.datetime(2026, 1, 2, 3, 4, tzinfo=datetime.timezone.utc)"},
		{"signature keeps Python's key order", Signature{Task: "proj.add", Args: []any{int64(1)}},
			"{'task': 'proj.add', 'args': [1], 'kwargs': {}, 'options': {}, 'subtask_type': None, 'immutable': False}"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := PythonRepr(tt.in); got != tt.want {
				t.Errorf("PythonRepr = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestArgsRepr(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		in   []any
		want string
	}{
		{nil, "()"},
		{[]any{int64(2)}, "(2,)"},
		{[]any{int64(2), "x"}, "(2, 'x')"},
	} {
		if got := ArgsRepr(tt.in); got != tt.want {
			t.Errorf("ArgsRepr(%v) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestPythonReprTruncates(t *testing.T) {
	t.Parallel()
	// saferepr cuts a long string at its last space before the limit.
	long := strings.Repeat("word ", 300)
	got := PythonRepr(long)
	if len(got) > reprMaxLen+5 || !strings.HasSuffix(got, "word...'") {
		t.Errorf("PythonRepr(long string) = %d chars ending %q", len(got), got[len(got)-20:])
	}
	// Past the budget, the rest of a list becomes ", ..." and the brackets
	// still open are closed.
	nums := make([]any, 1000)
	for i := range nums {
		nums[i] = int64(i)
	}
	got = PythonRepr([]any{nums})
	// Python: "..., 222, 223, 224, 225, 22..., ...]]" (the last number is cut too).
	if !strings.HasSuffix(got, "224, 225, 22..., ...]]") {
		t.Errorf("PythonRepr(long list) ends %q (%d chars)", got[len(got)-20:], len(got))
	}
}

// TestStrRepr checks Python's repr() of a str, as exception reprs show it
// (values from python3 -c 'print(repr(s))').
func TestStrRepr(t *testing.T) {
	t.Parallel()
	for s, want := range map[string]string{
		"abc":      `'abc'`,
		"it's":     `"it's"`,
		`it's "q"`: `'it\'s "q"'`,
		`say "hi"`: `'say "hi"'`,
		"a\\b":     `'a\\b'`,
		"t\tn\n":   `'t\tn\n'`,
		"\x00\x7f": `'\x00\x7f'`,
		"héllo":    `'héllo'`,
		"could not convert string to float: 'abc'": `"could not convert string to float: 'abc'"`,
	} {
		if got := StrRepr(s); got != want {
			t.Errorf("StrRepr(%q) = %s, want %s", s, got, want)
		}
	}
}
