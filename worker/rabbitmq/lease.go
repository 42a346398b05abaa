package rabbitmq

// Leases: how a task runs longer than RabbitMQ's consumer_timeout without
// holding its message unacknowledged, and still runs again if the worker
// dies (reference §7, gotcha 2; celery#6760).
//
// RabbitMQ 3.10 closes the channel of a consumer that keeps any delivery
// unacknowledged longer than consumer_timeout (30 min by default) and
// requeues every message on it, so a 40-minute acks_late encode would run
// twice, and so would every other task that channel held. No delivery is
// held longer than MaxHold (half of Config.ConsumerTimeout):
//
//   - A message waiting in the worker (for its ETA or a free slot) is
//     postponed: published again with confirm, then acknowledged. An ETA
//     further than MaxHold away goes through the delay queue
//     vhg.delay.<ms> (per-queue TTL MaxHold, dead-lettered back through the
//     default exchange to the queue it came from), so no worker holds it.
//   - The message of an acks_late task still running at MaxHold is leased:
//     the worker declares an exclusive queue vhg.lease.<name> on its
//     connection (RabbitMQ deletes it when the connection dies), publishes
//     a guard copy of the message into the delay queue with the header
//     x-vhg-lease: <name>, routed back to the guard queue vhg.guards.<queue>
//     that only Go workers consume, and only then acknowledges the original. Every
//     MaxHold it publishes another guard, so one is always on its way back.
//     When the task ends, a done marker vhg.done.<name> (a durable queue
//     that expires after a day) is declared and the lease queue deleted.
//   - A worker receiving a guard (which comes back after MaxHold) declares
//     vhg.lease.<name> exclusively itself: RESOURCE_LOCKED means the owner
//     is alive, and the guard is dropped; a done marker means the task
//     finished, and it is dropped too; otherwise the owner died, and this
//     worker takes the lease over (same name, so the other guards of that
//     lease are dropped by the same test) and runs the task.
//
// So a task runs again within about MaxHold of its worker dying, as an
// unacknowledged message would be after consumer_timeout, with the broker
// as the only dependency (the legacy deployment has no Redis). Guards come
// back on their own queue, so a Python worker sharing the task queue never
// sees one (it would run it at once).

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/sirupsen/logrus"
)

// doneMarkerTTL is how long a finished lease is remembered, so that guards
// still on their way back (behind a long queue) are dropped.
const doneMarkerTTL = 24 * time.Hour

func leaseQueue(name string) string { return "vhg.lease." + name }
func doneQueue(name string) string  { return "vhg.done." + name }

// isLeaseName reports whether name has the form newLeaseName gives it.
// A guard copy's lease header comes from a message, so it may be forged:
// a name of any other form (too long for a queue name, not UTF-8, ...)
// would make the lease queue's declaration fail, and with it the
// connection, on every worker the message reaches.
func isLeaseName(name string) bool {
	id, suffix, ok := strings.Cut(name, ".")
	if !ok || len(id) > 64 || len(suffix) != 12 {
		return false
	}
	for _, r := range id {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
			return false
		}
	}
	_, err := hex.DecodeString(suffix)
	return err == nil && strings.ToLower(suffix) == suffix
}

// newLeaseName returns a name for a lease on task id: the id, made safe and
// short for a queue name, plus a random suffix (a retry of the same id
// gets a lease of its own).
func newLeaseName(id string) string {
	var b [6]byte
	rand.Read(b[:])
	safe := strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' {
			return r
		}
		return '_'
	}, id)
	if len(safe) > 64 {
		safe = safe[:64]
	}
	return safe + "." + hex.EncodeToString(b[:])
}

// delayExchange is the fanout exchange in front of the delay queue.
// GuardQueue is the queue where the guard copies of task queue q come
// back from the delay queue. Only Go workers consume it, so guards never
// reach a Python worker sharing q (which would run them at once).
func GuardQueue(q string) string { return "vhg.guards." + q }

