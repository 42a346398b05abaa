package protocol

import (
	"bytes"
	"encoding/json"
	"errors"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// TestGoldenResults parses the metas Python's backends wrote and writes them
// back: byte for byte, except date_done, which Celery 5.2 writes naive
// (utcnow().isoformat()) and we write with +00:00 like Celery >= 5.4.
func TestGoldenResults(t *testing.T) {
	t.Parallel()
	paths, err := filepath.Glob("testdata/golden/result_*.json")
	if err != nil || len(paths) == 0 {
		t.Fatalf("no golden results: %v", err)
	}
	for _, p := range paths {
		f := readGoldenFile(t, p)
		name, raw := f["name"].(string), f["meta"].(string)
		isRPC := f["backend"] == "rpc"
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			m, err := ParseResultMeta([]byte(raw))
			if err != nil {
				t.Fatal(err)
			}
			var got []byte
			if isRPC {
				got, err = m.MessageJSON()
			} else {
				got, err = m.JSON()
			}
			if err != nil {
				t.Fatal(err)
			}
			want := raw
			if !m.DateDone.IsZero() {
				naive := strings.TrimSuffix(formatISOTime(m.DateDone), "+00:00")
				if !strings.Contains(raw, `"date_done": "`+naive+`"`) {
					t.Fatalf("date_done %v not found as %q in %s", m.DateDone, naive, raw)
				}
				want = strings.Replace(raw, naive, formatISOTime(m.DateDone), 1)
			}
			if _, isDict := m.Result.(map[string]any); isDict {
				// Python keeps the result dict's insertion order, Go sorts
				// it: compare the values, and the order of the meta's keys.
				if canonical(t, mustUnmarshal(t, got)) != canonical(t, mustUnmarshal(t, []byte(want))) ||
					!reflect.DeepEqual(topLevelKeys(t, got), topLevelKeys(t, []byte(want))) {
					t.Errorf("re-encoded meta:\n got %s\nwant %s", got, want)
				}
			} else if string(got) != want {
				t.Errorf("re-encoded meta:\n got %s\nwant %s", got, want)
			}
			if m.Status.Ready() == m.DateDone.IsZero() && !isRPC {
				t.Errorf("status %s with date_done %v", m.Status, m.DateDone)
			}
			switch m.Status {
			case StateFailure, StateRetry, StateRevoked:
				e, ok := ParseExceptionInfo(m.Result)
				if !ok || e.Type == "" || e.Module == "" || len(e.Message) == 0 {
					t.Errorf("ParseExceptionInfo(%v) = %+v, %v", m.Result, e, ok)
				}
				if m.Status != StateRevoked && !strings.HasPrefix(m.Traceback, "Traceback (most recent call last):") {
					t.Errorf("Traceback = %q", m.Traceback)
				}
			}
		})
	}
}

func mustUnmarshal(t *testing.T, data []byte) any {
	t.Helper()
	v, err := UnmarshalJSON(data)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// topLevelKeys returns the keys of a JSON object in the order written.
func topLevelKeys(t *testing.T, data []byte) []string {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(data))
	var keys []string
	if _, err := dec.Token(); err != nil { // '{'
		t.Fatal(err)
	}
	for dec.More() {
		k, err := dec.Token()
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, k.(string))
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			t.Fatal(err)
		}
	}
	return keys
}

