package worker_test

import (
	"context"
	"errors"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/vhg/vhg-worker/protocol"
	"github.com/vhg/vhg-worker/worker"
)

func TestEventsOfTasks(t *testing.T) {
	t.Parallel()
	mux := worker.NewServeMux()
	mux.HandleFunc("ok", func(context.Context, *worker.Task) (any, error) { return map[string]any{"n": int64(1)}, nil })
	mux.HandleFunc("fail", func(context.Context, *worker.Task) (any, error) {
		return nil, worker.NewTaskError("ValueError", "boom")
	})
	mux.HandleFunc("retry", func(_ context.Context, task *worker.Task) (any, error) {
		if task.Msg.Retries == 0 {
			return nil, task.Retry(worker.NewTaskError("RuntimeError", "again"), time.Millisecond)
		}
		return "done", nil
	})
	mux.HandleFunc("reject", func(context.Context, *worker.Task) (any, error) {
		return nil, &worker.RejectError{Requeue: false, Cause: errors.New("no")}
	})
	w := newTestWorker(t, mux, worker.Config{NodeName: "w1@host"})
	pub := &recordingPublisher{}
	events := worker.NewEvents(w.server, pub, worker.EventsConfig{})
	w.server.Observe(events)
	w.run(t)

	// Task events are off until enabled (no -E).
	offID := w.send(t, newMsg("ok"))
	w.result(t, offID)
	if got := pub.types(); len(got) != 0 {
		t.Fatalf("task events sent while disabled: %v", got)
	}
	events.SetTaskEvents(true)

	okID := w.send(t, newMsg("ok", int64(2)))
	failID := w.send(t, newMsg("fail"))
	retryID := w.send(t, newMsg("retry"))
	rejectID := w.send(t, newMsg("reject"))
	unknownID := w.send(t, newMsg("nope"))
	expired := newMsg("ok")
	expired.Expires = time.Now().Add(-time.Minute)
	expiredID := w.send(t, expired)
	for _, id := range []string{okID, failID, retryID, rejectID, unknownID, expiredID} {
		w.result(t, id)
	}
	waitUntil(t, "the retry's success event", func() bool {
		return slices.Contains(typesOf(pub.all(), retryID), protocol.EventTaskSucceeded)
	})
	waitUntil(t, "the retry's retried event", func() bool {
		return slices.Contains(typesOf(pub.all(), retryID), protocol.EventTaskRetried)
	})
	waitUntil(t, "the reject event", func() bool {
		return slices.Contains(typesOf(pub.all(), rejectID), protocol.EventTaskRejected)
	})
	// An outcome's event follows its stored state: wait for each one.
	waitUntil(t, "the outcome events", func() bool {
		all := pub.all()
		return slices.Contains(typesOf(all, okID), protocol.EventTaskSucceeded) &&
			slices.Contains(typesOf(all, failID), protocol.EventTaskFailed) &&
			slices.Contains(typesOf(all, unknownID), protocol.EventTaskFailed) &&
			slices.Contains(typesOf(all, expiredID), protocol.EventTaskRevoked)
	})

	all := pub.all()
	for _, tc := range []struct {
		id   string
		want []string
	}{
		{okID, []string{"task-received", "task-started", "task-succeeded"}},
		{failID, []string{"task-received", "task-started", "task-failed"}},
		{retryID, []string{"task-received", "task-started", "task-retried", "task-received", "task-started", "task-succeeded"}},
		{rejectID, []string{"task-received", "task-started", "task-failed", "task-rejected"}},
		{unknownID, []string{"task-failed"}},
		{expiredID, []string{"task-revoked"}},
	} {
		got := typesOf(all, tc.id)
		if tc.id == retryID {
			// The retried message can be received again before the first
			// run has sent task-retried, as with Celery: compare as sets.
			got, tc.want = slices.Sorted(slices.Values(got)), slices.Sorted(slices.Values(tc.want))
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("events of %s: %v, want %v", tc.id, got, tc.want)
		}
	}
	field := func(id, typ, name string) any {
		for _, e := range all {
			if uuid, _ := e.Field("uuid"); uuid == id && e.Type == typ {
				v, _ := e.Field(name)
				return v
			}
		}
		return "<no event>"
	}
	for _, tc := range []struct {
		id, typ, name string
		want          any
	}{
		{okID, "task-received", "args", "(2,)"},
		{okID, "task-received", "name", "ok"},
		{okID, "task-succeeded", "result", "{'n': 1}"},
		{failID, "task-failed", "exception", "ValueError('boom')"},
		{retryID, "task-retried", "exception", "RuntimeError('again')"},
		{rejectID, "task-rejected", "requeue", false},
		{unknownID, "task-failed", "exception", "NotRegistered('nope')"},
		{expiredID, "task-revoked", "expired", true},
		{expiredID, "task-revoked", "signum", nil},
	} {
		if got := field(tc.id, tc.typ, tc.name); got != tc.want {
			t.Errorf("%s %s: %v, want %v", tc.typ, tc.name, got, tc.want)
		}
	}
	if rt, _ := field(okID, "task-succeeded", "runtime").(float64); rt < 0 || rt > 5 {
		t.Errorf("runtime = %v", rt)
	}
	// Events come from several goroutines (tasks run concurrently), yet
	// they are published in clock order: celery's events.state expects a
	// worker's clock to increase.
	var last uint64
	for _, e := range all {
		if e.Hostname != "w1@host" || e.PID != os.Getpid() || e.Timestamp.IsZero() || e.Clock <= last {
			t.Errorf("event %s: hostname %q pid %d timestamp %v clock %d after %d", e.Type, e.Hostname, e.PID, e.Timestamp, e.Clock, last)
		}
		last = e.Clock
	}
}

