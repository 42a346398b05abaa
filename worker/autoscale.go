package worker

import (
	"context"
	"sync"
	"time"
)

// The autoscaler, as Celery's (celery/worker/autoscale.py): every second
// the pool grows to the number of tasks the worker holds (received and not
// finished), up to Max, and shrinks back towards Min when it has not grown
// for Keepalive.

// Autoscale is the range of Config.Autoscale (Celery's --autoscale=MAX,MIN).
type Autoscale struct {
	Max, Min int
	// Keepalive is how long after growing the pool waits before it
	// shrinks; zero means Celery's 30 s.
	Keepalive time.Duration
}

type autoscaler struct {
	pool      *pool
	qty       func() int // tasks held: received and not finished
	keepalive time.Duration

	mu       sync.Mutex
	max, min int
	lastUp   time.Time
}

func newAutoscaler(p *pool, cfg Autoscale, qty func() int) *autoscaler {
	if cfg.Keepalive <= 0 {
		cfg.Keepalive = 30 * time.Second
	}
	return &autoscaler{pool: p, qty: qty, keepalive: cfg.Keepalive, max: cfg.Max, min: max(cfg.Min, 1)}
}

// run scales every second until ctx is done.
func (a *autoscaler) run(ctx context.Context) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-tick.C:
			a.maybeScale(time.Now())
		case <-ctx.Done():
			return
		}
	}
}

// maybeScale is Celery's _maybe_scale.
func (a *autoscaler) maybeScale(now time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	procs, qty := a.pool.len(), a.qty()
	if cur := min(qty, a.max); cur > procs {
		a.pool.grow(cur - procs)
		a.lastUp = now
		return
	}
	if cur := max(qty, a.min); cur < procs && !a.lastUp.IsZero() && now.Sub(a.lastUp) > a.keepalive {
		a.pool.shrink(procs - cur)
	}
}

// update is Celery's Autoscaler.update: a smaller max shrinks the pool, a
// larger min grows it. Zero leaves a bound as it is.
func (a *autoscaler) update(newMax, newMin int) (int, int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	procs := a.pool.len()
	if newMax > 0 {
		if newMax < procs {
			a.pool.shrink(procs - max(newMax, 1))
		}
		a.max = newMax
	}
	if newMin > 0 {
		if newMin > a.pool.len() {
			a.pool.grow(newMin - a.pool.len())
		}
		a.min = newMin
	}
	return a.max, a.min
}

// info is what stats reports under "autoscaler".
func (a *autoscaler) info() map[string]any {
	a.mu.Lock()
	defer a.mu.Unlock()
	return map[string]any{"max": a.max, "min": a.min, "current": a.pool.len(), "qty": a.qty()}
}

// held is the number of tasks received and not finished (Celery's
// reserved_requests): running and held.
func (s *Server) heldCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.running) + len(s.held)
}
