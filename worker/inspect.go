package worker

import (
	"os"
	"sort"
	"time"

	"github.com/vhg/vhg-worker/protocol"
)

// This file holds what `celery inspect` and the metrics read from a running
// Server: the requests it runs, holds and schedules, its revoked ids and its
// counters. Every method is safe to call while Run runs.

// RequestInfo describes one request the worker holds or runs, with what
// Celery's Request.info() reports.
type RequestInfo struct {
	ID     string
	Task   string
	Args   []any
	Kwargs map[string]any
	// Hostname is the worker's node name.
	Hostname string
	// ETA is when a scheduled request runs; zero when it has none.
	ETA      time.Time
	Priority uint8
	Delivery DeliveryInfo
	// TimeStart is when the request started running; zero while held.
	TimeStart time.Time
	// Acknowledged tells whether its message has been settled.
	Acknowledged bool
	// WorkerPID is the process running it; zero while held.
	WorkerPID int
}

// runningTask is a request being executed.
type runningTask struct {
	r      *request
	cancel func(error)
	start  time.Time
	signum int // the signal of a revoke --terminate, once asked
}

// info describes r; start is zero for a request that is not running.
func (s *Server) info(r *request, start time.Time) RequestInfo {
	i := RequestInfo{
		ID: r.msg.ID, Task: r.msg.Task, Args: r.msg.Args, Kwargs: r.msg.Kwargs,
		Hostname: s.cfg.NodeName, ETA: r.msg.ETA, Priority: r.msg.Priority,
		Delivery: r.delivery.Info(), TimeStart: start, Acknowledged: r.acked.Load(),
	}
	if !start.IsZero() {
		i.WorkerPID = os.Getpid()
	}
	return i
}

// Active returns the requests running now, oldest first.
func (s *Server) Active() []RequestInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]RequestInfo, 0, len(s.running))
	for _, rt := range s.running {
		out = append(out, s.info(rt.r, rt.start))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].TimeStart.Before(out[j].TimeStart) })
	return out
}

// Reserved returns the requests received and waiting for a free slot (not
// those waiting for their ETA, see Scheduled).
func (s *Server) Reserved() []RequestInfo { return s.heldRequests(false) }

// Scheduled returns the requests waiting for their ETA, earliest first.
func (s *Server) Scheduled() []RequestInfo { return s.heldRequests(true) }

func (s *Server) heldRequests(waitingETA bool) []RequestInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []RequestInfo
	for r, eta := range s.held {
		if eta == waitingETA {
			out = append(out, s.info(r, time.Time{}))
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].ETA.Equal(out[j].ETA) {
			return out[i].ETA.Before(out[j].ETA)
		}
		return out[i].ID < out[j].ID
	})
	return out
}

// hold records a received request until it runs or is given back;
// waitingETA says whether it waits for its ETA or for a free slot.
func (s *Server) hold(r *request, waitingETA bool) {
	s.mu.Lock()
	s.held[r] = waitingETA
	s.mu.Unlock()
}

func (s *Server) unhold(r *request) {
	s.mu.Lock()
	delete(s.held, r)
	s.mu.Unlock()
}

// Revoke revokes task ids, as the revoke control command does: a revoked
// request is discarded when it arrives or before it runs (REVOKED stored,
// task-revoked sent, message acknowledged). With terminate, the ones
// running now are cancelled with ErrRevoked and end as REVOKED
// "terminated"; signum is the signal the request named (15 for SIGTERM),
// reported in the task-revoked event. It returns the ids it terminated.
func (s *Server) Revoke(ids []string, terminate bool, signum int) (terminated []string) {
	s.revoked.add(time.Now(), ids...)
	if !terminate {
		return nil
	}
	for _, id := range ids {
		if s.terminate(id, signum) {
			terminated = append(terminated, id)
		}
	}
	return terminated
}

// Revoked returns the revoked ids still remembered, oldest first.
func (s *Server) Revoked() []string {
	entries := s.revoked.snapshot(time.Now())
	ids := make([]string, len(entries))
	for i, e := range entries {
		ids[i] = e.id
	}
	return ids
}

// revokedSince returns the revoked ids with the unix time each was revoked
// (what the hello command shares with other workers).
func (s *Server) revokedSince() map[string]any {
	entries := s.revoked.snapshot(time.Now())
	out := make(map[string]any, len(entries))
	for _, e := range entries {
		out[e.id] = protocol.UnixSeconds(e.added)
	}
	return out
}

// isRevoked reports whether a task id has been revoked.
func (s *Server) isRevoked(id string) bool { return s.revoked.contains(time.Now(), id) }

// Stats are the worker's counters.
type Stats struct {
	// Total counts the tasks started, by name (Celery's state.total_count).
	Total map[string]int
	// Processed is the sum of Total.
	Processed int
	// Active is the number of tasks running; Held the number received and
	// not started (waiting for a slot or their ETA).
	Active int
	Held   int
	// Uptime is the time since the Server was created.
	Uptime time.Duration
	// Concurrency and Prefetch are the configured pool size and the
	// broker prefetch count.
	Concurrency int
	Prefetch    int
}

// Stats returns the worker's counters.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	total := make(map[string]int, len(s.total))
	for name, n := range s.total {
		total[name] = n
	}
	return Stats{
		Total: total, Processed: s.processed,
		Active: len(s.running), Held: len(s.held),
		Uptime:      time.Since(s.created),
		Concurrency: s.cfg.Concurrency,
		Prefetch:    s.cfg.Concurrency * s.cfg.PrefetchMultiplier,
	}
}

// Registered reports whether a task name is registered in the Server's
// ServeMux (builtins included).
func (s *Server) Registered(name string) bool { return s.mux.Has(name) }

// Clock is the worker's Lamport clock, shared by its events and its
// remote control replies.
func (s *Server) Clock() *protocol.LamportClock { return &s.clock }

// Consuming reports whether Run is consuming from the broker: true from
// the moment its consumers are set up until it stops.
func (s *Server) Consuming() bool { return s.consuming.Load() }
