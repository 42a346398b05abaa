package worker

import (
	"context"
	"errors"
	"time"

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
	// Redeliveries counts how many times the message came back because
	// the worker holding it died or lost its connection (zero on a first
	// delivery; the RabbitMQ adapter reads a quorum queue's
	// x-delivery-count, and keeps the count in a header of its own on
	// classic queues). A message given back on purpose (a requeue on
	// shutdown, a task's Reject with requeue) does not count. The
	// Server gives up on a message that keeps coming back (see
	// Config.MaxRedeliveries).
	Redeliveries int
	// DeliveryLimit is how many returns the broker allows before it drops
	// or dead-letters the message instead (a RabbitMQ quorum queue's
	// x-delivery-limit); zero means none known. The Server ends the
	// message as FAILURE at the last delivery the broker allows.
	DeliveryLimit int
	// DeliveryTag is the broker's number for the delivery on its channel
	// (AMQP's delivery tag), for log lines about a message that has no
	// usable task id; zero when the broker has none.
	DeliveryTag uint64
}

// Delivery is one received task message. Ack and Reject must be called at
// most once between them.
type Delivery interface {
	Envelope() protocol.Envelope
	Info() DeliveryInfo
	Ack() error
	Reject(requeue bool) error
}

// LeasingDelivery is implemented by deliveries that must be settled soon
// after they arrive: RabbitMQ closes the channel of a consumer that keeps a
// message unacknowledged past its consumer_timeout, and redelivers every
// message on it (reference §7, gotcha 2). The Server never keeps such a
// delivery unsettled for longer than MaxHold: a message still waiting (for
// its ETA or for a free slot) is postponed, and the message of an acks_late
// task still running is leased.
type LeasingDelivery interface {
	Delivery
	// MaxHold is how long the message may stay unsettled after it arrived.
	MaxHold() time.Duration
	// Postpone gives the message back to the broker, to be delivered
	// again not before eta (at once when eta is zero or past, after about
	// MaxHold otherwise), and settles this delivery.
	Postpone(ctx context.Context, eta time.Time) error
	// Lease settles this delivery while its task goes on running: the
	// broker keeps a guard copy that runs the task again if this worker
	// dies before it calls Ack or Reject, which end the lease (Reject with
	// requeue gives the message back).
	Lease(ctx context.Context) error
}

// StaleDelivery is implemented by deliveries that outlive their
// connection: Stale reports that it is lost, so the message can no longer
// be acknowledged and the broker redelivers it. The Server drops a stale
// message it has not started, as Celery does after a reconnect.
type StaleDelivery interface {
	Stale() bool
}

// ReturningDelivery is implemented by deliveries whose broker tells a
// message given back on purpose (Reject with requeue: a shutdown, a task
// asking for it), which does not count as a redelivery, from one given
// back because handling it failed, which does.
type ReturningDelivery interface {
	Delivery
	// Return gives the message back to its queue as a failed delivery:
	// when it comes back, DeliveryInfo.Redeliveries counts it (and a
	// RabbitMQ quorum queue's x-delivery-limit).
	Return() error
}

// DelayingDelivery is implemented by deliveries whose broker can keep a
// message until its ETA (RabbitMQ's native delayed delivery). The Server
// gives a message with an ETA back this way as soon as it arrives, so that
// a message waiting for its ETA never holds a prefetch slot: with
// per-consumer QoS the prefetch count cannot grow while messages wait, and
// more ETA messages than slots would otherwise stop the worker from taking
// other work until the first ETA.
type DelayingDelivery interface {
	Delivery
	// Delay gives the message back to the broker, which delivers it again
	// at about eta, and settles this delivery. It returns ErrCannotDelay,
	// having done nothing, when it cannot (eta too close, no delay
	// mechanism on the broker).
	Delay(ctx context.Context, eta time.Time) error
}

// ErrCannotDelay is returned by DelayingDelivery.Delay when the broker
// cannot keep the message until its ETA; the worker holds it instead.
var ErrCannotDelay = errors.New("worker: the broker cannot delay this message")

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
