package worker

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime/debug"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/vhg/vhg-worker/protocol"
)

// softTimeLimitError is the cancellation cause at a soft time limit.
type softTimeLimitError struct{ limit time.Duration }

func (e softTimeLimitError) Error() string {
	return fmt.Sprintf("worker: soft time limit (%s) exceeded", e.limit)
}

// Is makes errors.Is(context.Cause(ctx), ErrSoftTimeLimitExceeded) true.
func (e softTimeLimitError) Is(target error) bool { return target == ErrSoftTimeLimitExceeded }

// hardTimeLimitError is the cancellation cause at a hard time limit.
type hardTimeLimitError struct{ limit time.Duration }

func (e hardTimeLimitError) Error() string {
	return fmt.Sprintf("worker: hard time limit (%s) exceeded", e.limit)
}

// execute runs one request and settles its message, following Celery's
// acknowledgement rules (reference §2.3) in one place:
//
//   - acks_late off: ack when execution starts.
//   - acks_late on: ack after the outcome is stored, whatever it is, except
//     a RejectError (reject as asked) and a hard stop before the task
//     finished (requeue, so another worker runs it).
//
// Storing the outcome can fail even after the backend's own retries (Redis
// or RabbitMQ down for minutes). The message is then never acknowledged
// as if all were well (Celery acknowledges it and the result is lost):
//
//   - acks_late on: the message is rejected with requeue, so the task runs
//     again later (its steps are idempotent, as for a redelivery after a
//     crash) and the outcome is stored then. The broker adapter counts the
//     return as a redelivery, so Config.MaxRedeliveries bounds the loop.
//   - acks_late off: the message was acknowledged when the task started;
//     nothing can bring it back. The loss is logged at error level with
//     the task id and counted (EventStoreFailed, the metrics'
//     vhg_worker_result_store_failures_total).
//   - a RejectError without requeue is rejected as asked, the loss logged
//     and counted the same way.
func (s *Server) execute(r *request) {
	log := r.log
	if !r.start() {
		s.unhold(r)
		return
	}
	ctx, cancel := context.WithCancelCause(s.hardCtx)
	defer cancel(nil)
	// Tracked before the revocation check, so that a revoke racing with
	// the start either finds the id here or is seen by the check.
	s.track(r, cancel)
	defer s.untrack(r.msg.ID)
	if s.discardRevoked(ctx, r) {
		return
	}
	if !r.config.AcksLate {
		r.ack(log)
	}
	s.countStarted(r)
	s.notify(TaskEvent{Type: protocol.EventTaskStarted, Msg: r.msg})

	if r.config.TrackStarted && !r.ignoreResult() {
		s.store(ctx, r.msg, protocol.ResultMeta{TaskID: r.msg.ID, Status: protocol.StateStarted,
			Result: map[string]any{"pid": os.Getpid(), "hostname": s.cfg.NodeName}})
	}

	hard, soft := r.timeLimits()
	runCtx := ctx
	if soft > 0 {
		var stop context.CancelFunc
		runCtx, stop = context.WithDeadlineCause(runCtx, time.Now().Add(soft), softTimeLimitError{soft})
		defer stop()
	}
	if hard > 0 {
		var stop context.CancelFunc
		runCtx, stop = context.WithDeadlineCause(runCtx, time.Now().Add(hard), hardTimeLimitError{hard})
		defer stop()
	}

	start := time.Now()
	task := &Task{Msg: r.msg, Log: log, Delivery: r.current().Info(), config: r.config, server: s, envelope: r.env}
	log.Info("task started")
	result, err := s.call(runCtx, r.handler, task)
	runtime := time.Since(start)
	r.runtime = runtime

	// A cancellation cause turns whatever the handler returned into the
	// matching Celery failure.
	switch cause := context.Cause(runCtx); {
	case cause == nil:
	case errors.As(cause, new(hardTimeLimitError)):
		err = &timeLimitFailure{exc: timeLimitExceeded(hard), err: cause}
	case errors.As(cause, new(softTimeLimitError)) && err != nil:
		err = &timeLimitFailure{exc: softTimeLimitExceeded(), err: cause}
	case errors.Is(cause, ErrShutdown) && err != nil:
		// Cut short by a hard stop: give the message back.
		log.WithError(err).Warn("task cancelled by shutdown; requeueing it")
		r.requeue(log)
		return
	case errors.Is(cause, ErrRevoked):
		err = errTerminated
	}

	log = log.WithField("runtime", runtime.Round(time.Microsecond))
	var storeErr error // the outcome could not be stored
	switch {
	case err == nil:
		storeErr = s.onSuccess(ctx, r, result, log)
	case errors.Is(err, ErrIgnore):
		log.Info("task ignored")
	default:
		var retry *RetryError
		var reject *RejectError
		switch {
		case errors.As(err, &retry):
			storeErr = s.onRetry(ctx, r, retry, log)
		case errors.As(err, &reject):
			log.WithError(reject.Cause).WithField("requeue", reject.Requeue).Warn("task rejected")
			if !reject.Requeue {
				if err := s.onFailure(ctx, r, err, log); err != nil {
					log.WithError(err).Error("the task's FAILURE could not be stored; rejecting its message as the task asked: the outcome is lost")
				}
			}
			r.reject(log, reject.Requeue)
			s.notify(TaskEvent{Type: protocol.EventTaskRejected, Msg: r.msg, Requeue: reject.Requeue})
			return
		default:
			storeErr = s.onFailure(ctx, r, err, log)
		}
	}
	if storeErr != nil {
		if r.config.AcksLate {
			log.WithError(storeErr).Error("the task's outcome could not be stored: requeueing its message, so the task runs again")
			r.giveBack(log)
			return
		}
		log.WithError(storeErr).Error("the task's outcome could not be stored and its message was acknowledged when it started: the outcome is lost")
	}
	r.ack(log)
}

