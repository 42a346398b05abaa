package rabbitmq

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/sirupsen/logrus"
	"github.com/vhg/vhg-worker/protocol"
	"github.com/vhg/vhg-worker/worker"
)

// Headers this adapter adds to copies of task messages it publishes back.
// They are removed from what the worker sees (Delivery.Envelope).
const (
	// headerRedeliveries counts how many times the message came back after
	// the worker holding it died or lost its connection.
	headerRedeliveries = "x-vhg-redeliveries"
	// headerLease names the lease a guard copy belongs to (see lease.go).
	headerLease = "x-vhg-lease"
	// headerRequeued marks a copy published back in place of a requeue
	// (see delivery.Reject): it is delivered as redelivered, as a
	// requeued message is, without counting as a return.
	headerRequeued = "x-vhg-requeued"
	// headerDeliveryCount is the count a quorum queue keeps of a message's
	// returns (RabbitMQ 3.10+; absent on a first delivery).
	headerDeliveryCount = "x-delivery-count"
)

// ErrStale is returned when acknowledging a delivery whose connection is
// lost: the broker has requeued the message and delivers it again.
var ErrStale = errors.New("rabbitmq: the connection this message came on is lost; the broker redelivers it")

// consumer is one Consume call: it survives reconnections, subscribing
// again on each new connection, and feeds one delivery channel.
type consumer struct {
	b        *Broker
	ctx      context.Context // Consume's: done when consuming stops
	queues   []string
	prefetch int
	out      chan worker.Delivery

	mu sync.Mutex
	ch *amqp.Channel // the current channel
}

// stream is one queue's deliveries on one channel.
type stream struct {
	queue   string
	gen     uint64
	msgs    <-chan amqp.Delivery
	settler *settler // of the channel
}

// Consume implements worker.Broker: one channel consuming every queue, each
// consumer with its own prefetch count (per-consumer QoS, global=false:
// RabbitMQ refuses channel-wide QoS on quorum queues and RabbitMQ 4 drops
// it). Nothing here ever changes the prefetch count: a message waiting for
// its ETA is given back to the broker through native delayed delivery
// (Delivery.Delay) instead of holding a slot. When the connection is lost
// it subscribes again on the next one, with the queues re-declared; the
// delivery channel stays open until ctx is done or the broker is closed.
//
// Before a message reaches the worker, two kinds are settled here: a guard
// copy (see Delivery.Lease) whose task is still running elsewhere or is
// done, and, on a classic queue, a redelivered message, which is published
// again with its redelivery count (DeliveryInfo.Redeliveries) and
// acknowledged, so that the count survives the worker dying while it runs.
// A quorum queue counts returns itself (x-delivery-count).
func (b *Broker) Consume(ctx context.Context, queues []string, prefetch int) (<-chan worker.Delivery, error) {
	c := &consumer{b: b, ctx: ctx, queues: queues, prefetch: prefetch, out: make(chan worker.Delivery)}
	conn, gen, err := b.connection(ctx)
	if err != nil {
		return nil, err
	}
	streams, err := c.subscribe(ctx, conn, gen)
	if err != nil {
		return nil, err
	}
	go c.run(ctx, streams)
	return c.out, nil
}

// subscribe opens a channel on conn, declares the queues (and the native
// delayed delivery topology), applies the prefetch count per consumer and
// starts consuming.
func (c *consumer) subscribe(ctx context.Context, conn *amqp.Connection, gen uint64) ([]stream, error) {
	delayed := c.b.delayedDelivery(ctx)
	ch, err := conn.Channel()
	if err != nil {
		return nil, fmt.Errorf("rabbitmq: open channel: %w", err)
	}
	for _, q := range c.queues {
		if err := c.b.declareTaskQueue(ch, q, delayed); err != nil {
			ch.Close()
			return nil, err
		}
		// Quorum when the task queues are: see replicated.go.
		if _, err := ch.QueueDeclare(GuardQueue(q), true, false, false, false, c.b.replicated(nil)); err != nil {
			ch.Close()
			return nil, fmt.Errorf("rabbitmq: declare queue %q: %w", GuardQueue(q), err)
		}
	}
	c.b.delayMu.Lock()
	for _, q := range c.queues {
		c.b.consumed[q] = true
	}
	c.b.delayMu.Unlock()
	// global=false: the count applies to each consumer started after it.
	if err := ch.Qos(c.prefetch, 0, false); err != nil {
		ch.Close()
		return nil, fmt.Errorf("rabbitmq: qos %d: %w", c.prefetch, err)
	}
	settler := newSettler(ch, c.prefetch, c.b.log)
	var streams []stream
	for _, q := range c.queues {
		// A task queue and its guard queue: both feed q's deliveries.
		for _, name := range []string{q, GuardQueue(q)} {
			msgs, err := ch.ConsumeWithContext(ctx, name, "", false, false, false, false, nil)
			if err != nil {
				ch.Close()
				return nil, fmt.Errorf("rabbitmq: consume %q: %w", name, err)
			}
			streams = append(streams, stream{queue: q, gen: gen, msgs: msgs, settler: settler})
		}
	}
	c.mu.Lock()
	c.ch = ch
	c.mu.Unlock()
	// The channel stays open after the consumers stop so that running tasks
	// can still acknowledge their messages; Close writes the last
	// acknowledgements and releases it.
	c.b.addSettler(settler)
	return streams, nil
}

