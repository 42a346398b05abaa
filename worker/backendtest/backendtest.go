// Package backendtest is the test suite every result backend adapter that
// can read results back runs: states are stored and read as Celery clients
// see them, SUCCESS is final, custom states and exception dicts round-trip,
// and, for backends with a native chord join, chord parts are counted once
// and returned in group order.
//
// An adapter's test calls RunBackendSuite with a function that returns a
// backend for a (sub)test; see the worker/memory and worker/redis tests.
package backendtest

import (
	"context"
	"reflect"
	"testing"
	"time"

	"github.com/vhg/vhg-worker/protocol"
	"github.com/vhg/vhg-worker/worker"
)

// Backend is what the suite needs: a backend that can read results back.
type Backend interface {
	worker.Backend
	worker.ResultReader
}

// RunBackendSuite runs the shared backend tests as subtests of t.
//
// newBackend returns a backend for the test it is given; it must implement
// worker.ResultReader. Task and group ids are fresh in every test, so one
// backend may be shared, but keys written by a test should be removed at its
// cleanup (a unique key prefix per test does that for Redis). If the backend
// is a worker.ChordJoiner, the chord tests run too.
func RunBackendSuite(t *testing.T, newBackend func(t *testing.T) worker.Backend) {
	t.Helper()
	tests := []struct {
		name  string
		chord bool
		run   func(t *testing.T, b Backend)
	}{
		{"UnknownIsPending", false, testPending},
		{"StatesRoundTrip", false, testStates},
		{"SuccessIsFinal", false, testSuccessFinal},
		{"ProgressOverwrites", false, testProgress},
		{"ChordJoinOrdered", true, testChordOrdered},
		{"ChordPartStoredTwiceCountsOnce", true, testChordTwice},
		{"ChordFallbackSize", true, testChordFallback},
		{"ChordWithoutSizeNeverCompletes", true, testChordNoSize},
		{"ChordFailedPart", true, testChordFailedPart},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			raw := newBackend(t)
			b, ok := raw.(Backend)
			if !ok {
				t.Fatalf("%T does not implement worker.ResultReader", raw)
			}
			if tt.chord {
				if _, ok := raw.(worker.ChordJoiner); !ok {
					t.Skipf("%T has no native chord join", raw)
				}
			}
			tt.run(t, b)
		})
	}
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	t.Cleanup(cancel)
	return c
}

func store(t *testing.T, b Backend, meta protocol.ResultMeta) {
	t.Helper()
	if err := b.Store(ctx(t), meta, worker.ReplyRoute{CorrelationID: meta.TaskID}); err != nil {
		t.Fatalf("Store %s %s: %v", meta.TaskID, meta.Status, err)
	}
}

func read(t *testing.T, b Backend, id string) protocol.ResultMeta {
	t.Helper()
	meta, err := b.Result(ctx(t), id)
	if err != nil {
		t.Fatalf("Result %s: %v", id, err)
	}
	return meta
}

// asJSON returns v as a Python client decodes it, so Go values (int,
// ExceptionInfo) compare equal to decoded ones (int64, dict).
func asJSON(t *testing.T, v any) any {
	t.Helper()
	data, err := protocol.MarshalJSON(v)
	if err != nil {
		t.Fatalf("marshal %#v: %v", v, err)
	}
	out, err := protocol.UnmarshalJSON(data)
	if err != nil {
		t.Fatalf("unmarshal %s: %v", data, err)
	}
	return out
}

// sameMeta compares two metas as the JSON a key-value backend stores.
func sameMeta(t *testing.T, got, want protocol.ResultMeta) {
	t.Helper()
	g, w := asJSON(t, got), asJSON(t, want)
	if !reflect.DeepEqual(g, w) {
		gj, _ := protocol.MarshalJSON(g)
		wj, _ := protocol.MarshalJSON(w)
		t.Errorf("read back:\n got %s\nwant %s", gj, wj)
	}
}

func testPending(t *testing.T, b Backend) {
	id := worker.NewTaskID()
	meta := read(t, b, id)
	if meta.Status != protocol.StatePending || meta.TaskID != id {
		t.Errorf("unknown task reads %s %q, want PENDING %q", meta.Status, meta.TaskID, id)
	}
}

