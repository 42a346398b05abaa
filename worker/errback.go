package worker

import (
	"context"
	"fmt"
	"runtime/debug"

	"github.com/sirupsen/logrus"
	"github.com/vhg/vhg-worker/protocol"
)

// ErrbackFunc is a new-style errback: Celery calls an errback task that is
// registered in the worker and whose function takes (request, exc,
// traceback) inline, in the worker that stored the failure, instead of
// publishing it with the failed task's id. failed is the failed request (its
// Msg, and its Client to apply more work as its children); exc and traceback
// are what was stored with FAILURE. The errback's own signature arguments are
// not passed. A returned error is logged.
type ErrbackFunc func(ctx context.Context, failed *Task, exc protocol.ExceptionInfo, traceback string) error

// HandleErrback registers f as a new-style errback under the Celery task
// name. link_error signatures naming it are then called inline (see
// ErrbackFunc); a message sent to it as a plain task fails with a TypeError,
// as the Python function called with a task id would.
func (m *ServeMux) HandleErrback(name string, f ErrbackFunc) {
	if f == nil {
		panic(fmt.Sprintf("worker: nil errback for task %q", name))
	}
	m.Handle(name, HandlerFunc(func(context.Context, *Task) (any, error) {
		return nil, NewTaskError("TypeError", "%s is a new-style errback: it takes (request, exc, traceback) and runs inline when a task it is linked to fails", name)
	}))
	m.mu.Lock()
	defer m.mu.Unlock()
	e := m.entries[name]
	e.errback = f
	m.entries[name] = e
}

// errback returns the new-style errback registered under name.
func (m *ServeMux) errback(name string) (ErrbackFunc, bool) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	e, ok := m.entries[name]
	return e.errback, ok && e.errback != nil
}

// callInlineErrback calls eb inline if it names a new-style errback
// registered here, and reports whether it did.
func (s *Server) callInlineErrback(ctx context.Context, failed *protocol.Message, eb protocol.Signature, exc protocol.ExceptionInfo, tb string) bool {
	f, ok := s.mux.errback(eb.Task)
	if !ok {
		return false
	}
	log := s.log.WithFields(logrus.Fields{"task": eb.Task, "failed_task": failed.Task, "failed_id": failed.ID})
	t := &Task{Msg: failed, Log: log, server: s}
	func() {
		defer func() {
			if p := recover(); p != nil {
				log.WithField("stack", string(debug.Stack())).Errorf("errback panicked: %v", p)
			}
		}()
		if err := f(context.WithoutCancel(ctx), t, exc, tb); err != nil {
			log.WithError(err).Error("errback failed")
		}
	}()
	return true
}

// callErrbacks runs a failed task's errbacks as Celery's
// _call_task_errbacks does: new-style errbacks registered here inline, every
// other one applied as one group with the failed task's id as argument. It
// returns that group's result tuple, ((group id, None), [member tuples]), or
// nil when no group was applied.
func (c *Client) callErrbacks(ctx context.Context, failed *protocol.Message, errbacks []protocol.Signature, exc protocol.ExceptionInfo, tb string, o applyOptions) any {
	var old []protocol.Signature
	var members []any
	for _, eb := range errbacks {
		if c.inlineErrback != nil && c.inlineErrback(ctx, failed, eb, exc, tb) {
			continue
		}
		eb = eb.Clone()
		if !isChain(eb) && !isGroup(eb) && !isChord(eb) {
			if eb.Options.TaskID == "" {
				eb.Options.TaskID = NewTaskID()
			}
			members = append(members, resultTuple(eb.Options.TaskID))
		}
		old = append(old, eb)
	}
	if len(old) == 0 {
		return nil
	}
	group := protocol.NewGroup(old...)
	group.Options.TaskID = NewTaskID()
	if _, err := c.apply(ctx, group, []any{failed.ID}, o); err != nil {
		c.logError(failed, err, "applying errbacks failed")
		return nil
	}
	if members == nil {
		members = []any{}
	}
	return []any{[]any{group.Options.TaskID, nil}, members}
}