// run forwards deliveries, subscribing again whenever the channel goes
// away, until ctx is done or the broker is closed.
func (c *consumer) run(ctx context.Context, streams []stream) {
	defer close(c.out)
	for {
		c.forward(ctx, streams)
		if ctx.Err() != nil || c.b.isClosed() {
			return
		}
		c.b.log.WithField("queues", c.queues).Warn("consumer stopped by the broker; subscribing again")
		streams = nil
		for attempt := 0; streams == nil; attempt++ {
			conn, gen, err := c.b.connection(ctx)
			switch {
			case errors.Is(err, ErrClosed) || ctx.Err() != nil:
				return
			case err != nil:
				continue // still down: wait again
			}
			streams, err = c.subscribe(ctx, conn, gen)
			if err != nil {
				c.b.log.WithError(err).Warn("subscribing again failed; retrying")
				select {
				case <-time.After(backoff(attempt, c.b.cfg.MaxBackoff)):
				case <-ctx.Done():
					return
				}
			}
		}
		c.b.log.WithField("queues", c.queues).Info("consuming again")
	}
}

// forward passes deliveries on until every stream has ended.
func (c *consumer) forward(ctx context.Context, streams []stream) {
	var wg sync.WaitGroup
	for _, s := range streams {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for m := range s.msgs {
				d := c.prepareSafely(ctx, s, m)
				if d == nil {
					continue
				}
				select {
				case c.out <- d:
				case <-ctx.Done():
					// The consumer is cancelled; give back what arrived meanwhile.
					if err := d.Reject(true); err != nil {
						c.b.log.WithError(err).Warn("requeue after cancel failed")
					}
				}
			}
		}()
	}
	wg.Wait()
}

// prepareSafely is prepare under a last net: a panic while preparing one
// message is logged with its stack and the message rejected without
// requeue (it would most likely panic the next worker too), instead of
// stopping the worker.
func (c *consumer) prepareSafely(ctx context.Context, s stream, m amqp.Delivery) (out *delivery) {
	d := &delivery{d: m, c: c, s: s.settler, gen: s.gen, queue: s.queue}
	defer func() {
		if p := recover(); p != nil {
			log := c.b.log.WithFields(logrus.Fields{"delivery_tag": m.DeliveryTag, "queue": s.queue, "panic": fmt.Sprint(p), "stack": string(debug.Stack())})
			// Settling a tag twice is a channel error: only if not yet.
			if d.touched.Load() {
				log.Error("panic while receiving a message, after settling it")
			} else {
				log.Error("panic while receiving a message: rejecting it without requeue")
				if err := d.unsettle(false); err != nil {
					log.WithError(err).Warn("reject failed")
				}
			}
			out = nil
		}
	}()
	return c.prepare(ctx, s, d)
}

// prepare turns an AMQP delivery into a worker delivery, or settles it here
// (nil): guard copies and redelivered messages are handled first.
func (c *consumer) prepare(ctx context.Context, s stream, d *delivery) *delivery {
	m := d.d
	d.redeliveries = intHeader(m.Headers, headerRedeliveries)
	if v, ok := m.Headers[headerLease]; ok {
		if name, _ := v.(string); isLeaseName(name) {
			return c.b.claimGuard(ctx, d, name)
		}
		// Not a lease this adapter named: forged or damaged. The header
		// is private (dropped from the envelope), so the message is an
		// ordinary one.
		c.b.log.WithFields(d.logFields()).Warn("ignoring a lease header this worker did not write")
	}
	d.requeued, _ = m.Headers[headerRequeued].(bool)
	if c.b.cfg.QueueType == QueueQuorum {
		// The broker counts the returns of this copy; the header carries
		// those of the copies before it (see delivery.Reject).
		d.redeliveries += intHeader(m.Headers, headerDeliveryCount)
		return d
	}
	if !m.Redelivered {
		return d
	}
	// Count the redelivery in a copy, so that it survives the worker dying
	// while it runs the message (RabbitMQ 3.x classic queues count nothing).
	d.redeliveries++
	if err := d.republish(ctx, "", s.queue, nil); err != nil {
		c.b.log.WithError(err).Warn("counting a redelivery failed; the message runs without it")
		return d
	}
	if err := d.settle(); err != nil {
		c.b.log.WithError(err).Warn("ack of a counted redelivery failed")
	}
	return nil
}

