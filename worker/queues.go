package worker

import (
	"context"
	"fmt"
	"slices"
	"sync"

	"github.com/sirupsen/logrus"
)

// queueSet is what a running Server consumes: one broker consumer per
// queue, so that the add_consumer and cancel_consumer control commands
// start and stop one queue without touching the others. Their deliveries
// meet on one channel. Messages received from a queue before it is
// cancelled still run and are settled as usual.
type queueSet struct {
	ctx      context.Context // Run's: done when consuming stops
	broker   Broker
	prefetch int
	log      logrus.FieldLogger
	out      chan Delivery
	// lost receives the error of a consumer whose deliveries ended while
	// its queue was still wanted (the broker closed them).
	lost chan error

	mu     sync.Mutex
	queues []string // consumed, in the order added
	stops  map[string]context.CancelFunc
}

func newQueueSet(ctx context.Context, broker Broker, prefetch int, log logrus.FieldLogger) *queueSet {
	return &queueSet{ctx: ctx, broker: broker, prefetch: prefetch, log: log,
		out: make(chan Delivery), lost: make(chan error, 1), stops: make(map[string]context.CancelFunc)}
}

// add starts consuming queue (declared by the broker as Celery declares
// it); a queue already consumed is left as it is.
func (q *queueSet) add(queue string) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	if _, ok := q.stops[queue]; ok {
		return nil
	}
	ctx, stop := context.WithCancel(q.ctx)
	deliveries, err := q.broker.Consume(ctx, []string{queue}, q.prefetch)
	if err != nil {
		stop()
		return fmt.Errorf("worker: consume %s: %w", queue, err)
	}
	q.queues = append(q.queues, queue)
	q.stops[queue] = stop
	go q.forward(ctx, queue, deliveries)
	return nil
}

// cancel stops consuming queue; it reports false when it was not consumed.
func (q *queueSet) cancel(queue string) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	stop, ok := q.stops[queue]
	if !ok {
		return false
	}
	stop()
	delete(q.stops, queue)
	q.queues = slices.DeleteFunc(q.queues, func(s string) bool { return s == queue })
	return true
}

// list returns the queues consumed.
func (q *queueSet) list() []string {
	q.mu.Lock()
	defer q.mu.Unlock()
	return slices.Clone(q.queues)
}

// forward passes one queue's deliveries on to out.
func (q *queueSet) forward(ctx context.Context, queue string, deliveries <-chan Delivery) {
	for {
		select {
		case d, ok := <-deliveries:
			if !ok {
				if ctx.Err() == nil {
					select {
					case q.lost <- fmt.Errorf("worker: the broker closed the deliveries of queue %s", queue):
					default:
					}
				}
				return
			}
			select {
			case q.out <- d:
			case <-q.ctx.Done():
				// Consuming stops: give back what arrived meanwhile.
				if err := d.Reject(true); err != nil {
					q.log.WithError(err).Warn("requeue after stop failed")
				}
			}
		case <-q.ctx.Done():
			// The broker closes deliveries once ctx is done; anything
			// still in it is given back by the broker's own consumer.
			return
		}
	}
}

// Queues returns the queues consumed: Config.Queues, changed by
// add_consumer and cancel_consumer while Run runs.
func (s *Server) Queues() []string {
	if q := s.queues.Load(); q != nil {
		return q.list()
	}
	return slices.Clone(s.cfg.Queues)
}
