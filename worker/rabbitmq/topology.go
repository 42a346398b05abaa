package rabbitmq

// Topology: the queues, exchanges and bindings a worker declares, exactly
// as a Celery 5.6 worker with the same settings declares them, so that Go
// and Python workers start in any order on one broker (RabbitMQ refuses a
// declaration whose arguments differ from the existing entity's:
// PRECONDITION_FAILED inequivalent arg).
//
// Task queues. Each queue q of -Q is declared as Celery declares its
// default queue with task_default_queue_type and task_default_exchange_type
// (and a missing queue with task_create_missing_queue_type and
// task_create_missing_queue_exchange_type set to the same values): queue
// q durable, not auto-delete, with x-queue-type: quorum for quorum queues
// (and x-delivery-limit when Config.DeliveryLimit is set, as a deployment's
// queue_arguments would have it) and no arguments for classic ones; exchange q durable of the exchange
// type; q bound to it with routing key q.
//
// Native delayed delivery (Celery 5.5+, kombu's native_delayed_delivery).
// 28 levels celery_delayed_27 .. celery_delayed_0: level n is a topic
// exchange and a queue whose messages wait 2^n seconds, then are
// dead-lettered to level n-1 (level 0 to the topic exchange
// celery_delayed_delivery). A message's routing key is the delay in
// seconds as 28 binary digits, dot-separated, then the routing key of its
// queue: level n's queue takes the keys whose digit for 2^n is 1, and an
// exchange-to-exchange binding passes the others straight to level n-1. So
// a message published to celery_delayed_27 waits exactly its delay and
// comes out of celery_delayed_delivery with its key unchanged. The names
// are global and shared by every worker of the broker: they are declared
// with Celery's arguments (queue type quorum, Celery's default
// broker_native_delayed_delivery_queue_type, unless configured) and never
// deleted.
//
// A task queue on a topic exchange gets Celery's two bindings: exchange q
// bound to celery_delayed_delivery with "#.q", and queue q to exchange q
// with "#.q" (a routing key already starting with "#" is used as is). Celery
// binds nothing for a direct exchange (its clients publish countdowns
// there straight to the queue); this worker binds queue q to
// celery_delayed_delivery with a key that matches exactly 28 digits and q,
// so that it can delay messages of any queue the same way. A Celery worker
// ignores that extra binding.
//
// This project's own queues: the lease queues vhg.lease.* are exclusive (a
// quorum queue cannot be) and the done markers vhg.done.* expire
// (x-expires) and are tiny, so they stay classic; the guard queues
// vhg.guards.* and the delay queue vhg.delay.* follow the task queues'
// type (see replicated.go): a cluster's worker fails over to another node
// only if they live on past the node it leaves.

