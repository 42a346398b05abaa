package tasks

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/sirupsen/logrus"
	vhgctx "github.com/vhg/vhg-worker/context"
	"github.com/vhg/vhg-worker/protocol"
	"github.com/vhg/vhg-worker/worker"
)

// The custom states of the status queue, besides PROGRESS and FAILURE.
const (
	StatePartial  protocol.State = "PARTIAL"  // one rendition is ready
	StateComplete protocol.State = "COMPLETE" // the master and the MPD are ready
)

// Notify is adaptation.commons.notify(context, main_task_id,
// complete=False). It publishes, for the status queue of main_task_id,
// PARTIAL {"hls": this rendition's playlist} or, with complete,
// COMPLETE {"hls": the master playlist, "dash": the MPD}, with the current
// task id as correlation_id (what Celery 4.x's amqp backend did for
// update_state). It returns the context unchanged.
func (p *Pipeline) Notify(ctx context.Context, t *worker.Task) (any, error) {
	c, err := p.contextArg(t)
	if err != nil {
		return nil, err
	}
	mainID := stringKwarg(t, "main_task_id")
	if mainID == "" {
		mainID = t.RootID()
	}
	complete, _ := t.Kwargs()["complete"].(bool)
	var meta protocol.ResultMeta
	if complete {
		// The master is final now; a Python step before may have left it
		// invalid (see playlist.go).
		if err := repairMaster(c); err != nil {
			return nil, fmt.Errorf("tasks: notify: master playlist: %w", err)
		}
		meta, err = completeStatus(mainID, c)
	} else {
		meta, err = partialStatus(mainID, c)
	}
	if err != nil {
		return nil, fmt.Errorf("tasks: notify: %w", err)
	}
	if err := p.publish(ctx, t, meta); err != nil {
		return nil, fmt.Errorf("tasks: notify: %w", err)
	}
	return c, nil
}

// partialStatus is the PARTIAL message of one rendition.
func partialStatus(mainID string, c vhgctx.Context) (protocol.ResultMeta, error) {
	playlist, err := c.HLSTranscodedPlaylist()
	if err != nil {
		return protocol.ResultMeta{}, err
	}
	return protocol.ResultMeta{TaskID: mainID, Status: StatePartial, Result: map[string]any{"hls": playlist}, Children: []any{}}, nil
}

// completeStatus is the COMPLETE message of the workflow.
func completeStatus(mainID string, c vhgctx.Context) (protocol.ResultMeta, error) {
	master, err := c.HLSGlobalPlaylist()
	if err != nil {
		return protocol.ResultMeta{}, err
	}
	mpd, err := c.DashMPDFilePath()
	if err != nil {
		return protocol.ResultMeta{}, err
	}
	return protocol.ResultMeta{TaskID: mainID, Status: StateComplete, Result: map[string]any{"hls": master, "dash": mpd}, Children: []any{}}, nil
}

// failureStatus is the FAILURE message of the workflow whose task failedID
// failed with exc.
func failureStatus(mainID, failedID string, exc protocol.ExceptionInfo) protocol.ResultMeta {
	return protocol.ResultMeta{TaskID: mainID, Status: protocol.StateFailure, Result: map[string]any{
		"error":    exceptionText(exc),
		"task_id":  failedID,
		"exc_type": exc.Type,
	}, Children: []any{}}
}

// exceptionText joins an exception's arguments, as str(exc) does.
func exceptionText(exc protocol.ExceptionInfo) string {
	parts := make([]string, len(exc.Message))
	for i, m := range exc.Message {
		parts[i] = fmt.Sprint(m)
	}
	return strings.Join(parts, ", ")
}

// exceptionOf is the exception a Python client sees for a handler error.
func exceptionOf(err error) protocol.ExceptionInfo {
	var te *worker.TaskError
	if errors.As(err, &te) {
		return protocol.ExceptionInfo{Module: te.Module, Type: te.Type, Message: te.Args}
	}
	return protocol.ExceptionInfo{Module: "builtins", Type: "Exception", Message: []any{err.Error()}}
}

// publish sends a status message with the current task id as correlation
// id; without a StatusPublisher it only logs it.
func (p *Pipeline) publish(ctx context.Context, t *worker.Task, meta protocol.ResultMeta) error {
	if p.deps.Status == nil {
		t.Log.WithField("status", meta.Status).Debug("no status publisher: status not sent")
		return nil
	}
	// A status is news someone waits for: send it even when a soft stop
	// is cancelling the task's context.
	return p.deps.Status.Publish(context.WithoutCancel(ctx), meta, t.ID())
}

// notifyFailureWaits is how many times (a second apart) notify_failure
// waits for the failed task's state before it reports without it.
const notifyFailureWaits = 5