// call runs the handler, turning a panic into an error.
func (s *Server) call(ctx context.Context, h Handler, t *Task) (result any, err error) {
	defer func() {
		if p := recover(); p != nil {
			t.Log.WithField("stack", string(debug.Stack())).Error("task panicked")
			err = &TaskError{Module: "builtins", Type: "RuntimeError", Args: []any{fmt.Sprintf("panic: %v", p)}}
		}
	}()
	return h.ServeTask(ctx, t)
}

func (r *request) ignoreResult() bool { return r.msg.IgnoreResult || r.config.IgnoreResult }

// timeLimits returns the [hard, soft] limits: the message's, else the task's.
func (r *request) timeLimits() (hard, soft time.Duration) {
	hard, soft = r.msg.TimeLimit.Hard, r.msg.TimeLimit.Soft
	if hard == 0 {
		hard = r.config.TimeLimit
	}
	if soft == 0 {
		soft = r.config.SoftTimeLimit
	}
	return hard, soft
}

// track records r as running (see Active).
func (s *Server) track(r *request, cancel context.CancelCauseFunc) {
	s.mu.Lock()
	s.running[r.msg.ID] = &runningTask{r: r, cancel: cancel, start: time.Now()}
	delete(s.held, r)
	s.mu.Unlock()
}

// countStarted counts r as processed, as Celery counts a task when the
// pool accepts it (stats "total", heartbeat "processed").
func (s *Server) countStarted(r *request) {
	s.mu.Lock()
	s.total[r.msg.Task]++
	s.processed++
	s.mu.Unlock()
}

func (s *Server) untrack(id string) {
	s.mu.Lock()
	delete(s.running, id)
	s.mu.Unlock()
}

// Terminate cancels a running task with ErrRevoked (revoke --terminate).
// It reports whether the task was running here.
func (s *Server) Terminate(id string) bool { return s.terminate(id, sigterm) }

// sigterm is the signal number Celery reports for a default terminate.
const sigterm = 15

func (s *Server) terminate(id string, signum int) bool {
	s.mu.Lock()
	rt, ok := s.running[id]
	if ok {
		rt.signum = signum
	}
	s.mu.Unlock()
	if ok {
		rt.cancel(ErrRevoked)
	}
	return ok
}

// terminatedWith returns the signal a running task was terminated with.
func (s *Server) terminatedWith(id string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if rt, ok := s.running[id]; ok && rt.signum != 0 {
		return rt.signum
	}
	return sigterm
}

type timeLimitFailure struct {
	exc protocol.ExceptionInfo
	err error
}

func (e *timeLimitFailure) Error() string { return e.err.Error() }
func (e *timeLimitFailure) Unwrap() error { return e.err }

// errTerminated is the outcome of a task cancelled by revoke --terminate.
var errTerminated = errors.New("worker: task terminated by revoke")

// onSuccess stores SUCCESS and goes on with the workflow. It returns the
// error of storing the outcome, after the rest is done (the chord join
// counts a task id once, so a run again joins nothing twice).
func (s *Server) onSuccess(ctx context.Context, r *request, result any, log logrus.FieldLogger) error {
	children, err := s.client.afterSuccess(ctx, r.msg, result)
	if err != nil {
		// The task ran, but the workflow cannot go on: say so loudly and
		// store FAILURE so nobody waits for the next step forever.
		log.WithError(err).Error("task succeeded but applying its callbacks/chain failed")
		return s.onFailure(ctx, r, fmt.Errorf("applying the next step: %w", err), log)
	}
	var storeErr error
	if !r.ignoreResult() {
		storeErr = s.storeOutcome(ctx, r, protocol.ResultMeta{TaskID: r.msg.ID, Status: protocol.StateSuccess, Result: result, Children: children})
	}
	log.Info("task succeeded")
	s.notify(TaskEvent{Type: protocol.EventTaskSucceeded, Msg: r.msg, Result: result, Runtime: r.runtime})
	s.client.chordPartReturn(ctx, r.msg, protocol.StateSuccess, result)
	return storeErr
}

