package worker

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/vhg/vhg-worker/protocol"
)

// How the Server keeps a message from being held too long, dropped after a
// reconnect, or redelivered forever. The ack rules themselves are in
// execute.go; this is what happens around them.
//
//   - A delivery that must be settled within MaxHold (LeasingDelivery: the
//     RabbitMQ consumer_timeout) is watched from the moment it arrives.
//     Still waiting at MaxHold (for its ETA or a free slot), it is
//     postponed; running an acks_late task, it is leased. An ETA further
//     away than MaxHold is postponed on arrival.
//   - A message whose ETA is a second or more away is given back to the
//     broker on arrival when it can keep it until then (DelayingDelivery:
//     RabbitMQ's native delayed delivery), so that it never holds a
//     prefetch slot: consumers have a fixed per-consumer prefetch count
//     (RabbitMQ 4 and quorum queues have no channel-wide one to raise, as
//     Celery's qos.increment_eventually did), and messages waiting for
//     their ETA would otherwise keep the worker from taking other work.
//   - A delivery whose connection is lost (StaleDelivery) is dropped
//     instead of started: the broker redelivers it.
//   - A message that comes back after a lost connection while its task is
//     still running here is adopted by that run (its acknowledgement goes
//     to the new delivery) instead of running twice.
//   - A message that came back more than Config.MaxRedeliveries times
//     (DeliveryInfo.Redeliveries: its worker died or lost its connection
//     each time) is not run again: it ends as FAILURE (WorkerLostError)
//     and is rejected, so a task that kills the worker cannot loop. On a
//     queue whose broker gives up itself after DeliveryInfo.DeliveryLimit
//     returns (a quorum queue's x-delivery-limit), the worker gives up at
//     the last delivery the broker allows, if not before.

// settleTimeout bounds a postpone or a lease taken by the hold timer.
const settleTimeout = time.Minute

// watchHold starts the timer that settles r before its delivery's MaxHold.
func (s *Server) watchHold(r *request) {
	ld, ok := r.current().(LeasingDelivery)
	if !ok || ld.MaxHold() <= 0 {
		return
	}
	r.mu.Lock()
	r.holdTimer = time.AfterFunc(ld.MaxHold(), func() { s.holdLimit(r, ld) })
	r.mu.Unlock()
}

// holdLimit runs when r has been held for MaxHold.
func (s *Server) holdLimit(r *request, ld LeasingDelivery) {
	defer func() { s.lastNet(r, "hold limit", recover()) }()
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.acked.Load() || r.leased {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), settleTimeout)
	defer cancel()
	retry := func(err error, what string) {
		wait := min(ld.MaxHold()/10, time.Minute)
		r.log.WithError(err).WithField("retry_in", wait).Error(what)
		r.holdTimer = time.AfterFunc(wait, func() { s.holdLimit(r, ld) })
	}
	if !r.started {
		if err := ld.Postpone(ctx, r.msg.ETA); err != nil {
			retry(err, "postponing a message held too long failed")
			return
		}
		r.acked.Store(true)
		close(r.gone)
		r.log.WithField("max_hold", ld.MaxHold()).Info("message waited longer than the broker lets it be held: given back to the broker")
		return
	}
	if !r.config.AcksLate {
		return // acknowledged when it started
	}
	if err := ld.Lease(ctx); err != nil {
		retry(err, "leasing the message of a long task failed")
		return
	}
	r.leased = true
}

// delayETA gives a message with an ETA back to the broker on arrival,
// instead of holding it: through native delayed delivery when the broker
// has it, else through Postpone when the ETA is further than MaxHold. It
// reports whether it did.
func (s *Server) delayETA(ctx context.Context, r *request) bool {
	if r.msg.ETA.IsZero() || !time.Now().Before(r.msg.ETA) {
		return false
	}
	if dd, ok := r.current().(DelayingDelivery); ok {
		err := dd.Delay(ctx, r.msg.ETA)
		if err == nil {
			r.acked.Store(true)
			r.log.WithField("eta", r.msg.ETA).Debug("ETA ahead: given to the broker's delayed delivery until then")
			return true
		}
		if !errors.Is(err, ErrCannotDelay) {
			r.log.WithError(err).Warn("delaying a message until its ETA failed; holding it instead")
		}
	}
	ld, ok := r.current().(LeasingDelivery)
	if !ok || time.Until(r.msg.ETA) <= ld.MaxHold() {
		return false
	}
	if err := ld.Postpone(ctx, r.msg.ETA); err != nil {
		r.log.WithError(err).Warn("postponing a far ETA failed; holding the message instead")
		return false
	}
	r.acked.Store(true)
	r.log.WithField("eta", r.msg.ETA).Debug("ETA further than the broker lets a message be held: postponed")
	return true
}

