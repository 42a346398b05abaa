package worker

import (
	"context"

	"github.com/vhg/vhg-worker/protocol"
)

// Route says where a message is published: an exchange and a routing key.
// Celery >= 4 sends tasks through the default exchange "" with the queue
// name as routing key; QueueRoute builds that.
type Route struct {
	Exchange   string
	RoutingKey string
}

// QueueRoute routes to a queue through the default exchange.
func QueueRoute(queue string) Route { return Route{RoutingKey: queue} }

// DeliveryInfo is Celery's request.delivery_info.
type DeliveryInfo struct {
	Exchange    string
	RoutingKey  string
	Redelivered bool
}

// Delivery is one received task message. Ack and Reject must be called at
// most once between them.
type Delivery interface {
	Envelope() protocol.Envelope
	Info() DeliveryInfo
	Ack() error
	Reject(requeue bool) error
}

// Broker is what the Server needs from a message broker.
type Broker interface {
	// Consume declares the queues as Celery does and starts consuming them
	// with the given prefetch count. Deliveries stop, and the channel is
	// closed, when ctx is done; messages delivered before that can still be
	// acknowledged.
	Consume(ctx context.Context, queues []string, prefetch int) (<-chan Delivery, error)
	// Publish sends a task message.
	Publish(ctx context.Context, to Route, env protocol.Envelope) error
}

// ReplyRoute tells a backend where the client of the current request waits:
// the rpc:// backend publishes to ReplyTo with CorrelationID; the legacy
// amqp:// backend uses CorrelationID as the message's correlation_id.
type ReplyRoute struct {
	ReplyTo       string
	CorrelationID string
}

// Backend stores task states where Celery clients read them.
type Backend interface {
	Store(ctx context.Context, meta protocol.ResultMeta, to ReplyRoute) error
}

// ResultReader is implemented by backends that can read a stored state back
// (Redis, the legacy amqp backend). The celery.chord_unlock task needs it.
// A task with no stored state reads as PENDING.
type ResultReader interface {
	Result(ctx context.Context, taskID string) (protocol.ResultMeta, error)
}
