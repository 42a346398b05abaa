package rabbitmq

import amqp "github.com/rabbitmq/amqp091-go"

// replicated are the arguments of this project's own durable queues that
// carry messages, the guard queues vhg.guards.* and the delay queue
// vhg.delay.*: quorum queues when the task queues are (a cluster), so that
// the loss of the node a classic queue would live on neither stops the
// worker from consuming after it fails over (a classic durable queue
// whose node is down cannot be declared nor consumed) nor loses the guard
// copies of the tasks in flight. Classic otherwise, as before. Quorum
// queues keep x-message-ttl and dead-lettering since RabbitMQ 3.10.
//
// The lease queues stay classic (exclusive: they are meant to go with
// their connection) and so do the done markers (they expire; a marker
// lost with its node costs one more run of a finished task, not a task).
func (b *Broker) replicated(args amqp.Table) amqp.Table {
	if b.cfg.QueueType != QueueQuorum {
		return args
	}
	out := amqp.Table{"x-queue-type": QueueQuorum}
	for k, v := range args {
		out[k] = v
	}
	return out
}
