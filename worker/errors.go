package worker

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/vhg/vhg-worker/protocol"
)

// ErrIgnore, returned by a handler, acknowledges the message and stores
// nothing (Celery's Ignore).
var ErrIgnore = errors.New("worker: task ignored")

// ErrShutdown is the cancellation cause of tasks still running when a hard
// stop cuts the worker's shutdown short.
var ErrShutdown = errors.New("worker: shutting down")

// ErrSoftTimeLimitExceeded is what a task's context reports as its cause
// (context.Cause) once its soft time limit has passed: a task that catches
// it and returns normally succeeds, as a Python task catching
// SoftTimeLimitExceeded does; one that returns an error fails with
// SoftTimeLimitExceeded.
var ErrSoftTimeLimitExceeded = errors.New("worker: soft time limit exceeded")

// ErrRevoked is the cancellation cause of a task terminated by a revoke.
var ErrRevoked = errors.New("worker: task revoked")

// RetryError asks for the task to run again later: the worker republishes
// the message under the same id with retries+1 and an ETA, stores RETRY and
// acknowledges the current delivery. Build it with Task.Retry.
type RetryError struct {
	// Countdown is the delay before the next run; ignored when ETA is set.
	Countdown time.Duration
	// ETA is the absolute time of the next run; zero means now+Countdown.
	ETA time.Time
	// Cause is the error that made the task retry (stored with RETRY).
	Cause error
	// MaxRetries, when not nil, bounds this retry instead of the task's
	// TaskConfig.MaxRetries; negative means no limit.
	MaxRetries *int
}

func (e *RetryError) Error() string {
	when := fmt.Sprintf("in %s", e.Countdown)
	if !e.ETA.IsZero() {
		when = "at " + e.ETA.UTC().Format(time.RFC3339)
	}
	if e.Cause != nil {
		return fmt.Sprintf("Retry %s: %v", when, e.Cause)
	}
	return "Retry " + when
}

func (e *RetryError) Unwrap() error { return e.Cause }

// RejectError rejects the message (Celery's Reject): requeued when Requeue is
// true, otherwise dropped (or dead-lettered by the broker) with a FAILURE
// stored so that nobody waits forever.
type RejectError struct {
	Requeue bool
	Cause   error
}

func (e *RejectError) Error() string {
	return fmt.Sprintf("worker: task rejected (requeue=%t): %v", e.Requeue, e.Cause)
}

func (e *RejectError) Unwrap() error { return e.Cause }

// TaskError is a failure with a given Python exception type, so that a
// Python client rebuilds the exception it expects: for example
// &TaskError{Module: "builtins", Type: "ValueError", Args: []any{"boom"}}.
// A plain Go error is stored as builtins.Exception with its message.
type TaskError struct {
	Module string // "builtins" when empty
	Type   string
	Args   []any
	// Err is the underlying Go error, if any.
	Err error
}

// NewTaskError returns a TaskError of type builtins.<excType> with a single
// message argument.
func NewTaskError(excType, format string, args ...any) *TaskError {
	return &TaskError{Module: "builtins", Type: excType, Args: []any{fmt.Sprintf(format, args...)}}
}

func (e *TaskError) Error() string {
	parts := make([]string, len(e.Args))
	for i, a := range e.Args {
		parts[i] = fmt.Sprint(a)
	}
	return e.Type + ": " + strings.Join(parts, ", ")
}

func (e *TaskError) Unwrap() error { return e.Err }

// Celery's own exceptions, as a Python client rebuilds them.
func notRegistered(name string) protocol.ExceptionInfo {
	return protocol.ExceptionInfo{Module: "celery.exceptions", Type: "NotRegistered", Message: []any{name}}
}

func taskRevoked(reason string) protocol.ExceptionInfo {
	return protocol.ExceptionInfo{Module: "celery.exceptions", Type: "TaskRevokedError", Message: []any{reason}}
}

// timeLimitExceeded carries the limit as the header gave it: whole seconds
// stay an int, as in Python's TimeLimitExceeded(10).
func timeLimitExceeded(limit time.Duration) protocol.ExceptionInfo {
	var seconds any = limit.Seconds()
	if limit%time.Second == 0 {
		seconds = int64(limit / time.Second)
	}
	return protocol.ExceptionInfo{Module: "billiard.exceptions", Type: "TimeLimitExceeded", Message: []any{seconds}}
}

func softTimeLimitExceeded() protocol.ExceptionInfo {
	return protocol.ExceptionInfo{Module: "billiard.exceptions", Type: "SoftTimeLimitExceeded", Message: []any{"SoftTimeLimitExceeded()"}}
}

// ExceptionFor maps a handler error to the exception a Python client sees:
// a *TaskError gives its own type, any other error builtins.Exception.
func ExceptionFor(err error) protocol.ExceptionInfo {
	var te *TaskError
	if errors.As(err, &te) {
		module := te.Module
		if module == "" {
			module = "builtins"
		}
		args := te.Args
		if args == nil {
			args = []any{}
		}
		return protocol.ExceptionInfo{Module: module, Type: te.Type, Message: args}
	}
	return protocol.ExceptionInfo{Module: "builtins", Type: "Exception", Message: []any{err.Error()}}
}

// traceback renders a Go failure the way Python tracebacks end, so tools
// that show result.traceback have the task and the error chain.
func traceback(task, id string, exc protocol.ExceptionInfo, err error) string {
	var b strings.Builder
	b.WriteString("Traceback (most recent call last):\n")
	fmt.Fprintf(&b, "  vhg-worker task %s[%s]\n", task, id)
	if err != nil {
		fmt.Fprintf(&b, "    go error: %v\n", err)
	}
	msg := make([]string, len(exc.Message))
	for i, m := range exc.Message {
		msg[i] = fmt.Sprint(m)
	}
	fmt.Fprintf(&b, "%s.%s: %s\n", exc.Module, exc.Type, strings.Join(msg, ", "))
	return b.String()
}
