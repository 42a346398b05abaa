package rabbitmq

import (
	"context"
	"fmt"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/vhg/vhg-worker/protocol"
	"github.com/vhg/vhg-worker/worker"
)

var _ worker.EventPublisher = (*Broker)(nil)

// PublishEvent implements worker.EventPublisher as Celery's dispatcher
// publishes: on the celeryev topic exchange (durable, declared on first
// use), routing key the event type with dots, headers {"hostname": node},
// delivery mode 1, JSON. Events use their own channel without publisher
// confirms, so that a slow event never holds up a task message.
func (b *Broker) PublishEvent(ctx context.Context, e protocol.Event) error {
	body, err := e.JSON()
	if err != nil {
		return fmt.Errorf("rabbitmq: event %s: %w", e.Type, err)
	}
	// Events are not worth waiting for a lost connection: they are
	// dropped until it is back.
	b.mu.Lock()
	conn, gen := b.conn, b.gen
	b.mu.Unlock()
	if conn.IsClosed() {
		return fmt.Errorf("rabbitmq: event %s: %w", e.Type, ErrDisconnected)
	}
	b.eventMu.Lock()
	defer b.eventMu.Unlock()
	if b.eventCh == nil || b.eventCh.IsClosed() || b.eventGen != gen {
		ch, err := conn.Channel()
		if err != nil {
			return fmt.Errorf("rabbitmq: open event channel: %w", err)
		}
		if err := ch.ExchangeDeclare(protocol.EventExchange, amqp.ExchangeTopic, true, false, false, false, nil); err != nil {
			ch.Close()
			return fmt.Errorf("rabbitmq: declare exchange %q: %w", protocol.EventExchange, err)
		}
		b.eventCh, b.eventGen = ch, gen
	}
	err = b.eventCh.PublishWithContext(ctx, protocol.EventExchange, e.RoutingKey(), false, false, amqp.Publishing{
		Headers:         amqp.Table{"hostname": e.Hostname},
		ContentType:     "application/json",
		ContentEncoding: "utf-8",
		DeliveryMode:    amqp.Transient,
		Body:            body,
	})
	if err != nil {
		return fmt.Errorf("rabbitmq: publish event %s: %w", e.Type, err)
	}
	return nil
}
