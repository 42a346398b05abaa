package worker_test

import (
	"context"
	"testing"

	"github.com/vhg/vhg-worker/protocol"
	"github.com/vhg/vhg-worker/worker"
)

// stampedMsg is a message stamped as Celery 5.6 stamps it.
func stampedMsg(task string, stamps map[string]any) *protocol.Message {
	m := newMsg(task)
	m.Stamps = stamps
	for k := range stamps {
		m.StampedHeaders = append(m.StampedHeaders, k)
	}
	return m
}

// TestRevokeByStampedHeaders checks Celery 5.6's revoke_by_stamped_headers:
// its replies (a dict or "k=v" list argument, with and without terminate),
// the running task it terminates, and the tasks with a revoked stamp (a
// value or one of a list) discarded on arrival while others run.
func TestRevokeByStampedHeaders(t *testing.T) {
	t.Parallel()
	mux := worker.NewServeMux()
	started := make(chan string, 10)
	mux.HandleFunc("block", func(ctx context.Context, task *worker.Task) (any, error) {
		started <- task.ID()
		<-ctx.Done()
		return nil, context.Cause(ctx)
	})
	mux.HandleFunc("add", func(_ context.Context, task *worker.Task) (any, error) { return int64(1), nil })
	w := newTestWorker(t, mux, worker.Config{Concurrency: 2, NodeName: "w1@host"})
	c := worker.NewControl(w.server, worker.ControlConfig{})
	w.run(t)

	blockID := w.send(t, stampedMsg("block", map[string]any{"mtask_id": "m1"}))
	if id := <-started; id != blockID {
		t.Fatalf("started %s, want %s", id, blockID)
	}
	wantResult(t, "no terminate", handle(t, c, "revoke_by_stamped_headers", map[string]any{"headers": map[string]any{"mystamp": "v1"}}),
		`{"ok": "headers {'mystamp': 'v1'} flagged as revoked, but not terminated"}`)
	wantResult(t, "list argument, nothing running", handle(t, c, "revoke_by_stamped_headers", map[string]any{"headers": []any{"other=x"}, "terminate": true}),
		`{"ok": "headers {'other': 'x'} were not terminated"}`)
	wantResult(t, "terminate", handle(t, c, "revoke_by_stamped_headers", map[string]any{"headers": map[string]any{"mtask_id": []any{"m1", "m2"}}, "terminate": true, "signal": "SIGKILL"}),
		`{"ok": "headers defaultdict(<class 'set'>, {'mtask_id': {'m1'}}) revoked"}`)
	assertJSONEqual(t, "terminated result", w.result(t, blockID).Result, excDict("celery.exceptions", "TaskRevokedError", "terminated"))

	revoked := []*protocol.Message{
		stampedMsg("add", map[string]any{"mystamp": "v1"}),
		stampedMsg("add", map[string]any{"mystamp": []any{"v0", "v1"}}),
		stampedMsg("add", map[string]any{"mtask_id": "m2"}),
		stampedMsg("add", map[string]any{"other": "x"}),
	}
	kept := []*protocol.Message{
		stampedMsg("add", map[string]any{"mystamp": "v2"}),
		stampedMsg("add", map[string]any{"unrelated": "v1"}),
		newMsg("add"),
	}
	for _, m := range append(append([]*protocol.Message{}, revoked...), kept...) {
		w.send(t, m)
	}
	for _, m := range revoked {
		assertJSONEqual(t, "revoked by stamp "+protocol.PythonRepr(m.Stamps), w.result(t, m.ID).Result, excDict("celery.exceptions", "TaskRevokedError", "revoked"))
	}
	for _, m := range kept {
		if got := w.result(t, m.ID); got.Status != protocol.StateSuccess {
			t.Errorf("task stamped %v: %s, want SUCCESS", m.Stamps, got.Status)
		}
	}
}

func TestRevokeByStampedHeadersBadArguments(t *testing.T) {
	t.Parallel()
	w := newTestWorker(t, worker.NewServeMux(), worker.Config{NodeName: "w1@host"})
	c := worker.NewControl(w.server, worker.ControlConfig{})
	for _, args := range []map[string]any{nil, {"headers": "x"}, {"headers": []any{"novalue"}}} {
		got := handle(t, c, "revoke_by_stamped_headers", args)
		if m, ok := got.(map[string]any); !ok || m["error"] == nil {
			t.Errorf("%v: %v, want an error reply", args, got)
		}
	}
}
