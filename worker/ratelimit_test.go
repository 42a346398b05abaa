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