func TestResultMetaJSON(t *testing.T) {
	t.Parallel()
	done := time.Date(2026, 11, 27, 12, 29, 5, 192058000, time.UTC)
	tests := []struct {
		name        string
		meta        ResultMeta
		json, reply string
	}{
		{
			name: "success with group and parent",
			meta: ResultMeta{
				TaskID: "t1", Status: StateSuccess, Result: int64(3), Children: []any{},
				DateDone: done, GroupID: "g1", ParentID: "p1",
			},
			json:  `{"status": "SUCCESS", "result": 3, "traceback": null, "children": [], "date_done": "2026-11-27T12:29:05.192058+00:00", "group_id": "g1", "parent_id": "p1", "task_id": "t1"}`,
			reply: `{"task_id": "t1", "status": "SUCCESS", "result": 3, "traceback": null, "children": []}`,
		},
		{
			name: "failure with an ExceptionInfo",
			meta: ResultMeta{
				TaskID: "t2", Status: StateFailure, DateDone: done, Traceback: "Traceback...\n",
				Result: ExceptionInfo{Type: "ValueError", Message: []any{"boom"}, Module: "builtins"},
			},
			json:  `{"status": "FAILURE", "result": {"exc_type": "ValueError", "exc_message": ["boom"], "exc_module": "builtins"}, "traceback": "Traceback...\n", "children": null, "date_done": "2026-11-27T12:29:05.192058+00:00", "task_id": "t2"}`,
			reply: `{"task_id": "t2", "status": "FAILURE", "result": {"exc_type": "ValueError", "exc_message": ["boom"], "exc_module": "builtins"}, "traceback": "Traceback...\n", "children": null}`,
		},
		{
			name:  "custom state, no date",
			meta:  ResultMeta{TaskID: "t3", Status: "PROGRESS", Result: map[string]any{"done": 0.5}},
			json:  `{"status": "PROGRESS", "result": {"done": 0.5}, "traceback": null, "children": null, "date_done": null, "task_id": "t3"}`,
			reply: `{"task_id": "t3", "status": "PROGRESS", "result": {"done": 0.5}, "traceback": null, "children": null}`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := tt.meta.JSON()
			if err != nil || string(got) != tt.json {
				t.Errorf("JSON() = %s, %v\nwant %s", got, err, tt.json)
			}
			got, err = tt.meta.MessageJSON()
			if err != nil || string(got) != tt.reply {
				t.Errorf("MessageJSON() = %s, %v\nwant %s", got, err, tt.reply)
			}
			back, err := ParseResultMeta([]byte(tt.json))
			if err != nil {
				t.Fatal(err)
			}
			if again, _ := back.JSON(); string(again) != tt.json {
				t.Errorf("ParseResultMeta(JSON()).JSON() = %s", again)
			}
		})
	}
}

func TestParseResultMetaErrors(t *testing.T) {
	t.Parallel()
	for _, in := range []string{
		`[]`, `{"result": 1}`, `{"status": 3}`, `{"status": "SUCCESS", "children": {}}`,
		`{"status": "SUCCESS", "date_done": "yesterday"}`, `{"status": "SUCCESS"`,
	} {
		if _, err := ParseResultMeta([]byte(in)); err == nil || !strings.HasPrefix(err.Error(), "protocol: ") {
			t.Errorf("ParseResultMeta(%s) error = %v, want a protocol error", in, err)
		}
	}
}

func TestParseExceptionInfo(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		in   any
		want ExceptionInfo
		ok   bool
	}{
		{"4.2+ list", map[string]any{"exc_type": "ValueError", "exc_message": []any{"boom", int64(1)}, "exc_module": "builtins"},
			ExceptionInfo{"ValueError", []any{"boom", int64(1)}, "builtins"}, true},
		{"4.0 string", map[string]any{"exc_type": "KeyError", "exc_message": "'x'"},
			ExceptionInfo{"KeyError", []any{"'x'"}, ""}, true},
		{"null message", map[string]any{"exc_type": "E", "exc_message": nil, "exc_module": "m"},
			ExceptionInfo{"E", []any{}, "m"}, true},
		{"value", ExceptionInfo{Type: "E"}, ExceptionInfo{Type: "E"}, true},
		{"not an exception", map[string]any{"pid": int64(1)}, ExceptionInfo{}, false},
		{"not a dict", "boom", ExceptionInfo{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, ok := ParseExceptionInfo(tt.in)
			if ok != tt.ok || !reflect.DeepEqual(got, tt.want) {
				t.Errorf("ParseExceptionInfo = %+v, %v; want %+v, %v", got, ok, tt.want, tt.ok)
			}
			if ok {
				back, ok := ParseExceptionInfo(got.Map())
				if !ok || back.Type != got.Type || back.Module != got.Module || len(back.Message) != len(got.Message) {
					t.Errorf("ParseExceptionInfo(Map()) = %+v", back)
				}
			}
		})
	}
}

func TestDecodeErrorMessage(t *testing.T) {
	t.Parallel()
	err := error(&DecodeError{TaskID: "id1", Task: "proj.add", Err: ErrInvalidBody})
	if got, want := err.Error(), "protocol: decode task proj.add[id1]: invalid body"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	if !errors.Is(err, ErrInvalidBody) {
		t.Error("errors.Is(err, ErrInvalidBody) = false")
	}
}