func typesOf(events []protocol.Event, id string) []string {
	var out []string
	for _, e := range events {
		if uuid, _ := e.Field("uuid"); uuid == id {
			out = append(out, e.Type)
		}
	}
	return out
}

func TestEventsHeartbeats(t *testing.T) {
	t.Parallel()
	mux := worker.NewServeMux()
	mux.HandleFunc("ok", func(context.Context, *worker.Task) (any, error) { return nil, nil })
	w := newTestWorker(t, mux, worker.Config{NodeName: "w1@host"})
	pub := &recordingPublisher{}
	events := worker.NewEvents(w.server, pub, worker.EventsConfig{HeartbeatInterval: 10 * time.Millisecond})
	w.server.Observe(events)
	w.run(t)
	w.result(t, w.send(t, newMsg("ok")))

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { events.Run(ctx); close(done) }()
	waitUntil(t, "three heartbeats", func() bool {
		return slices.Index(pub.types(), protocol.EventWorkerHeartbeat) >= 0 && len(pub.all()) >= 4
	})
	// A broker outage does not stop the heartbeats: some are refused while
	// it lasts, and they go on once it ends.
	pub.mu.Lock()
	pub.fail = errors.New("connection closed")
	pub.mu.Unlock()
	waitUntil(t, "a heartbeat refused during the outage", func() bool { return pub.refused() >= 2 })
	pub.mu.Lock()
	pub.fail = nil
	before := len(pub.events)
	pub.mu.Unlock()
	waitUntil(t, "a heartbeat after the outage", func() bool {
		return slices.Index(pub.types()[before:], protocol.EventWorkerHeartbeat) >= 0
	})
	cancel()
	<-done

	types := pub.types()
	if types[0] != protocol.EventWorkerOnline || types[len(types)-1] != protocol.EventWorkerOffline {
		t.Fatalf("events %v, want worker-online first and worker-offline last", types)
	}
	for _, e := range pub.all() {
		if e.Type == protocol.EventWorkerHeartbeat {
			if v, _ := e.Field("processed"); v != 1 {
				t.Errorf("heartbeat processed = %v, want 1", v)
			}
			if v, _ := e.Field("freq"); v != 0.01 {
				t.Errorf("heartbeat freq = %v, want the interval in seconds", v)
			}
			if v, _ := e.Field("sw_ident"); v != "py-celery" {
				t.Errorf("heartbeat sw_ident = %v", v)
			}
		}
	}
}