// intHeader reads an integer header; zero when absent.
func intHeader(h amqp.Table, key string) int {
	switch n := h[key].(type) {
	case int8:
		return int(n)
	case int16:
		return int(n)
	case int32:
		return int(n)
	case int64:
		return int(n)
	case int:
		return n
	}
	return 0
}

// delivery adapts an amqp.Delivery to worker.Delivery.
type delivery struct {
	d            amqp.Delivery
	c            *consumer
	s            *settler // settles it on its channel
	gen          uint64   // the connection it came on
	queue        string   // the queue it came from
	redeliveries int
	requeued     bool // a copy published back in place of a requeue

	mu    sync.Mutex
	lease *lease // set once leased: Ack and Reject end the lease
	// touched is set once the message was acknowledged or rejected on
	// its channel (see prepareSafely).
	touched atomic.Bool
}

var (
	_ worker.LeasingDelivery   = (*delivery)(nil)
	_ worker.StaleDelivery     = (*delivery)(nil)
	_ worker.DelayingDelivery  = (*delivery)(nil)
	_ worker.ReturningDelivery = (*delivery)(nil)
)

// private reports the headers this adapter or RabbitMQ's dead-lettering
// adds, which the worker never sees.
func private(key string) bool {
	switch key {
	case headerRedeliveries, headerLease, headerDeliveryCount, headerRequeued, "x-death", "x-first-death-exchange", "x-first-death-queue",
		"x-first-death-reason", "x-last-death-exchange", "x-last-death-queue", "x-last-death-reason":
		return true
	}
	return false
}

func (d *delivery) Envelope() protocol.Envelope {
	headers := fromTable(d.d.Headers)
	for k := range headers {
		if private(k) {
			delete(headers, k)
		}
	}
	return protocol.Envelope{
		ContentType:     d.d.ContentType,
		ContentEncoding: d.d.ContentEncoding,
		Headers:         headers,
		Body:            d.d.Body,
		CorrelationID:   d.d.CorrelationId,
		ReplyTo:         d.d.ReplyTo,
		Priority:        d.d.Priority,
		DeliveryMode:    d.d.DeliveryMode,
		Expiration:      d.d.Expiration,
	}
}

// Info implements worker.Delivery. A message that came through native
// delayed delivery reports the queue it is on, through the default
// exchange, as its route (its routing key is the delay's, which would
// send a retry straight back to the queue without its delay).
func (d *delivery) Info() worker.DeliveryInfo {
	exchange, key := d.d.Exchange, d.d.RoutingKey
	if exchange == DelayedDeliveryExchange || strings.HasPrefix(exchange, "celery_delayed_") {
		exchange, key = "", d.queue
	}
	info := worker.DeliveryInfo{Exchange: exchange, RoutingKey: key,
		Redelivered: d.d.Redelivered || d.redeliveries > 0 || d.requeued, Redeliveries: d.redeliveries,
		DeliveryTag: d.d.DeliveryTag}
	if d.c.b.cfg.QueueType == QueueQuorum {
		info.DeliveryLimit = d.c.b.cfg.DeliveryLimit
	}
	return info
}

func (d *delivery) leased() *lease {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.lease
}

func (d *delivery) Ack() error {
	if l := d.leased(); l != nil {
		return l.release(false)
	}
	if d.Stale() {
		return ErrStale
	}
	return d.settle()
}

// settle acknowledges the message on its channel, in a batch (see
// settler).
func (d *delivery) settle() error {
	d.touched.Store(true)
	return d.s.ack(d.d.DeliveryTag)
}

// unsettle rejects the message on its channel, back to its queue when
// requeue is set, dead-lettered or dropped otherwise.
func (d *delivery) unsettle(requeue bool) error {
	d.touched.Store(true)
	return d.s.reject(d.d.DeliveryTag, requeue)
}

// Reject implements worker.Delivery. A requeue is a copy published back
// to the queue (carrying the returns counted so far, and marked so that it
// is delivered as redelivered) and an ack of this delivery, on every queue
// type: the broker counts a basic.reject with requeue as a return (a
// quorum queue's x-delivery-count and x-delivery-limit; the redelivered
// flag that this adapter counts on a classic queue), and the worker giving
// a message back on shutdown, or a task asking to be requeued, did not
// fail it. The copy goes to the back of the queue.
func (d *delivery) Reject(requeue bool) error {
	if l := d.leased(); l != nil {
		return l.release(requeue)
	}
	if d.Stale() {
		return ErrStale
	}
	if requeue {
		ctx, cancel := context.WithTimeout(context.Background(), d.c.b.cfg.ReconnectWait)
		defer cancel()
		if err := d.republish(ctx, "", d.queue, amqp.Table{headerRequeued: true}); err != nil {
			d.c.b.log.WithError(err).WithFields(d.logFields()).Warn("requeue by copy failed; rejecting with requeue (the broker counts it as a failed delivery)")
			return d.unsettle(true)
		}
		return d.settle()
	}
	return d.unsettle(requeue)
}

