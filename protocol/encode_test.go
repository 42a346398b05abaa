package protocol

import (
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestEncode(t *testing.T) {
	t.Parallel()
	idx := 1
	m := &Message{
		ID: "id1", Task: "proj.add", Args: []any{int64(2), 2.0}, Kwargs: map[string]any{"k": "v"},
		Chain: []Signature{}, Chord: &Signature{Task: "proj.tsum"},
		ETA: testNow.Add(10 * time.Second), Expires: testNow.Add(90500 * time.Millisecond),
		GroupIndex: &idx, Retries: 70000, Group: "g",
		TimeLimit:    TimeLimit{Hard: 10 * time.Second, Soft: 2500 * time.Millisecond},
		ExtraHeaders: map[string]any{"x-n": int64(5), "x-big": int64(1) << 40, "x-list": []any{int64(1)}, "task": "ignored"},
		ReplyTo:      "reply", Priority: 7,
	}
	env, err := Encode(m)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"lang": "py", "task": "proj.add", "id": "id1", "shadow": nil,
		"eta": "2026-11-27T14:47:10+00:00", "expires": "2026-11-27T14:48:30.500000+00:00",
		"group": "g", "group_index": int32(1), "retries": int32(70000),
		"timelimit": []any{int32(10), 2.5}, "root_id": "id1", "parent_id": nil,
		"argsrepr": "(2, 2.0)", "kwargsrepr": "{'k': 'v'}", "origin": nil, "ignore_result": false,
		"x-n": int32(5), "x-big": int64(1) << 40, "x-list": []any{int32(1)},
	}
	if !reflect.DeepEqual(env.Headers, want) {
		t.Errorf("headers =\n%#v\nwant\n%#v", env.Headers, want)
	}
	wantBody := `[[2, 2.0], {"k": "v"}, {"callbacks": null, "errbacks": null, "chain": [], "chord": {"args": [], "immutable": false, "kwargs": {}, "options": {}, "subtask_type": null, "task": "proj.tsum"}}]`
	if string(env.Body) != wantBody {
		t.Errorf("body =\n%s\nwant\n%s", env.Body, wantBody)
	}
	if env.ContentType != "application/json" || env.ContentEncoding != "utf-8" || env.CorrelationID != "id1" ||
		env.ReplyTo != "reply" || env.Priority != 7 || env.DeliveryMode != 2 || env.Expiration != "90500" {
		t.Errorf("properties = %+v", env)
	}
}

func TestEncodeDefaults(t *testing.T) {
	t.Parallel()
	env, err := Encode(&Message{ID: "id1", Task: "proj.noop", Expires: testNow.Add(-time.Minute)})
	if err != nil {
		t.Fatal(err)
	}
	if string(env.Body) != `[[], {}, {"callbacks": null, "errbacks": null, "chain": null, "chord": null}]` {
		t.Errorf("body = %s", env.Body)
	}
	if env.Expiration != "0" {
		t.Errorf("Expiration of an expired message = %q, want 0", env.Expiration)
	}
	h := env.Headers
	if h["argsrepr"] != "()" || h["kwargsrepr"] != "{}" || h["retries"] != int32(0) ||
		!reflect.DeepEqual(h["timelimit"], []any{nil, nil}) || h["group_index"] != nil {
		t.Errorf("headers = %v", h)
	}
	for _, bad := range []*Message{nil, {Task: "x"}, {ID: "x"}, {ID: "x", Task: "y", Args: []any{make(chan int)}}} {
		if _, err := Encode(bad); err == nil || !strings.HasPrefix(err.Error(), "protocol: ") {
			t.Errorf("Encode(%+v) error = %v", bad, err)
		}
	}
}
