package worker_test

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/vhg/vhg-worker/protocol"
	"github.com/vhg/vhg-worker/worker"
)

// TestParseRate checks Celery's rate syntax (celery.utils.time.rate).
func TestParseRate(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]float64{
		"": 0, "0": 0, "10": 10, "10/s": 10, "120/m": 2, "3600/h": 1, "0.5/s": 0.5, " 4 /s": 4, "-1/s": 0,
	} {
		got, err := worker.ParseRate(in)
		if err != nil || got != want {
			t.Errorf("ParseRate(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"abc", "/s", "10/x", "10/sec"} {
		if _, err := worker.ParseRate(in); err == nil {
			t.Errorf("ParseRate(%q): no error", in)
		}
	}
}

// TestRateLimitSpacesStarts runs five tasks limited to 20/s on a worker
// with room for all of them at once: they start one turn (50 ms) apart,
// the first at once, as Celery's token bucket of capacity one lets them.
func TestRateLimitSpacesStarts(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var starts []time.Time
	mux := worker.NewServeMux()
	mux.HandleFunc("t.limited", func(context.Context, *worker.Task) (any, error) {
		mu.Lock()
		starts = append(starts, time.Now())
		mu.Unlock()
		return nil, nil
	}, worker.RateLimit("20/s"))
	w := startWorker(t, mux, worker.Config{Concurrency: 5})
	sent := time.Now()
	var ids []string
	for range 5 {
		ids = append(ids, w.send(t, newMsg("t.limited")))
	}
	for _, id := range ids {
		if meta := w.result(t, id); meta.Status != protocol.StateSuccess {
			t.Fatalf("%s: %s", id, meta.Status)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	checkTurns(t, sent, starts, 50*time.Millisecond)
}

// checkTurns checks that the k-th start came no sooner than k turns after
// the tasks were sent: the k-th turn of the bucket is at least that late,
// and no task starts before its turn. (Two starts may come closer than a
// turn when the first of them was slow to be scheduled.) A lower bound
// only: a rate limit promises "no faster".
func checkTurns(t *testing.T, sent time.Time, starts []time.Time, turn time.Duration) {
	t.Helper()
	sorted := slices.Clone(starts)
	slices.SortFunc(sorted, func(a, b time.Time) int { return a.Compare(b) })
	for k, start := range sorted {
		if after := start.Sub(sent); after < time.Duration(k)*turn {
			t.Errorf("start %d came %s after sending, want at least %s", k, after, time.Duration(k)*turn)
		}
	}
}

// TestControlLimits checks the replies of rate_limit, time_limit and
// autoscale (celery/worker/control.py), and that a new rate limit applies.
func TestControlLimits(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var starts []time.Time
	mux := worker.NewServeMux()
	mux.HandleFunc("proj.a", func(context.Context, *worker.Task) (any, error) {
		mu.Lock()
		starts = append(starts, time.Now())
		mu.Unlock()
		return nil, nil
	})
	w := startWorker(t, mux, worker.Config{NodeName: "w1@host", Concurrency: 4})
	c := worker.NewControl(w.server, worker.ControlConfig{})
	for _, tc := range []struct {
		method string
		args   map[string]any
		want   string
	}{
		{"rate_limit", map[string]any{"task_name": "proj.a", "rate_limit": "10/s"}, `{"ok": "new rate limit set successfully"}`},
		{"rate_limit", map[string]any{"task_name": "proj.a", "rate_limit": ""}, `{"ok": "rate limit disabled successfully"}`},
		{"rate_limit", map[string]any{"task_name": "proj.a", "rate_limit": "abc"},
			`{"error": "Invalid rate limit string: ValueError(\"could not convert string to float: 'abc'\")"}`},
		{"rate_limit", map[string]any{"task_name": "proj.a", "rate_limit": "1/x"}, `{"error": "KeyError('x')"}`},
		{"rate_limit", map[string]any{"task_name": "no.such", "rate_limit": "1/s"}, `{"error": "unknown task"}`},
		{"time_limit", map[string]any{"task_name": "proj.a", "soft": 10.0, "hard": 20.0}, `{"ok": "time limits set successfully"}`},
		{"time_limit", map[string]any{"task_name": "no.such", "soft": 10.0}, `{"error": "unknown task"}`},
		{"autoscale", map[string]any{"max": int64(4), "min": int64(2)}, `{"error": "ValueError('Autoscale not enabled')"}`},
		{"rate_limit", map[string]any{"task_name": "proj.a", "rate_limit": "20/s"}, `{"ok": "new rate limit set successfully"}`},
	} {
		wantResult(t, tc.method, handle(t, c, tc.method, tc.args), tc.want)
	}
	sent := time.Now()
	var ids []string
	for range 3 {
		ids = append(ids, w.send(t, newMsg("proj.a")))
	}
	for _, id := range ids {
		w.result(t, id)
	}
	mu.Lock()
	defer mu.Unlock()
	checkTurns(t, sent, starts, 50*time.Millisecond)
}

// TestControlPoolResize grows and shrinks the pool at run time: the size
// shows in stats, and the pool runs that many tasks at once.
func TestControlPoolResize(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var running, most int
	release := make(chan struct{})
	mux := worker.NewServeMux()
	mux.HandleFunc("proj.block", func(_ context.Context, task *worker.Task) (any, error) {
		mu.Lock()
		running++
		most = max(most, running)
		wait := release
		mu.Unlock()
		<-wait
		mu.Lock()
		running--
		mu.Unlock()
		return nil, nil
	})
	w := startWorker(t, mux, worker.Config{NodeName: "w1@host", Concurrency: 1, PrefetchMultiplier: 8})
	waitUntil(t, "the worker consuming", w.server.Consuming)
	c := worker.NewControl(w.server, worker.ControlConfig{})
	// runBatch runs three blocking tasks and returns how many ran at once.
	runBatch := func() int {
		mu.Lock()
		most, release = 0, make(chan struct{})
		mu.Unlock()
		var ids []string
		for range 3 {
			ids = append(ids, w.send(t, newMsg("proj.block")))
		}
		want := min(3, w.server.Stats().Concurrency)
		waitUntil(t, "the pool full", func() bool { mu.Lock(); defer mu.Unlock(); return running == want })
		time.Sleep(100 * time.Millisecond) // room for one too many to start
		mu.Lock()
		close(release)
		mu.Unlock()
		for _, id := range ids {
			w.result(t, id)
		}
		mu.Lock()
		defer mu.Unlock()
		return most
	}

	wantResult(t, "pool_grow", handle(t, c, "pool_grow", map[string]any{"n": int64(2)}), `{"ok": "pool will grow"}`)
	if got := w.server.Stats().Concurrency; got != 3 {
		t.Errorf("concurrency after pool_grow 2 = %d, want 3", got)
	}
	if got := runBatch(); got != 3 {
		t.Errorf("%d tasks ran at once with a pool of 3", got)
	}
	wantResult(t, "pool_shrink", handle(t, c, "pool_shrink", nil), `{"ok": "pool will shrink"}`)
	wantResult(t, "pool_shrink below one", handle(t, c, "pool_shrink", map[string]any{"n": int64(5)}),
		`{"error": "ValueError(\"can't shrink the pool below one\")"}`)
	if got := w.server.Stats().Concurrency; got != 2 {
		t.Errorf("concurrency after pool_shrink = %d, want 2", got)
	}
	if got := runBatch(); got != 2 {
		t.Errorf("%d tasks ran at once with a pool of 2", got)
	}
}

// TestControlConsumers starts and stops consuming a queue at run time:
// add_consumer makes a task sent to it run, cancel_consumer leaves the
// next one in the queue; active_queues follows.
func TestControlConsumers(t *testing.T) {
	t.Parallel()
	mux := worker.NewServeMux()
	mux.HandleFunc("proj.a", func(context.Context, *worker.Task) (any, error) { return "ran", nil })
	w := startWorker(t, mux, worker.Config{NodeName: "w1@host"})
	waitUntil(t, "the worker consuming", w.server.Consuming)
	c := worker.NewControl(w.server, worker.ControlConfig{})
	sendTo := func(queue string) string {
		msg := newMsg("proj.a")
		env, err := protocol.Encode(msg)
		if err != nil {
			t.Fatal(err)
		}
		if err := w.broker.Broker.Publish(context.Background(), worker.QueueRoute(queue), env); err != nil {
			t.Fatal(err)
		}
		return msg.ID
	}

	wantResult(t, "add_consumer", handle(t, c, "add_consumer", map[string]any{"queue": "extra"}), `{"ok": "add consumer extra"}`)
	waitUntil(t, "extra consumed", func() bool { return slices.Contains(w.server.Queues(), "extra") })
	if meta := w.result(t, sendTo("extra")); meta.Status != protocol.StateSuccess {
		t.Fatalf("task on the added queue: %s", meta.Status)
	}
	wantResult(t, "cancel_consumer", handle(t, c, "cancel_consumer", map[string]any{"queue": "extra"}), `{"ok": "no longer consuming from extra"}`)
	if got := w.server.Queues(); !slices.Equal(got, []string{"celery"}) {
		t.Errorf("queues after cancel_consumer = %v, want [celery]", got)
	}
	sendTo("extra")
	time.Sleep(200 * time.Millisecond)
	if n := w.broker.Broker.Len("extra"); n != 1 {
		t.Errorf("%d messages left on the cancelled queue, want 1", n)
	}
	// The other queue is still served.
	if meta := w.result(t, sendTo("celery")); meta.Status != protocol.StateSuccess {
		t.Fatalf("task on celery after the cancel: %s", meta.Status)
	}
	wantResult(t, "add_consumer with another exchange", handle(t, c, "add_consumer", map[string]any{"queue": "x", "exchange": "other"}),
		`{"error": "ValueError('add_consumer with exchange=other is not supported: queues are declared as Celery declares its default ones')"}`)
}

// TestAutoscale runs a worker with Autoscale{Max: 3, Min: 1}: three
// blocking tasks grow the pool to three, it shrinks back to one once they
// are done and the keepalive has passed; the autoscale command moves the
// range, and pool_grow is refused, as in Celery.
func TestAutoscale(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	running := 0
	release := make(chan struct{})
	mux := worker.NewServeMux()
	mux.HandleFunc("proj.block", func(context.Context, *worker.Task) (any, error) {
		mu.Lock()
		running++
		mu.Unlock()
		<-release
		mu.Lock()
		running--
		mu.Unlock()
		return nil, nil
	})
	w := startWorker(t, mux, worker.Config{NodeName: "w1@host", Autoscale: worker.Autoscale{Max: 3, Min: 1, Keepalive: 200 * time.Millisecond}})
	waitUntil(t, "the worker consuming", w.server.Consuming)
	if got := w.server.Stats().Concurrency; got != 1 {
		t.Fatalf("pool at start = %d, want the minimum, 1", got)
	}
	var ids []string
	for range 3 {
		ids = append(ids, w.send(t, newMsg("proj.block")))
	}
	waitUntil(t, "three tasks running at once", func() bool { mu.Lock(); defer mu.Unlock(); return running == 3 })
	close(release)
	for _, id := range ids {
		w.result(t, id)
	}
	waitUntil(t, "the pool back to one", func() bool { return w.server.Stats().Concurrency == 1 })

	c := worker.NewControl(w.server, worker.ControlConfig{})
	wantResult(t, "autoscale", handle(t, c, "autoscale", map[string]any{"max": int64(5), "min": int64(2)}), `{"ok": "autoscale now max=5 min=2"}`)
	if got := w.server.Stats().Concurrency; got != 2 {
		t.Errorf("pool after autoscale 5 2 = %d, want the new minimum, 2", got)
	}
	wantResult(t, "pool_grow", handle(t, c, "pool_grow", nil), `{"error": "pool_grow is not supported with autoscale. Adjust autoscale range instead."}`)
}
