package worker

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/vhg/vhg-worker/protocol"
)

// Task is the request a Handler runs: the decoded message plus what the task
// may do with the worker (update its state, retry, apply signatures).
type Task struct {
	// Msg is the decoded request; handlers must not modify it.
	Msg *protocol.Message
	// Log carries the task name, id and retries.
	Log logrus.FieldLogger
	// Delivery is where the message came from.
	Delivery DeliveryInfo

	config TaskConfig
	server *Server
	// envelope is the message as received (for Properties).
	envelope protocol.Envelope
}

// ID returns the task id.
func (t *Task) ID() string { return t.Msg.ID }

// Name returns the registered task name.
func (t *Task) Name() string { return t.Msg.Task }

// Args returns the positional arguments.
func (t *Task) Args() []any { return t.Msg.Args }

// Kwargs returns the keyword arguments (never nil).
func (t *Task) Kwargs() map[string]any {
	if t.Msg.Kwargs == nil {
		return map[string]any{}
	}
	return t.Msg.Kwargs
}

// Hostname returns the node name of the worker running the task (Celery's
// request.hostname).
func (t *Task) Hostname() string { return t.server.cfg.NodeName }

// RootID returns the id of the task that started the workflow.
func (t *Task) RootID() string {
	if t.Msg.RootID != "" {
		return t.Msg.RootID
	}
	return t.Msg.ID
}

// UpdateState stores a state for taskID (the current task when empty), like
// Celery's Task.update_state: any state name, meta stored as the result.
func (t *Task) UpdateState(ctx context.Context, taskID string, state protocol.State, meta any) error {
	if taskID == "" {
		taskID = t.Msg.ID
	}
	return t.server.store(ctx, t.Msg, protocol.ResultMeta{TaskID: taskID, Status: state, Result: meta})
}

// Retry returns the error a handler returns to run again after countdown
// (zero: the task's DefaultRetryDelay). cause is stored with RETRY. Options
// change this one retry, like the arguments of Celery's Task.retry:
// RetryMaxRetries, RetryAt.
func (t *Task) Retry(cause error, countdown time.Duration, opts ...RetryOption) error {
	if countdown == 0 {
		countdown = t.config.DefaultRetryDelay
		if countdown == 0 {
			countdown = 180 * time.Second
		}
	}
	r := &RetryError{Countdown: countdown, Cause: cause}
	for _, opt := range opts {
		opt(r)
	}
	return r
}

// RetryOption changes one retry (see Task.Retry).
type RetryOption func(*RetryError)

// RetryMaxRetries bounds this retry with n instead of the task's
// MaxRetries (Celery's retry(max_retries=n)); negative means no limit.
func RetryMaxRetries(n int) RetryOption {
	return func(r *RetryError) { r.MaxRetries = &n }
}

// RetryAt runs the retry at eta instead of after a countdown (Celery's
// retry(eta=...)); a zero eta or one in the past runs it at once.
func RetryAt(eta time.Time) RetryOption {
	return func(r *RetryError) {
		if eta.IsZero() {
			eta = time.Now()
		}
		r.ETA = eta
	}
}

// Client returns a client that applies signatures as children of this task
// (parent_id and root_id set from it).
func (t *Task) Client() *Client {
	return t.server.client.child(t.Msg)
}

func (t *Task) String() string { return fmt.Sprintf("%s[%s]", t.Msg.Task, t.Msg.ID) }

// ErrNoResultReader is returned by Task.Result when the result backend
// cannot read states back (rpc://, or no backend).
var ErrNoResultReader = errors.New("worker: the result backend cannot read results")

// Result reads the stored state of any task, like AsyncResult(id).state and
// .info; a task with nothing stored reads as PENDING.
func (t *Task) Result(ctx context.Context, taskID string) (protocol.ResultMeta, error) {
	reader, ok := t.server.backend.(ResultReader)
	if !ok {
		return protocol.ResultMeta{}, ErrNoResultReader
	}
	return reader.Result(ctx, taskID)
}