func testStates(t *testing.T, b Backend) {
	// Backends store microseconds, as Python's isoformat does.
	done := time.Date(2026, 11, 27, 12, 29, 5, 192058000, time.UTC)
	child := worker.NewTaskID()
	tests := []struct {
		name string
		meta protocol.ResultMeta
	}{
		{"STARTED", protocol.ResultMeta{Status: protocol.StateStarted, Result: map[string]any{"pid": 4242, "hostname": "celery@host"}}},
		{"SUCCESS with children and ids", protocol.ResultMeta{Status: protocol.StateSuccess,
			Result:   []any{1, "two", map[string]any{"three": 3.5, "none": nil}},
			Children: []any{[]any{[]any{child, nil}, nil}},
			DateDone: done, GroupID: worker.NewTaskID(), ParentID: worker.NewTaskID()}},
		{"FAILURE exception dict", protocol.ResultMeta{Status: protocol.StateFailure,
			Result:    protocol.ExceptionInfo{Module: "builtins", Type: "ValueError", Message: []any{"boom", 3}},
			Traceback: "Traceback (most recent call last):\n  ...\nValueError: boom\n", DateDone: done}},
		{"RETRY", protocol.ResultMeta{Status: protocol.StateRetry,
			Result: protocol.ExceptionInfo{Module: "celery.exceptions", Type: "Retry", Message: []any{"Retry in 10s"}}}},
		{"REVOKED", protocol.ResultMeta{Status: protocol.StateRevoked,
			Result: protocol.ExceptionInfo{Module: "celery.exceptions", Type: "TaskRevokedError", Message: []any{"terminated"}}, DateDone: done}},
		{"custom state", protocol.ResultMeta{Status: "PROGRESS", Result: map[string]any{"done": 1, "total": 3, "unicode": "é✓"}}},
		{"null result", protocol.ResultMeta{Status: protocol.StateSuccess, DateDone: done}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			meta := tt.meta
			meta.TaskID = worker.NewTaskID()
			store(t, b, meta)
			got := read(t, b, meta.TaskID)
			sameMeta(t, got, meta)
			if meta.Status == protocol.StateFailure {
				exc, ok := protocol.ParseExceptionInfo(got.Result)
				if !ok || !reflect.DeepEqual(asJSON(t, exc), asJSON(t, meta.Result)) {
					t.Errorf("exception reads back as %#v", got.Result)
				}
			}
		})
	}
}

func testSuccessFinal(t *testing.T, b Backend) {
	id := worker.NewTaskID()
	success := protocol.ResultMeta{TaskID: id, Status: protocol.StateSuccess, Result: "first", DateDone: time.Now().UTC().Truncate(time.Microsecond)}
	store(t, b, success)
	for _, later := range []protocol.ResultMeta{
		{TaskID: id, Status: protocol.StateFailure, Result: protocol.ExceptionInfo{Type: "ValueError", Module: "builtins"}},
		{TaskID: id, Status: protocol.StateStarted},
		{TaskID: id, Status: protocol.StateSuccess, Result: "second"},
	} {
		store(t, b, later)
		sameMeta(t, read(t, b, id), success)
	}
}

func testProgress(t *testing.T, b Backend) {
	id := worker.NewTaskID()
	for i, meta := range []protocol.ResultMeta{
		{TaskID: id, Status: protocol.StateStarted, Result: map[string]any{"pid": 1, "hostname": "h"}},
		{TaskID: id, Status: "PROGRESS", Result: map[string]any{"done": 1}},
		{TaskID: id, Status: "PROGRESS", Result: map[string]any{"done": 2}},
		{TaskID: id, Status: protocol.StateSuccess, Result: int64(2), DateDone: time.Now().UTC().Truncate(time.Microsecond)},
	} {
		store(t, b, meta)
		got := read(t, b, id)
		if got.Status != meta.Status {
			t.Fatalf("step %d: read %s, want %s", i, got.Status, meta.Status)
		}
		sameMeta(t, got, meta)
	}
}

func joiner(b Backend) worker.ChordJoiner { return b.(worker.ChordJoiner) }

func part(id string, index int, result any) worker.ChordPart {
	return worker.ChordPart{TaskID: id, Index: &index, State: protocol.StateSuccess, Result: result}
}

// join records p and returns the outcome.
func join(t *testing.T, b Backend, gid string, p worker.ChordPart, fallback int) ([]worker.ChordPart, bool) {
	t.Helper()
	parts, done, err := joiner(b).JoinChordPart(ctx(t), gid, p, fallback)
	if err != nil {
		t.Fatalf("JoinChordPart %s: %v", p.TaskID, err)
	}
	return parts, done
}

