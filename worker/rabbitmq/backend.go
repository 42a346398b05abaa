package rabbitmq

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/vhg/vhg-worker/protocol"
	"github.com/vhg/vhg-worker/worker"
)

// RPCBackend is Celery's rpc:// result backend: every state is published to
// the client's reply_to queue with its correlation_id. It has no chords, as
// in Celery.
type RPCBackend struct{ b *Broker }

var _ worker.Backend = (*RPCBackend)(nil)

// RPCBackend returns the rpc:// backend on this connection.
func (b *Broker) RPCBackend() *RPCBackend { return &RPCBackend{b: b} }

// Store implements worker.Backend. With no reply_to nothing is sent, as in
// Celery; the reply queue is the client's and is not declared here.
func (r *RPCBackend) Store(ctx context.Context, meta protocol.ResultMeta, to worker.ReplyRoute) error {
	if to.ReplyTo == "" {
		return nil
	}
	body, err := meta.MessageJSON()
	if err != nil {
		return fmt.Errorf("rabbitmq: rpc result %s: %w", meta.TaskID, err)
	}
	msg := amqp.Publishing{
		ContentType:     "application/json",
		ContentEncoding: "utf-8",
		DeliveryMode:    amqp.Transient,
		CorrelationId:   to.CorrelationID,
		Body:            body,
	}
	return r.b.withPublisher(ctx, func(p *publisher) error { return p.publish(ctx, "", to.ReplyTo, msg) })
}

// SupportsChords reports false: Celery refuses chords on rpc://.
func (r *RPCBackend) SupportsChords() bool { return false }

// ResultExchange is the legacy amqp backend's exchange.
const ResultExchange = "celeryresults"

// AMQPBackend is the legacy amqp:// result backend of Celery 3.x/4.x, which
// the VHG status consumers read: each state of task X is published to the
// durable direct exchange celeryresults with routing key X without dashes,
// into a queue of that name (durable, auto_delete, x-expires), re-declared
// before every publish.
type AMQPBackend struct {
	b       *Broker
	expires time.Duration

	getMu  sync.Mutex
	getCh  *amqp.Channel
	getGen uint64
}

var _ worker.Backend = (*AMQPBackend)(nil)
var _ worker.ResultReader = (*AMQPBackend)(nil)

// AMQPBackend returns the legacy amqp:// backend on this connection.
// expires is the per-task queue's x-expires; zero means one day, Celery's
// result_expires.
func (b *Broker) AMQPBackend(expires time.Duration) *AMQPBackend {
	if expires == 0 {
		expires = 24 * time.Hour
	}
	return &AMQPBackend{b: b, expires: expires}
}

// ResultQueue is the legacy backend's queue (and routing key) for a task id.
func ResultQueue(taskID string) string { return strings.ReplaceAll(taskID, "-", "") }

// declareResultQueue declares the exchange, the task's queue and the binding
// exactly as Celery's amqp backend does.
func (a *AMQPBackend) declareResultQueue(ch *amqp.Channel, queue string) error {
	if err := ch.ExchangeDeclare(ResultExchange, amqp.ExchangeDirect, true, false, false, false, nil); err != nil {
		return fmt.Errorf("rabbitmq: declare exchange %s: %w", ResultExchange, err)
	}
	args := amqp.Table{"x-expires": int32(a.expires / time.Millisecond)}
	if _, err := ch.QueueDeclare(queue, true, true, false, false, args); err != nil {
		return fmt.Errorf("rabbitmq: declare result queue %s: %w", queue, err)
	}
	if err := ch.QueueBind(queue, queue, ResultExchange, false, nil); err != nil {
		return fmt.Errorf("rabbitmq: bind result queue %s: %w", queue, err)
	}
	return nil
}

// Store implements worker.Backend.
func (a *AMQPBackend) Store(ctx context.Context, meta protocol.ResultMeta, to worker.ReplyRoute) error {
	return a.Publish(ctx, meta, to.CorrelationID)
}

// Publish sends one state message for meta.TaskID with the given
// correlation_id (Celery 4.x: the id of the task that stores it).
func (a *AMQPBackend) Publish(ctx context.Context, meta protocol.ResultMeta, correlationID string) error {
	body, err := meta.MessageJSON()
	if err != nil {
		return fmt.Errorf("rabbitmq: amqp result %s: %w", meta.TaskID, err)
	}
	if correlationID == "" {
		correlationID = meta.TaskID
	}
	queue := ResultQueue(meta.TaskID)
	msg := amqp.Publishing{
		ContentType:     "application/json",
		ContentEncoding: "utf-8",
		DeliveryMode:    amqp.Persistent,
		CorrelationId:   correlationID,
		Body:            body,
	}
	// Re-declared before every publish, as Celery does: the queue may have
	// expired since.
	return a.b.withPublisher(ctx, func(p *publisher) error {
		if err := a.declareResultQueue(p.ch, queue); err != nil {
			return err
		}
		return p.publish(ctx, ResultExchange, queue, msg)
	})
}

// Result implements worker.ResultReader: it reads every message waiting in
// the task's queue, keeps the newest state and puts all of them back, so
// that the consumers who rely on those messages (a status listener, a
// Python AsyncResult) still get them.
func (a *AMQPBackend) Result(ctx context.Context, taskID string) (protocol.ResultMeta, error) {
	conn, gen, err := a.b.connection(ctx)
	if err != nil {
		return protocol.ResultMeta{}, err
	}
	a.getMu.Lock()
	defer a.getMu.Unlock()
	if a.getCh == nil || a.getCh.IsClosed() || a.getGen != gen {
		ch, err := conn.Channel()
		if err != nil {
			return protocol.ResultMeta{}, fmt.Errorf("rabbitmq: open channel: %w", err)
		}
		a.getCh, a.getGen = ch, gen
	}
	queue := ResultQueue(taskID)
	if err := a.declareResultQueue(a.getCh, queue); err != nil {
		return protocol.ResultMeta{}, err
	}
	latest := protocol.ResultMeta{TaskID: taskID, Status: protocol.StatePending}
	var lastTag uint64
	for range 1000 {
		m, ok, err := a.getCh.Get(queue, false)
		if err != nil {
			return protocol.ResultMeta{}, fmt.Errorf("rabbitmq: get from %s: %w", queue, err)
		}
		if !ok {
			break
		}
		lastTag = m.DeliveryTag
		meta, err := protocol.ParseResultMeta(m.Body)
		if err != nil {
			continue // not a state message; it goes back untouched
		}
		if meta.TaskID == taskID && !latest.Status.Ready() {
			latest = meta
		}
	}
	if lastTag != 0 {
		if err := a.getCh.Nack(lastTag, true, true); err != nil {
			return protocol.ResultMeta{}, fmt.Errorf("rabbitmq: requeue %s: %w", queue, err)
		}
	}
	if ctx.Err() != nil {
		return protocol.ResultMeta{}, ctx.Err()
	}
	return latest, nil
}