func (b *Broker) delayExchange() string {
	return "vhg.delay." + strconv.FormatInt(b.cfg.ConsumerTimeout.Milliseconds()/2, 10)
}

// declareDelay declares the delay exchange and queue (once per connection):
// messages wait MaxHold in the queue, then are dead-lettered through the
// default exchange with their routing key, the queue they came from.
func (b *Broker) declareDelay(p *publisher) error {
	name := b.delayExchange()
	if p.declared[name] {
		return nil
	}
	if err := p.ch.ExchangeDeclare(name, amqp.ExchangeFanout, true, false, false, false, nil); err != nil {
		return fmt.Errorf("rabbitmq: declare exchange %q: %w", name, err)
	}
	args := amqp.Table{"x-message-ttl": b.cfg.ConsumerTimeout.Milliseconds() / 2, "x-dead-letter-exchange": ""}
	if _, err := p.ch.QueueDeclare(name, true, false, false, false, b.replicated(args)); err != nil {
		return fmt.Errorf("rabbitmq: declare queue %q: %w", name, err)
	}
	if err := p.ch.QueueBind(name, "", name, false, nil); err != nil {
		return fmt.Errorf("rabbitmq: bind queue %q: %w", name, err)
	}
	p.declared[name] = true
	return nil
}

// withSide runs fn on the side channel, used for lease queues: a failed
// declare closes a channel, so these never share one with anything else.
func (b *Broker) withSide(ctx context.Context, fn func(ch *amqp.Channel) error) error {
	for {
		conn, gen, err := b.connection(ctx)
		if err != nil {
			return err
		}
		b.sideMu.Lock()
		if b.sideCh == nil || b.sideCh.IsClosed() || b.sideGen != gen {
			ch, cerr := conn.Channel()
			if cerr != nil {
				b.sideMu.Unlock()
				if lostDuring(conn, cerr) {
					continue
				}
				return fmt.Errorf("rabbitmq: open channel: %w", cerr)
			}
			b.sideCh, b.sideGen = ch, gen
		}
		err = fn(b.sideCh)
		b.sideMu.Unlock()
		if err == nil || ctx.Err() != nil || !lostDuring(conn, err) {
			return err
		}
	}
}

func declareLeaseQueue(ch *amqp.Channel, name string) error {
	_, err := ch.QueueDeclare(leaseQueue(name), false, true, true, false, nil)
	return err
}

// amqpCode returns the reply code of a channel or connection exception.
func amqpCode(err error) int {
	var aerr *amqp.Error
	if errors.As(err, &aerr) {
		return aerr.Code
	}
	return 0
}

// lease keeps a running task's message safe after its delivery has been
// acknowledged (see the comment at the top of this file).
type lease struct {
	b     *Broker
	name  string
	queue string          // the queue the message returns to
	guard amqp.Publishing // the guard copy
	msg   amqp.Publishing // the message itself, for a requeue
	log   logrus.FieldLogger

	once sync.Once
	stop chan struct{}
	done chan struct{}
	err  error
}

// Lease implements worker.LeasingDelivery: declare the lease queue, publish
// a guard with confirm, acknowledge the original, renew the guard every
// MaxHold until Ack or Reject.
func (d *delivery) Lease(ctx context.Context) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.lease != nil {
		return nil
	}
	if d.c.b.generation() != d.gen {
		return ErrStale
	}
	id, _ := d.d.Headers["id"].(string)
	l := d.newLease(newLeaseName(id))
	if err := d.c.b.withSide(ctx, func(ch *amqp.Channel) error { return declareLeaseQueue(ch, l.name) }); err != nil {
		return fmt.Errorf("rabbitmq: declare lease queue: %w", err)
	}
	l.b.addLease(l)
	if err := l.publishGuard(ctx); err != nil {
		l.b.dropLease(l.name)
		return err
	}
	if err := d.settle(); err != nil {
		// The original comes back too; the guard is dropped while the
		// lease queue exists, or after the task is done.
		l.log.WithError(err).Warn("ack of a leased message failed")
	}
	l.start()
	d.lease = l
	l.log.WithField("lease", l.name).Info("task outlives the consumer timeout: message acknowledged, guarded by a lease")
	return nil
}

