package rabbitmq

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
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

	mu    sync.Mutex
	extra int           // prefetch added for messages held for their ETA
	ch    *amqp.Channel // the current channel
}

// stream is one queue's deliveries on one channel.
type stream struct {
	queue   string
	gen     uint64
	msgs    <-chan amqp.Delivery
	settler *settler // of the channel
}

// Consume implements worker.Broker: one channel with QoS prefetch (global,
// as Celery sets it on classic queues) consuming every queue. When the
// connection is lost it subscribes again on the next one, with the queues
// re-declared and the prefetch re-applied; the delivery channel stays open
// until ctx is done or the broker is closed.
//
// Before a message reaches the worker, two kinds are settled here: a guard
// copy (see Delivery.Lease) whose task is still running elsewhere or is
// done, and a redelivered message, which is published again with its
// redelivery count (DeliveryInfo.Redeliveries) and acknowledged, so that
// the count survives the worker dying while it runs.
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

// subscribe opens a channel on conn, declares the queues, applies the
// prefetch count and starts consuming.
func (c *consumer) subscribe(ctx context.Context, conn *amqp.Connection, gen uint64) ([]stream, error) {
	ch, err := conn.Channel()
	if err != nil {
		return nil, fmt.Errorf("rabbitmq: open channel: %w", err)
	}
	for _, q := range c.queues {
		if err := declareTaskQueue(ch, q); err != nil {
			ch.Close()
			return nil, err
		}
		if _, err := ch.QueueDeclare(GuardQueue(q), true, false, false, false, nil); err != nil {
			ch.Close()
			return nil, fmt.Errorf("rabbitmq: declare queue %q: %w", GuardQueue(q), err)
		}
	}
	c.mu.Lock()
	prefetch := c.prefetch + c.extra
	c.mu.Unlock()
	if err := ch.Qos(prefetch, 0, true); err != nil {
		ch.Close()
		return nil, fmt.Errorf("rabbitmq: qos %d: %w", prefetch, err)
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
	d.redeliveries = redeliveries(m.Headers)
	if v, ok := m.Headers[headerLease]; ok {
		if name, _ := v.(string); isLeaseName(name) {
			return c.b.claimGuard(ctx, d, name)
		}
		// Not a lease this adapter named: forged or damaged. The header
		// is private (dropped from the envelope), so the message is an
		// ordinary one.
		c.b.log.WithFields(d.logFields()).Warn("ignoring a lease header this worker did not write")
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

// adjust changes the prefetch count by delta and applies it at once.
func (c *consumer) adjust(delta int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.extra += delta
	if c.extra < 0 {
		c.extra = 0
	}
	if c.ch == nil || c.ch.IsClosed() {
		return // applied by the next subscribe
	}
	if c.ctx.Err() != nil {
		// Consuming stops: nothing more is delivered, and basic.qos would
		// race with the basic.cancel on the same channel (amqp091 pairs a
		// reply with whichever call waits).
		return
	}
	if err := c.ch.Qos(c.prefetch+c.extra, 0, true); err != nil {
		c.b.log.WithError(err).Warn("changing the prefetch count failed")
	}
}

func redeliveries(h amqp.Table) int {
	switch n := h[headerRedeliveries].(type) {
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

	mu    sync.Mutex
	lease *lease // set once leased: Ack and Reject end the lease
	// touched is set once the message was acknowledged or rejected on
	// its channel (see prepareSafely).
	touched atomic.Bool
}

var (
	_ worker.LeasingDelivery  = (*delivery)(nil)
	_ worker.StaleDelivery    = (*delivery)(nil)
	_ worker.PrefetchAdjuster = (*delivery)(nil)
)

// private reports the headers this adapter or RabbitMQ's dead-lettering
// adds, which the worker never sees.
func private(key string) bool {
	switch key {
	case headerRedeliveries, headerLease, "x-death", "x-first-death-exchange", "x-first-death-queue",
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

func (d *delivery) Info() worker.DeliveryInfo {
	return worker.DeliveryInfo{Exchange: d.d.Exchange, RoutingKey: d.d.RoutingKey,
		Redelivered: d.d.Redelivered || d.redeliveries > 0, Redeliveries: d.redeliveries, DeliveryTag: d.d.DeliveryTag}
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

func (d *delivery) Reject(requeue bool) error {
	if l := d.leased(); l != nil {
		return l.release(requeue)
	}
	if d.Stale() {
		return ErrStale
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

// AdjustPrefetch implements worker.PrefetchAdjuster.
func (d *delivery) AdjustPrefetch(delta int) { d.c.adjust(delta) }

// MaxHold implements worker.LeasingDelivery: half the consumer timeout.
func (d *delivery) MaxHold() time.Duration { return d.c.b.cfg.ConsumerTimeout / 2 }

// Postpone implements worker.LeasingDelivery: a message whose ETA is more
// than MaxHold away goes through the delay queue (back after MaxHold),
// any other goes straight back to its queue; then this delivery is
// acknowledged.
func (d *delivery) Postpone(ctx context.Context, eta time.Time) error {
	if d.Stale() {
		return ErrStale
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
// exchange "" straight to queue, or through the delay exchange.
func (d *delivery) republish(ctx context.Context, exchange, queue string, extra amqp.Table) error {
	msg := d.copy(extra)
	b := d.c.b
	return b.withPublisher(ctx, func(p *publisher) error {
		if exchange != "" {
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