// checkParts checks the ids, states and results of a completed chord.
func checkParts(t *testing.T, got []worker.ChordPart, want []worker.ChordPart) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%d parts, want %d", len(got), len(want))
	}
	for i := range want {
		if got[i].TaskID != want[i].TaskID || got[i].State != want[i].State ||
			!reflect.DeepEqual(asJSON(t, got[i].Result), asJSON(t, want[i].Result)) {
			t.Errorf("part %d = %s %s %v, want %s %s %v", i,
				got[i].TaskID, got[i].State, got[i].Result, want[i].TaskID, want[i].State, want[i].Result)
		}
	}
}

func testChordOrdered(t *testing.T, b Backend) {
	gid := worker.NewTaskID()
	if err := joiner(b).SetChordSize(ctx(t), gid, 3); err != nil {
		t.Fatal(err)
	}
	parts := []worker.ChordPart{
		part(worker.NewTaskID(), 0, "zero"),
		part(worker.NewTaskID(), 1, map[string]any{"one": 1}),
		part(worker.NewTaskID(), 2, []any{2}),
	}
	for i, p := range []worker.ChordPart{parts[2], parts[0]} {
		if _, done := join(t, b, gid, p, 0); done {
			t.Fatalf("chord complete after %d of 3 parts", i+1)
		}
	}
	got, done := join(t, b, gid, parts[1], 0)
	if !done {
		t.Fatal("chord not complete after 3 of 3 parts")
	}
	checkParts(t, got, parts)
}

func testChordTwice(t *testing.T, b Backend) {
	gid := worker.NewTaskID()
	if err := joiner(b).SetChordSize(ctx(t), gid, 2); err != nil {
		t.Fatal(err)
	}
	p0, p1 := part(worker.NewTaskID(), 0, "a"), part(worker.NewTaskID(), 1, "b")
	if _, done := join(t, b, gid, p0, 0); done {
		t.Fatal("complete after one part")
	}
	// A redelivered task stores the same part again.
	if _, done := join(t, b, gid, p0, 0); done {
		t.Fatal("the same part stored twice completed the chord")
	}
	got, done := join(t, b, gid, p1, 0)
	if !done {
		t.Fatal("not complete after both parts")
	}
	checkParts(t, got, []worker.ChordPart{p0, p1})
}

func testChordFallback(t *testing.T, b Backend) {
	// Celery 4.x/5.0 clients store no size; the body carries chord_size.
	gid := worker.NewTaskID()
	p0, p1 := part(worker.NewTaskID(), 0, 10), part(worker.NewTaskID(), 1, 11)
	if _, done := join(t, b, gid, p1, 2); done {
		t.Fatal("complete after one part")
	}
	got, done := join(t, b, gid, p0, 2)
	if !done {
		t.Fatal("not complete after both parts")
	}
	checkParts(t, got, []worker.ChordPart{p0, p1})
}

func testChordNoSize(t *testing.T, b Backend) {
	// Celery 5.1+ requires the size; without it nothing happens.
	gid := worker.NewTaskID()
	for i := range 3 {
		if _, done := join(t, b, gid, part(worker.NewTaskID(), i, i), 0); done {
			t.Fatalf("a chord with no size completed after %d parts", i+1)
		}
	}
}

func testChordFailedPart(t *testing.T, b Backend) {
	gid := worker.NewTaskID()
	if err := joiner(b).SetChordSize(ctx(t), gid, 2); err != nil {
		t.Fatal(err)
	}
	failed := worker.ChordPart{TaskID: worker.NewTaskID(), Index: new(int), State: protocol.StateFailure,
		Result: protocol.ExceptionInfo{Module: "builtins", Type: "ValueError", Message: []any{"boom"}}}
	ok := part(worker.NewTaskID(), 1, "fine")
	join(t, b, gid, ok, 0)
	got, done := join(t, b, gid, failed, 0)
	if !done {
		t.Fatal("not complete after both parts")
	}
	checkParts(t, got, []worker.ChordPart{failed, ok})
	if exc, isExc := protocol.ParseExceptionInfo(got[0].Result); !isExc || exc.Type != "ValueError" {
		t.Errorf("failed part result %#v, want the exception dict", got[0].Result)
	}
}