// Stale implements worker.StaleDelivery. A leased message is never stale:
// its lease moves to the next connection.
func (d *delivery) Stale() bool {
	if d.leased() != nil {
		return false
	}
	return d.c.b.generation() != d.gen
}

// Return implements worker.ReturningDelivery: a basic.reject with
// requeue, which the broker counts (a quorum queue's x-delivery-count, the
// redelivered flag this adapter counts on a classic queue). A leased
// message is published back with one more return in its count.
func (d *delivery) Return() error {
	if l := d.leased(); l != nil {
		return l.returnFailed()
	}
	if d.Stale() {
		return ErrStale
	}
	return d.unsettle(true)
}

// Delay implements worker.DelayingDelivery: the message is published
// again through native delayed delivery, to come back to its queue at eta
// (cut to whole seconds, so up to a second early), then this delivery is
// acknowledged. worker.ErrCannotDelay when eta is less than a second away
// or the delayed delivery topology is not there.
func (d *delivery) Delay(ctx context.Context, eta time.Time) error {
	if d.Stale() {
		return ErrStale
	}
	key, ok := DelayRoutingKey(time.Until(eta), d.queue)
	if !ok || !d.c.b.delayedDelivery(ctx) {
		return worker.ErrCannotDelay
	}
	if err := d.republish(ctx, DelayedEntry, key, nil); err != nil {
		return err
	}
	return d.settle()
}

// MaxHold implements worker.LeasingDelivery: half the consumer timeout.
func (d *delivery) MaxHold() time.Duration { return d.c.b.cfg.ConsumerTimeout / 2 }

// Postpone implements worker.LeasingDelivery: a message whose ETA is a
// second or more away goes through native delayed delivery when it is
// there (back at its ETA); otherwise one more than MaxHold away goes
// through the delay queue (back after MaxHold), any other goes straight
// back to its queue; then this delivery is acknowledged.
func (d *delivery) Postpone(ctx context.Context, eta time.Time) error {
	if err := d.Delay(ctx, eta); !errors.Is(err, worker.ErrCannotDelay) {
		return err
	}
	exchange := ""
	if time.Until(eta) > d.MaxHold() {
		exchange = d.c.b.delayExchange()
	}
	if err := d.republish(ctx, exchange, d.queue, nil); err != nil {
		return err
	}
	return d.settle()
}

// copy returns the message as a new publishing: its properties, its
// headers without the private ones, plus extra and the redelivery count.
func (d *delivery) copy(extra amqp.Table) amqp.Publishing {
	h := make(amqp.Table, len(d.d.Headers)+2)
	for k, v := range d.d.Headers {
		if !private(k) {
			h[k] = v
		}
	}
	if d.redeliveries > 0 {
		h[headerRedeliveries] = int32(d.redeliveries)
	}
	for k, v := range extra {
		h[k] = v
	}
	mode := d.d.DeliveryMode
	if mode == 0 {
		mode = amqp.Persistent
	}
	return amqp.Publishing{
		Headers:         h,
		ContentType:     d.d.ContentType,
		ContentEncoding: d.d.ContentEncoding,
		DeliveryMode:    mode,
		Priority:        d.d.Priority,
		CorrelationId:   d.d.CorrelationId,
		ReplyTo:         d.d.ReplyTo,
		Expiration:      d.d.Expiration,
		MessageId:       d.d.MessageId,
		Timestamp:       d.d.Timestamp,
		Type:            d.d.Type,
		AppId:           d.d.AppId,
		Body:            d.d.Body,
	}
}

// republish publishes a copy of the message with confirm: through
// exchange "" straight to queue, through the delay exchange, or through
// native delayed delivery (queue is then the delay's routing key).
func (d *delivery) republish(ctx context.Context, exchange, queue string, extra amqp.Table) error {
	msg := d.copy(extra)
	b := d.c.b
	return b.withPublisher(ctx, func(p *publisher) error {
		if exchange == b.delayExchange() {
			if err := b.declareDelay(p); err != nil {
				return err
			}
		}
		return p.publish(ctx, exchange, queue, msg)
	})
}

// logFields names a delivery in logs.
func (d *delivery) logFields() logrus.Fields {
	id, _ := d.d.Headers["id"].(string)
	task, _ := d.d.Headers["task"].(string)
	return logrus.Fields{"id": id, "task": task, "queue": d.queue, "delivery_tag": d.d.DeliveryTag}
}