func (d *delivery) newLease(name string) *lease {
	return &lease{
		b:     d.c.b,
		name:  name,
		queue: d.queue,
		guard: d.copy(amqp.Table{headerLease: name}),
		msg:   d.copy(nil),
		log:   d.c.b.log.WithFields(d.logFields()),
		stop:  make(chan struct{}),
		done:  make(chan struct{}),
	}
}

func (b *Broker) addLease(l *lease) {
	b.leaseMu.Lock()
	b.leases[l.name] = l
	b.leaseMu.Unlock()
}

// dropLease forgets a lease and deletes its queue.
func (b *Broker) dropLease(name string) {
	b.leaseMu.Lock()
	delete(b.leases, name)
	b.leaseMu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	b.withSide(ctx, func(ch *amqp.Channel) error {
		_, err := ch.QueueDelete(leaseQueue(name), false, false, false)
		return err
	})
}

// holds reports whether this worker holds the lease.
func (b *Broker) holds(name string) bool {
	b.leaseMu.Lock()
	defer b.leaseMu.Unlock()
	return b.leases[name] != nil
}

// restoreLeases declares the lease queues of running tasks on a new
// connection, before it is used: while the connection was down they were
// gone, and a guard coming back now must find them.
func (b *Broker) restoreLeases(conn *amqp.Connection) error {
	b.leaseMu.Lock()
	names := make([]string, 0, len(b.leases))
	for name := range b.leases {
		names = append(names, name)
	}
	b.leaseMu.Unlock()
	if len(names) == 0 {
		return nil
	}
	ch, err := conn.Channel()
	if err != nil {
		return err
	}
	defer ch.Close()
	for _, name := range names {
		if err := declareLeaseQueue(ch, name); err != nil {
			if amqpCode(err) == amqp.ResourceLocked {
				b.log.WithField("lease", name).Error("another worker took this task over while the connection was down: it runs twice")
				ch, err = conn.Channel()
				if err != nil {
					return err
				}
				continue
			}
			return err
		}
	}
	b.log.WithField("leases", len(names)).Info("task leases restored")
	return nil
}

// publishGuard publishes the guard into the delay queue with confirm.
func (l *lease) publishGuard(ctx context.Context) error {
	return l.b.withPublisher(ctx, func(p *publisher) error {
		if err := l.b.declareDelay(p); err != nil {
			return err
		}
		return p.publish(ctx, l.b.delayExchange(), GuardQueue(l.queue), l.guard)
	})
}

// start renews the guard every MaxHold until release.
func (l *lease) start() {
	period := l.b.cfg.ConsumerTimeout / 2
	go func() {
		defer close(l.done)
		tick := time.NewTicker(period)
		defer tick.Stop()
		for {
			select {
			case <-l.stop:
				return
			case <-tick.C:
				ctx, cancel := context.WithTimeout(context.Background(), period)
				err := l.publishGuard(ctx)
				cancel()
				if err != nil {
					l.log.WithError(err).Error("renewing the lease's guard failed; retrying next period")
				}
			}
		}
	}()
}

// release ends the lease: the message is published again if requeue is
// set, the done marker is declared, the lease queue deleted. Later calls
// return the first call's error.
func (l *lease) release(requeue bool) error {
	if !requeue {
		return l.end(nil)
	}
	return l.end(&l.msg)
}