// onFailure stores FAILURE (REVOKED when terminated) and runs the
// errbacks. It returns the error of storing the outcome.
func (s *Server) onFailure(ctx context.Context, r *request, err error, log logrus.FieldLogger) error {
	var exc protocol.ExceptionInfo
	var tlf *timeLimitFailure
	switch {
	case errors.As(err, &tlf):
		exc = tlf.exc
	case errors.Is(err, errTerminated):
		storeErr := s.storeOutcome(ctx, r, protocol.ResultMeta{TaskID: r.msg.ID, Status: protocol.StateRevoked, Result: taskRevoked("terminated")})
		log.Warn("task terminated")
		s.client.chordPartReturn(ctx, r.msg, protocol.StateRevoked, taskRevoked("terminated"))
		s.notify(TaskEvent{Type: protocol.EventTaskRevoked, Msg: r.msg, Terminated: true, Signum: s.terminatedWith(r.msg.ID), Runtime: r.runtime})
		return storeErr
	default:
		exc = ExceptionFor(err)
	}
	tb := traceback(r.msg.Task, r.msg.ID, exc, err)
	log.WithError(err).Error("task failed")
	var storeErr error
	if !r.ignoreResult() {
		storeErr = s.storeOutcome(ctx, r, protocol.ResultMeta{TaskID: r.msg.ID, Status: protocol.StateFailure, Result: exc, Traceback: tb})
	}
	s.notify(TaskEvent{Type: protocol.EventTaskFailed, Msg: r.msg, Exception: exc, Traceback: tb, Runtime: r.runtime})
	s.client.afterFailure(ctx, r.msg, exc, tb)
	return storeErr
}

// onRetry republishes the message for a retry and stores RETRY. RETRY is
// not an outcome: once the retry is published, failing to store it loses
// nothing (the retry stores the outcome), so only a final FAILURE's store
// error is returned.
func (s *Server) onRetry(ctx context.Context, r *request, retry *RetryError, log logrus.FieldLogger) error {
	max := r.config.MaxRetries
	if max == 0 {
		max = 3
	}
	if retry.MaxRetries != nil {
		max = *retry.MaxRetries
	}
	if max >= 0 && r.msg.Retries >= max {
		cause := retry.Cause
		if cause == nil {
			cause = &TaskError{Module: "celery.exceptions", Type: "MaxRetriesExceededError",
				Args: []any{fmt.Sprintf("Can't retry %s[%s] args:%v kwargs:%v", r.msg.Task, r.msg.ID, r.msg.Args, r.msg.Kwargs)}}
		}
		return s.onFailure(ctx, r, cause, log)
	}
	eta := retry.ETA
	if eta.IsZero() {
		eta = time.Now().Add(retry.Countdown)
	}
	next := *r.msg
	next.Retries++
	next.ETA = eta.UTC()
	if next.ParentID == "" {
		next.ParentID = r.msg.ID
	}
	// Route the retry where the message came from (Celery: the original
	// exchange and routing key; "" exchange means the queue itself).
	info := r.current().Info()
	next.Priority = r.msg.Priority
	if err := s.client.publish(ctx, &next, Route{Exchange: info.Exchange, RoutingKey: info.RoutingKey}); err != nil {
		// Celery turns a failed retry publish into Reject(requeue=False).
		log.WithError(err).Error("republishing the retry failed")
		return s.onFailure(ctx, r, fmt.Errorf("retry publish failed: %w", err), log)
	}
	var exc any
	tb := ""
	if retry.Cause != nil {
		info := ExceptionFor(retry.Cause)
		exc = info
		tb = traceback(r.msg.Task, r.msg.ID, protocol.ExceptionInfo{Module: "celery.exceptions", Type: "Retry", Message: []any{retry.Error()}}, retry.Cause)
	}
	log.WithFields(logrus.Fields{"eta": next.ETA, "cause": retry.Cause}).Info("task retry scheduled")
	if !r.ignoreResult() {
		s.store(ctx, r.msg, protocol.ResultMeta{TaskID: r.msg.ID, Status: protocol.StateRetry, Result: exc, Traceback: tb})
	}
	event := TaskEvent{Type: protocol.EventTaskRetried, Msg: r.msg, Traceback: tb, Runtime: r.runtime,
		Exception: protocol.ExceptionInfo{Module: "celery.exceptions", Type: "Retry", Message: []any{retry.Error()}}}
	if info, ok := exc.(protocol.ExceptionInfo); ok {
		event.Exception = info
	}
	s.notify(event)
	return nil
}
