// Command vhg-bench-floor is the floor of `make bench`'s no-op comparison:
// the least work a worker can do per task with Redis results, on the same
// broker, queue and Redis as the worker it is compared with.
//
//	vhg-bench-floor [-b BROKER_URL] [--result-backend redis://...] [-Q QUEUE]
//	                [-c N] [--prefetch-multiplier N] [--expires SECONDS]
//
// It declares QUEUE as the worker does on a classic queue and consumes it
// on one channel with the worker's QoS (prefetch count = N x multiplier,
// per consumer). One loop takes the messages that have arrived, at most N
// at a time (the tasks a worker with N slots holds at once); for each it
// reads the task id from the protocol 2 "id" header, decoding nothing
// else, and stores a SUCCESS meta (result null) under
// celery-task-meta-<id> with SETEX, with the worker's default expiry, and
// PUBLISH on that key, as the worker's Redis backend does. The commands of
// a batch go out in one write, pipelined (the next batch does not wait for
// the replies), and once a batch's replies are in, one multiple ack
// settles it. It runs no task, keeps no state and sends no events; it
// stops on SIGTERM or SIGINT.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	redigo "github.com/gomodule/redigo/redis"
	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/vhg/vhg-worker/protocol"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "vhg-bench-floor:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("vhg-bench-floor", flag.ContinueOnError)
	brokerURL := fs.String("b", "amqp://guest:guest@localhost:5672//", "broker URL")
	backendURL := fs.String("result-backend", "redis://127.0.0.1:6379/0", "Redis URL of the results")
	queue := fs.String("Q", "celery", "queue to consume")
	concurrency := fs.Int("c", 1, "messages handled at once at most")
	multiplier := fs.Int("prefetch-multiplier", 4, "prefetch count = c x this")
	expires := fs.Int("expires", int((24 * time.Hour).Seconds()), "expiry of each result in seconds (the worker's default)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *concurrency < 1 || *multiplier < 1 {
		return fmt.Errorf("-c and --prefetch-multiplier must be at least 1")
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()

	// The worker's heartbeat: a shorter one (amqp091's default is 10 s)
	// lets RabbitMQ drop the connection while the bench holds the process
	// stopped to fill the queue.
	conn, err := amqp.DialConfig(*brokerURL, amqp.Config{Heartbeat: 60 * time.Second})
	if err != nil {
		return fmt.Errorf("rabbitmq: %w", err)
	}
	defer conn.Close()
	closed := conn.NotifyClose(make(chan *amqp.Error, 1))
	ch, err := conn.Channel()
	if err != nil {
		return fmt.Errorf("rabbitmq: open channel: %w", err)
	}
	// The worker's declarations (a Celery queue: a direct exchange of the
	// same name) and QoS.
	if err := ch.ExchangeDeclare(*queue, amqp.ExchangeDirect, true, false, false, false, nil); err != nil {
		return fmt.Errorf("rabbitmq: declare exchange: %w", err)
	}
	if _, err := ch.QueueDeclare(*queue, true, false, false, false, nil); err != nil {
		return fmt.Errorf("rabbitmq: declare queue: %w", err)
	}
	if err := ch.QueueBind(*queue, *queue, *queue, false, nil); err != nil {
		return fmt.Errorf("rabbitmq: bind queue: %w", err)
	}
	// Per consumer, as the worker sets it.
	if err := ch.Qos(*concurrency**multiplier, 0, false); err != nil {
		return fmt.Errorf("rabbitmq: qos: %w", err)
	}
	msgs, err := ch.ConsumeWithContext(ctx, *queue, "", false, false, false, false, nil)
	if err != nil {
		return fmt.Errorf("rabbitmq: consume: %w", err)
	}

	rc, err := redigo.DialURL(*backendURL)
	if err != nil {
		return fmt.Errorf("redis: %w", err)
	}
	defer rc.Close()
	if err := loop(msgs, rc, *concurrency, *expires); err != nil {
		return err
	}
	if ctx.Err() == nil {
		// The deliveries stopped without a signal: the connection or the
		// channel is gone.
		select {
		case reason := <-closed:
			return fmt.Errorf("rabbitmq: connection closed: %v", reason)
		default:
			return fmt.Errorf("rabbitmq: the consumer was cancelled or its channel closed")
		}
	}
	return nil
}

// loop stores a SUCCESS for each message and acknowledges it, until the
// delivery channel closes. It takes the messages that have arrived, at
// most limit, and writes their Redis commands in one flush without waiting
// for the replies; a second goroutine reads the replies of each batch in
// order and then acknowledges the batch with one multiple ack, so a result
// is always stored before its message is acknowledged, as in the worker,
// and the loop is never held up by a round trip.
func loop(msgs <-chan amqp.Delivery, rc redigo.Conn, limit, expires int) error {
	type sent struct {
		last  amqp.Delivery // the batch's last message
		count int
	}
	inflight := make(chan sent, 1024)
	settled := make(chan error, 1)
	go func() {
		for b := range inflight {
			for range 2 * b.count {
				if _, err := rc.Receive(); err != nil {
					settled <- fmt.Errorf("redis: store: %w", err)
					return
				}
			}
			// Delivery tags grow in delivery order on the one channel.
			if err := b.last.Ack(true); err != nil {
				settled <- fmt.Errorf("rabbitmq: ack: %w", err)
				return
			}
		}
		settled <- nil
	}()
	err := send(msgs, rc, limit, expires, func(last amqp.Delivery, count int) { inflight <- sent{last, count} })
	close(inflight)
	if err2 := <-settled; err == nil {
		err = err2
	}
	return err
}

// send writes the commands of each batch of messages and hands the batch
// on.
func send(msgs <-chan amqp.Delivery, rc redigo.Conn, limit, expires int, sent func(last amqp.Delivery, count int)) error {
	for {
		d, ok := <-msgs
		if !ok {
			return nil
		}
		count := 0
		for {
			id, _ := d.Headers["id"].(string)
			if id == "" {
				return fmt.Errorf("message %d has no id header: only protocol 2 messages are handled", d.DeliveryTag)
			}
			meta, err := protocol.ResultMeta{TaskID: id, Status: protocol.StateSuccess, Children: []any{}, DateDone: time.Now().UTC()}.JSON()
			if err != nil {
				return err
			}
			key := "celery-task-meta-" + id
			rc.Send("SETEX", key, expires, meta)
			rc.Send("PUBLISH", key, meta)
			count++
			if count == limit {
				break
			}
			var next amqp.Delivery
			select {
			case next, ok = <-msgs:
			default:
				ok = false
			}
			if !ok {
				break
			}
			d = next
		}
		if err := rc.Flush(); err != nil {
			return fmt.Errorf("redis: store: %w", err)
		}
		sent(d, count)
	}
}