// returnFailed ends the lease publishing the message back with one more
// return in its redelivery count (worker.ReturningDelivery).
func (l *lease) returnFailed() error {
	msg := l.msg
	msg.Headers = make(amqp.Table, len(l.msg.Headers)+1)
	for k, v := range l.msg.Headers {
		msg.Headers[k] = v
	}
	msg.Headers[headerRedeliveries] = int32(intHeader(l.msg.Headers, headerRedeliveries) + 1)
	return l.end(&msg)
}

// end ends the lease, publishing msg back to the queue first unless it is
// nil (see release).
func (l *lease) end(msg *amqp.Publishing) error {
	l.once.Do(func() {
		close(l.stop)
		<-l.done
		ctx, cancel := context.WithTimeout(context.Background(), l.b.cfg.ReconnectWait)
		defer cancel()
		if msg != nil {
			err := l.b.withPublisher(ctx, func(p *publisher) error { return p.publish(ctx, "", l.queue, *msg) })
			if err != nil {
				// The lease stays: a guard runs the task again later.
				l.err = fmt.Errorf("rabbitmq: requeue leased message: %w", err)
				return
			}
		}
		err := l.b.withSide(ctx, func(ch *amqp.Channel) error {
			_, err := ch.QueueDeclare(doneQueue(l.name), true, false, false, false,
				amqp.Table{"x-expires": int32(doneMarkerTTL / time.Millisecond)})
			return err
		})
		if err != nil {
			// The lease stays until the connection closes; a guard
			// coming back after that runs the task again.
			l.err = fmt.Errorf("rabbitmq: declare done marker: %w", err)
			return
		}
		l.b.dropLease(l.name)
	})
	return l.err
}

// claimGuard handles a guard copy that came back from the delay queue: it
// is dropped while its lease is held by a live worker or once its task is
// done; otherwise this worker takes the lease over and returns the
// delivery to run.
func (b *Broker) claimGuard(ctx context.Context, d *delivery, name string) *delivery {
	log := b.log.WithFields(d.logFields()).WithField("lease", name)
	if b.holds(name) {
		// Our own guard: the exclusive queue is ours, so the declare below
		// would succeed.
		log.Debug("guard dropped: its task is still running here")
		ackOrLog(d, log)
		return nil
	}
	err := b.withSide(ctx, func(ch *amqp.Channel) error { return declareLeaseQueue(ch, name) })
	switch {
	case amqpCode(err) == amqp.ResourceLocked:
		log.Debug("guard dropped: its task is still running")
		ackOrLog(d, log)
		return nil
	case err != nil:
		log.WithError(err).Warn("checking a lease failed; the guard goes back to its queue")
		if err := d.unsettle(true); err != nil {
			log.WithError(err).Warn("requeue of a guard failed")
		}
		return nil
	}
	finished := false
	err = b.withSide(ctx, func(ch *amqp.Channel) error {
		_, err := ch.QueueDeclarePassive(doneQueue(name), true, false, false, false, nil)
		switch {
		case err == nil:
			finished = true
		case amqpCode(err) == amqp.NotFound:
			return nil
		}
		return err
	})
	if err != nil || finished {
		if err != nil {
			log.WithError(err).Warn("checking a done marker failed; the guard goes back to its queue")
			d.unsettle(true)
		} else {
			log.Debug("guard dropped: its task is done")
			ackOrLog(d, log)
		}
		b.dropLease(name)
		return nil
	}
	// The owner died: take the lease over and run the task.
	d.redeliveries++
	l := d.newLease(name)
	b.addLease(l)
	if err := l.publishGuard(ctx); err != nil {
		log.WithError(err).Warn("publishing a guard failed; the guard goes back to its queue")
		b.dropLease(name)
		d.unsettle(true)
		return nil
	}
	ackOrLog(d, log)
	l.start()
	d.lease = l
	log.WithField("redeliveries", d.redeliveries).Warn("the worker running this task died: taking it over")
	return d
}

func ackOrLog(d *delivery, log logrus.FieldLogger) {
	if err := d.settle(); err != nil {
		log.WithError(err).Warn("ack failed")
	}
}
