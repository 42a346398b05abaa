package rabbitmq

import (
	"context"
	"errors"
	"fmt"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/vhg/vhg-worker/protocol"
	"github.com/vhg/vhg-worker/worker"
)

// ControlReceiver answers remote control requests; *worker.Control is one.
type ControlReceiver interface {
	Receive(headers map[string]any, body []byte) (*worker.ControlReply, error)
}

var _ ControlReceiver = (*worker.Control)(nil)

// Mailbox is a worker node's remote control queue ("pidbox"), declared and
// consumed as kombu does, so that `celery inspect`, `celery control` and
// Flower reach the node.
type Mailbox struct {
	b     *Broker
	node  string
	ch    *amqp.Channel
	msgs  <-chan amqp.Delivery
	reply bool // reply exchange declared on ch
}

// The mailbox queue's arguments (Celery's control_queue_expires and
// control_queue_ttl), as int32 like py-amqp sends them.
const (
	mailboxExpiresMS    = int32(10000)
	mailboxMessageTTLMS = int32(300000)
)

// OpenMailbox declares the fanout exchange celery.pidbox (not durable, not
// auto-deleted) and the node's queue "<node>.celery.pidbox" (not durable,
// auto-deleted, x-expires 10 s, x-message-ttl 300 s) bound to it, and
// starts consuming it without acks. Serve answers what arrives.
func (b *Broker) OpenMailbox(node string) (*Mailbox, error) {
	m := &Mailbox{b: b, node: node}
	if err := m.open(context.Background()); err != nil {
		return nil, err
	}
	return m, nil
}

// open declares and consumes the mailbox on the current connection.
func (m *Mailbox) open(ctx context.Context) error {
	conn, _, err := m.b.connection(ctx)
	if err != nil {
		return err
	}
	ch, err := conn.Channel()
	if err != nil {
		return fmt.Errorf("rabbitmq: open mailbox channel: %w", err)
	}
	queue := protocol.ControlQueue(m.node)
	if err := ch.ExchangeDeclare(protocol.ControlExchange, amqp.ExchangeFanout, false, false, false, false, nil); err != nil {
		ch.Close()
		return fmt.Errorf("rabbitmq: declare exchange %q: %w", protocol.ControlExchange, err)
	}
	q, err := ch.QueueDeclare(queue, false, true, false, false, amqp.Table{
		"x-expires":     mailboxExpiresMS,
		"x-message-ttl": mailboxMessageTTLMS,
	})
	if err != nil {
		ch.Close()
		return fmt.Errorf("rabbitmq: declare queue %q: %w", queue, err)
	}
	if q.Consumers > 0 {
		m.b.log.WithField("node", m.node).Warn("a node with this name is already using its mailbox: give each worker a unique node name (-n)")
	}
	if err := ch.QueueBind(queue, "", protocol.ControlExchange, false, nil); err != nil {
		ch.Close()
		return fmt.Errorf("rabbitmq: bind queue %q: %w", queue, err)
	}
	msgs, err := ch.Consume(queue, "", true, false, false, false, nil)
	if err != nil {
		ch.Close()
		return fmt.Errorf("rabbitmq: consume %q: %w", queue, err)
	}
	m.ch, m.msgs, m.reply = ch, msgs, false
	return nil
}

// Serve answers requests until ctx is done (nil) or the broker is closed
// (an error), then closes the mailbox. When the connection is lost it
// opens the mailbox again on the next one.
func (m *Mailbox) Serve(ctx context.Context, ctrl ControlReceiver) error {
	defer func() { m.ch.Close() }()
	for {
		select {
		case <-ctx.Done():
			return nil
		case d, ok := <-m.msgs:
			if !ok {
				if ctx.Err() != nil {
					return nil
				}
				if err := m.reopen(ctx); err != nil {
					if ctx.Err() != nil {
						return nil
					}
					return err
				}
				continue
			}
			reply, err := ctrl.Receive(fromTable(d.Headers), d.Body)
			if err != nil {
				m.b.log.WithError(err).Error("bad control request")
				continue
			}
			if reply == nil {
				continue
			}
			if err := m.publishReply(ctx, reply); err != nil {
				m.b.log.WithError(err).Warn("control reply not sent")
			}
		}
	}
}

// reopen opens the mailbox again once the connection is back; it gives up
// only when the broker is closed or ctx is done.
func (m *Mailbox) reopen(ctx context.Context) error {
	m.ch.Close()
	for attempt := 0; ; attempt++ {
		err := m.open(ctx)
		switch {
		case err == nil:
			m.b.log.WithField("node", m.node).Info("remote control mailbox open again")
			return nil
		case errors.Is(err, ErrClosed):
			return errors.New("rabbitmq: the broker closed the mailbox consumer")
		case ctx.Err() != nil:
			return ctx.Err()
		case !errors.Is(err, ErrDisconnected):
			m.b.log.WithError(err).Warn("opening the mailbox again failed; retrying")
		}
		select {
		case <-time.After(backoff(attempt, m.b.cfg.MaxBackoff)):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// publishReply declares the direct reply exchange (not durable) once and
// publishes the reply with the ticket and clock headers, as kombu does.
func (m *Mailbox) publishReply(ctx context.Context, r *worker.ControlReply) error {
	exchange := r.To.Exchange
	if !m.reply || exchange != protocol.ControlReplyExchange {
		if err := m.ch.ExchangeDeclare(exchange, amqp.ExchangeDirect, false, false, false, false, nil); err != nil {
			return fmt.Errorf("rabbitmq: declare exchange %q: %w", exchange, err)
		}
		m.reply = exchange == protocol.ControlReplyExchange
	}
	err := m.ch.PublishWithContext(context.WithoutCancel(ctx), exchange, r.To.RoutingKey, false, false, amqp.Publishing{
		Headers:         amqp.Table{"ticket": r.Ticket, "clock": int64(r.Clock)},
		ContentType:     "application/json",
		ContentEncoding: "utf-8",
		DeliveryMode:    amqp.Transient,
		Body:            r.Body,
	})
	if err != nil {
		return fmt.Errorf("rabbitmq: publish control reply to %q/%q: %w", exchange, r.To.RoutingKey, err)
	}
	return nil
}
