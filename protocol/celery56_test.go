package protocol

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"
)

// The files in testdata/captures/celery-5.6.3 are what Python Celery 5.6.3
// (kombu 5.6.2, py-amqp 5.3.1) publishes and stores, recorded without a
// broker by bench/celery56/capture.py (ids, origin and clock normalized).

// capture56 is one scenario file.
type capture56 struct {
	Published []struct {
		Headers map[string]any `json:"headers"`
		Body    any            `json:"body"`
	} `json:"published"`
	RedisCommands []struct {
		Call    string `json:"call"`
		Args    []any  `json:"args"`
		Decoded []any  `json:"decoded"`
	} `json:"redis_commands"`
}

func readCapture56(t *testing.T, name string) capture56 {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", "captures", "celery-5.6.3", name+".json"))
	if err != nil {
		t.Fatal(err)
	}
	var c capture56
	if err := json.Unmarshal(data, &c); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	// Headers again with UnmarshalJSON, so that ints stay ints as py-amqp
	// sends them.
	raw, err := UnmarshalJSON(data)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	for i, p := range raw.(map[string]any)["published"].([]any) {
		c.Published[i].Headers = p.(map[string]any)["headers"].(map[string]any)
	}
	return c
}

// jsonShape turns header values into what encoding/json makes of them, so
// that int32 and float64 compare equal.
func jsonShape(t *testing.T, v any) any {
	t.Helper()
	data, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var out any
	if err := json.Unmarshal(data, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestCelery56Headers decodes the task messages of Celery 5.6.3 and checks
// the 5.3+ fields (stamps, stamped_headers, replaced_task_nesting,
// group_index), then encodes each message again and gets Celery's headers
// back, key for key.
func TestCelery56Headers(t *testing.T) {
	t.Parallel()
	type want struct {
		stampedHeaders []string
		stamps         map[string]any
		groupIndex     *int
	}
	idx := func(i int) *int { return &i }
	tests := []struct {
		scenario string
		want     []want
	}{
		{"send_task_plain", []want{{nil, map[string]any{}, nil}}},
		{"group", []want{{nil, map[string]any{}, idx(0)}, {nil, map[string]any{}, idx(1)}, {nil, map[string]any{}, idx(2)}}},
		{"stamped_chain", []want{{[]string{"mystamp"}, map[string]any{"mystamp": "v1"}, nil}}},
		{"stamped_group", []want{
			{[]string{"mystamp"}, map[string]any{"mystamp": "v1"}, idx(0)},
			{[]string{"mystamp"}, map[string]any{"mystamp": "v1"}, idx(1)},
		}},
		{"chord_body_dispatch_by_worker", []want{{nil, map[string]any{}, nil}}},
	}
	for _, tt := range tests {
		t.Run(tt.scenario, func(t *testing.T) {
			t.Parallel()
			c := readCapture56(t, tt.scenario)
			if len(c.Published) != len(tt.want) {
				t.Fatalf("%d messages published, want %d", len(c.Published), len(tt.want))
			}
			for i, p := range c.Published {
				body, err := json.Marshal(p.Body)
				if err != nil {
					t.Fatal(err)
				}
				m, err := Decode(Envelope{ContentType: "application/json", ContentEncoding: "utf-8", Headers: p.Headers, Body: body})
				if err != nil {
					t.Fatalf("message %d: %v", i, err)
				}
				w := tt.want[i]
				if !reflect.DeepEqual(m.StampedHeaders, w.stampedHeaders) || !reflect.DeepEqual(m.Stamps, w.stamps) {
					t.Errorf("message %d: stamped_headers %#v, stamps %#v; want %#v, %#v", i, m.StampedHeaders, m.Stamps, w.stampedHeaders, w.stamps)
				}
				if !reflect.DeepEqual(m.GroupIndex, w.groupIndex) {
					t.Errorf("message %d: group_index %v, want %v", i, m.GroupIndex, w.groupIndex)
				}
				if m.ReplacedTaskNesting != 0 {
					t.Errorf("message %d: replaced_task_nesting %d, want 0", i, m.ReplacedTaskNesting)
				}
				if _, ok := m.ExtraHeaders["stamps"]; ok {
					t.Errorf("message %d: stamps kept as an extra header too", i)
				}
				env, err := Encode(m)
				if err != nil {
					t.Fatalf("message %d: encode: %v", i, err)
				}
				got, want := jsonShape(t, env.Headers), jsonShape(t, p.Headers)
				if !reflect.DeepEqual(got, want) {
					t.Errorf("message %d: headers encoded\n%v\nwant (Celery 5.6.3)\n%v", i, got, want)
				}
			}
		})
	}
}

// TestCelery52HeadersStayWithoutStamps checks that a message without the
// 5.3+ headers is written without them: Celery 5.2 workers and the 5.2.6
// golden files see what they always saw.
func TestCelery52HeadersStayWithoutStamps(t *testing.T) {
	t.Parallel()
	env, err := Encode(&Message{ID: "t1", Task: "tasks.add", Args: []any{int64(1)}})
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"stamps", "stamped_headers", "replaced_task_nesting"} {
		if v, ok := env.Headers[k]; ok {
			t.Errorf("header %s = %v written for a message without stamps", k, v)
		}
	}
}

// TestCelery56DateDone checks that date_done is written with its UTC
// offset, as Celery 5.6.3 stores it ("2026-01-01T00:00:00+00:00"; 5.2.6
// wrote it naive).
func TestCelery56DateDone(t *testing.T) {
	t.Parallel()
	c := readCapture56(t, "result_meta_extended_stamped")
	var stored map[string]any
	for _, cmd := range c.RedisCommands {
		if cmd.Call == "client.pipeline.setex" && len(cmd.Decoded) == 1 {
			stored = cmd.Decoded[0].(map[string]any)
			break
		}
	}
	if stored == nil {
		t.Fatal("no SETEX in the capture")
	}
	wantDate := stored["date_done"].(string)
	if wantDate != "2026-01-01T00:00:00+00:00" {
		t.Fatalf("capture date_done %q", wantDate)
	}
	meta := ResultMeta{TaskID: "t1", Status: StateSuccess, Result: int64(4), Children: []any{},
		DateDone: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	data, err := meta.JSON()
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal(data, &got); err != nil {
		t.Fatal(err)
	}
	if got["date_done"] != wantDate {
		t.Errorf("date_done %v, want %q", got["date_done"], wantDate)
	}
	// And a 5.6.3 meta reads back to the same instant.
	raw, _ := json.Marshal(stored)
	back, err := ParseResultMeta(raw)
	if err != nil {
		t.Fatal(err)
	}
	if !back.DateDone.Equal(meta.DateDone) {
		t.Errorf("read date_done %v, want %v", back.DateDone, meta.DateDone)
	}
}