// NotifyFailure is adaptation.commons.notify_failure(failed_task_id,
// main_task_id=...), the errback encode_workflow attaches to every step. It
// publishes FAILURE {"error", "task_id", "exc_type"} for the status queue of
// main_task_id, reading the failed task's exception from the result
// backend. A chord body that failed only because a header step failed is
// skipped: that step's own errback has already reported the cause.
func (p *Pipeline) NotifyFailure(ctx context.Context, t *worker.Task) (any, error) {
	var failedID string
	if len(t.Args()) > 0 {
		failedID, _ = t.Args()[0].(string)
	}
	if failedID == "" {
		failedID = stringKwarg(t, "failed_task_id")
	}
	mainID := stringKwarg(t, "main_task_id")
	if mainID == "" {
		mainID = t.RootID()
	}
	exc := protocol.ExceptionInfo{Module: "builtins", Type: "Exception", Message: []any{fmt.Sprintf("task %s failed", failedID)}}
	meta, err := t.Result(ctx, failedID)
	switch {
	case err == nil && !meta.Status.Ready() && t.Retries() < notifyFailureWaits:
		// A failed chord calls its body's errbacks before it stores the
		// body's FAILURE (as Celery's chord_error_from_stack does): wait
		// for it, so as to tell a chord failed by a header step (already
		// reported by that step's errback) from one that failed itself.
		return nil, t.Retry(fmt.Errorf("the state of %s is not stored yet", failedID), time.Second, worker.RetryMaxRetries(notifyFailureWaits))
	case err != nil:
		t.Log.WithError(err).Warn("cannot read the failed task's exception; reporting the failure without it")
	case meta.Status == protocol.StateFailure:
		if stored, ok := protocol.ParseExceptionInfo(meta.Result); ok {
			exc = stored
		}
	}
	if exc.Type == "ChordError" && strings.HasPrefix(exceptionText(exc), "Dependency ") {
		t.Log.WithField("failed", failedID).Info("chord failed because a header step failed; its own errback reported it")
		return nil, nil
	}
	if err := p.publish(ctx, t, failureStatus(mainID, failedID, exc)); err != nil {
		return nil, fmt.Errorf("tasks: notify_failure: %w", err)
	}
	return nil, nil
}

// FailureStatus is the middleware that keeps status consumers from waiting
// forever on a workflow that a Python client built without notify_failure
// errbacks (and on encode_workflow itself, which has none): when an
// adaptation.commons task fails for good and its message has no
// notify_failure errback, it publishes the FAILURE status for the root task
// itself. When the errback is there, the errback reports, so a failure is
// reported once.
func (p *Pipeline) FailureStatus(next worker.Handler) worker.Handler {
	return worker.HandlerFunc(func(ctx context.Context, t *worker.Task) (result any, err error) {
		if !strings.HasPrefix(t.Name(), namePrefix) || t.Name() == NameNotifyFailure || hasFailureErrback(t) {
			return next.ServeTask(ctx, t)
		}
		defer func() {
			if r := recover(); r != nil {
				p.reportFailure(ctx, t, fmt.Errorf("panic: %v", r))
				panic(r)
			}
		}()
		result, err = next.ServeTask(ctx, t)
		if err != nil && !isFlowControl(err) && !errors.Is(context.Cause(ctx), worker.ErrShutdown) &&
			!errors.Is(context.Cause(ctx), worker.ErrRevoked) {
			p.reportFailure(ctx, t, err)
		}
		return result, err
	})
}

// TerminatedStatus is the middleware that reports a step stopped by
// `celery control revoke --terminate`: Celery runs no errback for a
// terminated task, so without it the status consumer would wait forever.
// It publishes FAILURE with TaskRevokedError('terminated') for the root.
func (p *Pipeline) TerminatedStatus(next worker.Handler) worker.Handler {
	return worker.HandlerFunc(func(ctx context.Context, t *worker.Task) (any, error) {
		result, err := next.ServeTask(ctx, t)
		if strings.HasPrefix(t.Name(), namePrefix) && errors.Is(context.Cause(ctx), worker.ErrRevoked) {
			exc := protocol.ExceptionInfo{Module: "celery.exceptions", Type: "TaskRevokedError", Message: []any{"terminated"}}
			if perr := p.publish(ctx, t, failureStatus(t.RootID(), t.ID(), exc)); perr != nil {
				t.Log.WithError(perr).Error("publishing the FAILURE status of a terminated step failed")
			}
		}
		return result, err
	})
}

// RevokedStatus returns the observer that reports a workflow step revoked
// (or expired) before it ran: its handler never runs and Celery applies no
// errback, so the status consumer is told here, with the
// TaskRevokedError the backend holds for the step.
func (p *Pipeline) RevokedStatus(log logrus.FieldLogger) worker.Observer {
	return worker.ObserverFunc(func(e worker.TaskEvent) {
		if e.Type != protocol.EventTaskRevoked || e.Terminated || !strings.HasPrefix(e.Msg.Task, namePrefix) || p.deps.Status == nil {
			return
		}
		reason := "revoked"
		if e.Expired {
			reason = "expired"
		}
		exc := protocol.ExceptionInfo{Module: "celery.exceptions", Type: "TaskRevokedError", Message: []any{reason}}
		root := e.Msg.RootID
		if root == "" {
			root = e.Msg.ID
		}
		meta := failureStatus(root, e.Msg.ID, exc)
		// Observers must return quickly: publish on the side.
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if err := p.deps.Status.Publish(ctx, meta, e.Msg.ID); err != nil {
				log.WithError(err).WithFields(logrus.Fields{"task": e.Msg.Task, "id": e.Msg.ID}).Error("publishing the FAILURE status of a revoked step failed")
			}
		}()
	})
}

func (p *Pipeline) reportFailure(ctx context.Context, t *worker.Task, err error) {
	meta := failureStatus(t.RootID(), t.ID(), exceptionOf(err))
	if perr := p.publish(ctx, t, meta); perr != nil {
		t.Log.WithError(perr).Error("publishing the FAILURE status failed")
	}
}

// hasFailureErrback reports whether the task's errbacks include
// notify_failure.
func hasFailureErrback(t *worker.Task) bool {
	for _, e := range t.Msg.Errbacks {
		if e.Task == NameNotifyFailure {
			return true
		}
	}
	return false
}

// stringKwarg returns a string kwarg, or "" when absent or not a string.
func stringKwarg(t *worker.Task, name string) string {
	s, _ := t.Kwargs()[name].(string)
	return s
}
