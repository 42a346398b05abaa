package worker_test

import (
	"context"
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
	for i := 1; i < len(starts); i++ {
		// A lower bound only: the limit is a promise of "no faster".
		if gap := starts[i].Sub(starts[i-1]); gap < 45*time.Millisecond {
			t.Errorf("start %d came %s after the one before, want at least 50 ms", i, gap)
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
	var ids []string
	for range 3 {
		ids = append(ids, w.send(t, newMsg("proj.a")))
	}
	for _, id := range ids {
		w.result(t, id)
	}
	mu.Lock()
	defer mu.Unlock()
	if span := starts[2].Sub(starts[0]); span < 90*time.Millisecond {
		t.Errorf("three tasks at 20/s started within %s, want at least 100 ms", span)
	}
}
