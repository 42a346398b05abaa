package worker

import (
	"time"

	"github.com/vhg/vhg-worker/protocol"
)

// TaskEvent is what happened to a task, reported at the points where a
// Celery worker sends its task events (reference §6.1).
type TaskEvent struct {
	// Type is the Celery event type: protocol.EventTaskReceived, -Started,
	// -Succeeded, -Failed, -Retried, -Revoked or -Rejected; or
	// EventStoreFailed.
	Type string
	// Msg is the request; observers must not modify it.
	Msg *protocol.Message
	// Result is the handler's return value (task-succeeded).
	Result any
	// Runtime is how long the handler ran (succeeded, failed, retried).
	Runtime time.Duration
	// Exception and Traceback describe a failure or a retry's cause
	// (failed, retried).
	Exception protocol.ExceptionInfo
	Traceback string
	// Terminated, Signum and Expired describe a revocation: a running task
	// cancelled by revoke --terminate with signal Signum, or a message
	// whose expires time had passed.
	Terminated bool
	Signum     int
	Expired    bool
	// Requeue says whether a rejected message went back to its queue.
	Requeue bool
}

// EventStoreFailed is not a Celery event: it reports that a task's outcome
// (its final state) could not be stored, the backend still failing after
// its own retries. Msg is the request, Exception the storing error.
// Observers that send Celery events ignore it; the metrics count it.
const EventStoreFailed = "vhg-store-failed"

// Observer is told about every TaskEvent: the events dispatcher turns them
// into Celery events, the metrics collector into counters. ObserveTask runs
// on the worker's own goroutines and must return quickly.
type Observer interface {
	ObserveTask(TaskEvent)
}

// ObserverFunc adapts a function to the Observer interface.
type ObserverFunc func(TaskEvent)

// ObserveTask calls f(e).
func (f ObserverFunc) ObserveTask(e TaskEvent) { f(e) }

// Observe adds observers. Call it before Run.
func (s *Server) Observe(obs ...Observer) {
	s.observers = append(s.observers, obs...)
}

// notify tells every observer about e.
func (s *Server) notify(e TaskEvent) {
	for _, o := range s.observers {
		o.ObserveTask(e)
	}
}