import (
	"fmt"
	"strings"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// Queue types (Celery's task_default_queue_type).
const (
	QueueClassic = "classic"
	QueueQuorum  = "quorum"
)

// Exchange types of task queues (Celery's task_default_exchange_type).
const (
	ExchangeDirect = "direct"
	ExchangeTopic  = "topic"
)

// Native delayed delivery names and limits, as kombu defines them.
const (
	// DelayedDeliveryLevels is the number of levels: delays are whole
	// seconds below 2^28 (about 8.5 years).
	DelayedDeliveryLevels = 28
	// DelayedDeliveryExchange is where delayed messages come out.
	DelayedDeliveryExchange = "celery_delayed_delivery"
	// MaxNativeDelay is the longest delay the levels can hold.
	MaxNativeDelay = (1<<DelayedDeliveryLevels - 1) * time.Second
)

// DelayedLevel is the name of level n's exchange and queue.
func DelayedLevel(n int) string { return fmt.Sprintf("celery_delayed_%d", n) }

// DelayedEntry is the exchange a delayed message is published to.
var DelayedEntry = DelayedLevel(DelayedDeliveryLevels - 1)

// DelayRoutingKey returns the routing key that delays a message for
// routingKey by delay, cut to whole seconds as Celery cuts a countdown:
// 28 binary digits of the seconds, each followed by a dot, then
// routingKey. ok is false when delay is under a second (nothing to wait
// for). A delay past MaxNativeDelay is capped.
func DelayRoutingKey(delay time.Duration, routingKey string) (key string, ok bool) {
	secs := int64(delay / time.Second)
	if secs < 1 || routingKey == "" {
		return "", false
	}
	secs = min(secs, int64(MaxNativeDelay/time.Second))
	var b strings.Builder
	b.Grow(2*DelayedDeliveryLevels + len(routingKey))
	for bit := DelayedDeliveryLevels - 1; bit >= 0; bit-- {
		b.WriteByte('0' + byte(secs>>bit&1))
		b.WriteByte('.')
	}
	b.WriteString(routingKey)
	return b.String(), true
}

// levelKey is the topic pattern whose digit for 2^level is digit: "1.#"
// for level 27, "*.1.#" for 26, ... as kombu builds them.
func levelKey(level int, digit string) string {
	return strings.Repeat("*.", DelayedDeliveryLevels-1-level) + digit + ".#"
}

// exactDelayKey matches the 28 digits of any delay followed by queue.
func exactDelayKey(queue string) string {
	return strings.Repeat("*.", DelayedDeliveryLevels) + queue
}

// declarer is what declaring a topology takes of an *amqp.Channel.
type declarer interface {
	ExchangeDeclare(name, kind string, durable, autoDelete, internal, noWait bool, args amqp.Table) error
	QueueDeclare(name string, durable, autoDelete, exclusive, noWait bool, args amqp.Table) (amqp.Queue, error)
	QueueBind(name, key, exchange string, noWait bool, args amqp.Table) error
	ExchangeBind(destination, key, source string, noWait bool, args amqp.Table) error
}

var _ declarer = (*amqp.Channel)(nil)

// queueArgs are the arguments of a task queue of the configured type.
func (b *Broker) queueArgs() amqp.Table {
	if b.cfg.QueueType != QueueQuorum {
		return nil
	}
	args := amqp.Table{"x-queue-type": QueueQuorum}
	if b.cfg.DeliveryLimit > 0 {
		args["x-delivery-limit"] = int32(b.cfg.DeliveryLimit)
	}
	return args
}

// declareTaskQueue declares a task queue as a Celery 5.6 worker with the
// same queue and exchange types does (see the top of this file), plus its
// binding to the delayed delivery exchange when native delayed delivery
// is in use on this connection.
func (b *Broker) declareTaskQueue(ch declarer, name string, delayed bool) error {
	if err := ch.ExchangeDeclare(name, b.cfg.ExchangeType, true, false, false, false, nil); err != nil {
		return fmt.Errorf("rabbitmq: declare exchange %q: %w", name, err)
	}
	if _, err := ch.QueueDeclare(name, true, false, false, false, b.queueArgs()); err != nil {
		return fmt.Errorf("rabbitmq: declare queue %q: %w", name, err)
	}
	if err := ch.QueueBind(name, name, name, false, nil); err != nil {
		return fmt.Errorf("rabbitmq: bind queue %q: %w", name, err)
	}
	if !delayed {
		return nil
	}
	return b.bindDelayed(ch, name)
}

// bindDelayed binds task queue name (declared) to the delayed delivery
// exchange: as Celery does on a topic exchange, with a binding of this
// worker's own on a direct one (see the top of this file).
func (b *Broker) bindDelayed(ch declarer, name string) error {
	if b.cfg.ExchangeType == ExchangeTopic {
		key := "#." + name
		if strings.HasPrefix(name, "#") {
			key = name
		}
		if err := ch.ExchangeBind(name, key, DelayedDeliveryExchange, false, nil); err != nil {
			return fmt.Errorf("rabbitmq: bind exchange %q to %s: %w", name, DelayedDeliveryExchange, err)
		}
		if err := ch.QueueBind(name, key, name, false, nil); err != nil {
			return fmt.Errorf("rabbitmq: bind queue %q with %q: %w", name, key, err)
		}
		return nil
	}
	if err := ch.QueueBind(name, exactDelayKey(name), DelayedDeliveryExchange, false, nil); err != nil {
		return fmt.Errorf("rabbitmq: bind queue %q to %s: %w", name, DelayedDeliveryExchange, err)
	}
	return nil
}

// declareDelayedDelivery declares the native delayed delivery levels and
// exchanges exactly as kombu's
// declare_native_delayed_delivery_exchanges_and_queues does.
func (b *Broker) declareDelayedDelivery(ch declarer) error {
	qtype := b.cfg.DelayedDeliveryQueueType
	for level := DelayedDeliveryLevels - 1; level >= 0; level-- {
		name := DelayedLevel(level)
		if err := ch.ExchangeDeclare(name, amqp.ExchangeTopic, true, false, false, false, nil); err != nil {
			return fmt.Errorf("rabbitmq: declare exchange %q: %w", name, err)
		}
		next := DelayedDeliveryExchange
		if level > 0 {
			next = DelayedLevel(level - 1)
		}
		args := amqp.Table{
			"x-queue-type":           qtype,
			"x-overflow":             "reject-publish",
			"x-message-ttl":          int64(1<<level) * 1000,
			"x-dead-letter-exchange": next,
		}
		if qtype == QueueQuorum {
			args["x-dead-letter-strategy"] = "at-least-once"
		}
		if _, err := ch.QueueDeclare(name, true, false, false, false, args); err != nil {
			return fmt.Errorf("rabbitmq: declare queue %q: %w", name, err)
		}
		if err := ch.QueueBind(name, levelKey(level, "1"), name, false, nil); err != nil {
			return fmt.Errorf("rabbitmq: bind queue %q: %w", name, err)
		}
	}
	for level := DelayedDeliveryLevels - 1; level > 0; level-- {
		if err := ch.ExchangeBind(DelayedLevel(level-1), levelKey(level, "0"), DelayedLevel(level), false, nil); err != nil {
			return fmt.Errorf("rabbitmq: bind exchange %q: %w", DelayedLevel(level-1), err)
		}
	}
	if err := ch.ExchangeDeclare(DelayedDeliveryExchange, amqp.ExchangeTopic, true, false, false, false, nil); err != nil {
		return fmt.Errorf("rabbitmq: declare exchange %q: %w", DelayedDeliveryExchange, err)
	}
	if err := ch.ExchangeBind(DelayedDeliveryExchange, levelKey(0, "0"), DelayedLevel(0), false, nil); err != nil {
		return fmt.Errorf("rabbitmq: bind exchange %q: %w", DelayedDeliveryExchange, err)
	}
	return nil
}