// start marks r as started; it reports false when r must not run: already
// settled (postponed), or received on a connection since lost.
func (r *request) start() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.acked.Load() {
		return false
	}
	if sd, ok := r.current().(StaleDelivery); ok && sd.Stale() {
		r.acked.Store(true)
		r.log.Warn("dropping a message received before the broker connection was lost: the broker redelivers it")
		return false
	}
	r.started = true
	return true
}

// settled stops the hold timer once r is acknowledged or rejected.
func (r *request) settled() {
	if r.holdTimer != nil {
		r.holdTimer.Stop()
	}
}

// tooManyRedeliveries settles a message that keeps coming back because the
// worker running it dies: FAILURE WorkerLostError stored, errbacks and
// chord applied as for any failure, message rejected without requeue.
func (s *Server) tooManyRedeliveries(ctx context.Context, r *request) bool {
	max := s.cfg.MaxRedeliveries
	if max == 0 {
		max = defaultMaxRedeliveries
	}
	info := r.current().Info()
	if l := info.DeliveryLimit; l > 0 && (max < 0 || max >= l) {
		// The broker drops (or dead-letters) the message when it comes
		// back once more: end it now, with a FAILURE a client can read.
		max = l - 1
	}
	n := info.Redeliveries
	if max < 0 || n <= max {
		return false
	}
	err := &TaskError{Module: "billiard.exceptions", Type: "WorkerLostError",
		Args: []any{fmt.Sprintf("Worker exited prematurely: the message came back %d times (limit %d); not running it again", n, max)}}
	exc := ExceptionFor(err)
	tb := traceback(r.msg.Task, r.msg.ID, exc, err)
	r.log.WithFields(logrus.Fields{"redeliveries": n, "limit": max}).Error("giving up on a message that keeps coming back: storing FAILURE")
	if !r.ignoreResult() {
		s.storeOutcome(ctx, r, protocol.ResultMeta{TaskID: r.msg.ID, Status: protocol.StateFailure, Result: exc, Traceback: tb})
	}
	s.notify(TaskEvent{Type: protocol.EventTaskFailed, Msg: r.msg, Exception: exc, Traceback: tb})
	s.client.afterFailure(ctx, r.msg, exc, tb)
	r.reject(r.log, false)
	return true
}

// defaultMaxRedeliveries is Config.MaxRedeliveries when zero.
const defaultMaxRedeliveries = 5

// current is the delivery to settle: the adopted one, if any.
func (r *request) current() Delivery {
	if d := r.adopted.Load(); d != nil {
		return *d
	}
	return r.delivery
}

// Bounds of the set of messages whose ack was lost (Server.ackLost): a
// message comes back within seconds of the reconnect.
const (
	ackLostMaxLen  = 10000
	ackLostExpires = time.Hour
)

// ackLostKey names a message in Server.ackLost: a retry republishes the
// same id with one more retry, and that copy must run.
func ackLostKey(m *protocol.Message) string { return m.ID + "/" + strconv.Itoa(m.Retries) }

// settledBefore acknowledges, without running it, a message that came back
// after a lost connection although this worker had already settled it (the
// task ran, or started after an early ack) and only the acknowledgement
// was lost. It reports whether it did. Celery would run the task again;
// for an encode that is minutes of work thrown away.
func (s *Server) settledBefore(r *request) bool {
	if !r.delivery.Info().Redelivered ||
		!s.ackLost.contains(time.Now(), ackLostKey(r.msg)) && !s.recent.lost(ackLostKey(r.msg)) {
		return false
	}
	r.log.Warn("message came back after a lost connection, but this worker had already run it: acknowledged without running it again")
	r.ack(r.log)
	return true
}

// adopt hands a message that came back after a lost connection to its
// task still running here, whose own delivery can no longer be
// acknowledged. It reports whether it did.
func (s *Server) adopt(r *request) bool {
	if !r.delivery.Info().Redelivered {
		return false
	}
	s.mu.Lock()
	rt, ok := s.running[r.msg.ID]
	s.mu.Unlock()
	if !ok {
		return false
	}
	run := rt.r
	run.mu.Lock()
	defer run.mu.Unlock()
	sd, ok := run.current().(StaleDelivery)
	if run.acked.Load() || run.leased || !ok || !sd.Stale() {
		return false
	}
	d := r.delivery
	run.adopted.Store(&d)
	if run.holdTimer != nil {
		run.holdTimer.Stop()
	}
	if ld, ok := d.(LeasingDelivery); ok && ld.MaxHold() > 0 {
		run.holdTimer = time.AfterFunc(ld.MaxHold(), func() { s.holdLimit(run, ld) })
	}
	r.log.Warn("message came back after a lost connection while its task still runs here: the run goes on and acknowledges it")
	return true
}
