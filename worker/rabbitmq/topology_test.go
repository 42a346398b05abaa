//go:build integration

package rabbitmq_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/sirupsen/logrus"
	"github.com/vhg/vhg-worker/protocol"
	"github.com/vhg/vhg-worker/worker"
	"github.com/vhg/vhg-worker/worker/brokertest"
	"github.com/vhg/vhg-worker/worker/rabbitmq"
)

// TestDelayRoutingKey checks the key against kombu's calculate_routing_key:
// '.'.join(f'{countdown:028b}') + '.' + routing_key, with Celery's
// int(countdown). The first four are the samples of the 5.6.3 capture
// (native_delayed_delivery_topology.json), the others were worked out by
// hand from that expression.
func TestDelayRoutingKey(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		delay time.Duration
		key   string
		want  string
	}{
		{time.Second, "celery", "0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.1.celery"},
		{10 * time.Second, "celery", "0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.1.0.1.0.celery"},
		{time.Hour, "celery", "0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.1.1.1.0.0.0.0.1.0.0.0.0.celery"},
		{268435455 * time.Second, "celery", "1.1.1.1.1.1.1.1.1.1.1.1.1.1.1.1.1.1.1.1.1.1.1.1.1.1.1.1.celery"},
		// int(5.9) == 5: cut, not rounded.
		{5900 * time.Millisecond, "video", "0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.1.0.1.video"},
		// 2^27: only the first digit.
		{134217728 * time.Second, "q.a", "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.q.a"},
		// 86400 = 0b10101000110000000
		{24 * time.Hour, "celery", "0.0.0.0.0.0.0.0.0.0.0.1.0.1.0.1.0.0.0.1.1.0.0.0.0.0.0.0.celery"},
		// Past 28 bits: capped at the longest delay the levels hold.
		{300000000 * time.Second, "celery", "1.1.1.1.1.1.1.1.1.1.1.1.1.1.1.1.1.1.1.1.1.1.1.1.1.1.1.1.celery"},
	} {
		got, ok := rabbitmq.DelayRoutingKey(tt.delay, tt.key)
		if !ok || got != tt.want {
			t.Errorf("DelayRoutingKey(%v, %q) = %q, %v; want %q", tt.delay, tt.key, got, ok, tt.want)
		}
	}
	for _, d := range []time.Duration{0, 999 * time.Millisecond, -time.Hour} {
		if got, ok := rabbitmq.DelayRoutingKey(d, "celery"); ok {
			t.Errorf("DelayRoutingKey(%v) = %q, want none (kombu refuses a countdown under 1)", d, got)
		}
	}
}

// dialTyped connects a Broker declaring queues of the given types.
func dialTyped(t *testing.T, queueType, exchangeType string) *rabbitmq.Broker {
	t.Helper()
	log := logrus.New()
	log.SetOutput(logWriter{t})
	b, err := rabbitmq.Dial(rabbitmq.Config{URL: amqpURL(), ConnectionName: "vhg-worker-test " + t.Name(),
		QueueType: queueType, ExchangeType: exchangeType, Log: log})
	if err != nil {
		unreachable(t, err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b
}

// deleteTaskQueue deletes at cleanup a task queue, its guard queue and its
// exchange (its bindings to the shared delayed delivery exchange go with
// them; the shared topology itself stays).
func deleteTaskQueue(t *testing.T, name string) {
	t.Helper()
	t.Cleanup(func() {
		ch := adminChannel(t)
		for _, q := range []string{name, rabbitmq.GuardQueue(name)} {
			if _, err := ch.QueueDelete(q, false, false, false); err != nil {
				t.Errorf("delete queue %s: %v", q, err)
			}
		}
		if err := ch.ExchangeDelete(name, false, false); err != nil {
			t.Errorf("delete exchange %s: %v", name, err)
		}
	})
}

// declareQuorum declares queue as a deployment (or a Celery 5.6 worker with
// task_default_queue_type=quorum) does.
func declareQuorum(t *testing.T, queue, exchangeType string) {
	t.Helper()
	ch := adminChannel(t)
	if err := ch.ExchangeDeclare(queue, exchangeType, true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := ch.QueueDeclare(queue, true, false, false, false, amqp.Table{"x-queue-type": "quorum"}); err != nil {
		t.Fatal(err)
	}
	if err := ch.QueueBind(queue, queue, queue, false, nil); err != nil {
		t.Fatal(err)
	}
}

// TestQuorumQueue: a quorum queue declared by the deployment is refused to
// a worker declaring classic queues (the reported failure), and consumed
// by one started with QueueType quorum. Consuming a quorum queue also
// proves that no global QoS was sent: RabbitMQ refuses basic.consume on a
// quorum queue after a global basic.qos.
func TestQuorumQueue(t *testing.T) {
	t.Parallel()
	queue := uniqueName(t, "quorum")
	deleteTaskQueue(t, queue)
	declareQuorum(t, queue, amqp.ExchangeDirect)

	ctx := testContext(t)
	classic := dialTyped(t, rabbitmq.QueueClassic, "")
	_, err := classic.Consume(ctx, []string{queue}, 1)
	var aerr *amqp.Error
	if !errors.As(err, &aerr) || aerr.Code != amqp.PreconditionFailed || !strings.Contains(aerr.Reason, "x-queue-type") {
		t.Errorf("classic worker on a quorum queue: err = %v, want PRECONDITION_FAILED on x-queue-type", err)
	}

	b := dialTyped(t, rabbitmq.QueueQuorum, "")
	deliveries, err := b.Consume(ctx, []string{queue}, 1)
	if err != nil {
		t.Fatalf("Consume with QueueType quorum: %v", err)
	}
	if err := b.Publish(ctx, worker.QueueRoute(queue), envelope("q1", nil)); err != nil {
		t.Fatal(err)
	}
	d := next(t, ctx, deliveries)
	if id := d.Envelope().Headers["id"]; id != "q1" {
		t.Errorf("got %v, want q1", id)
	}
	if err := d.Ack(); err != nil {
		t.Fatal(err)
	}
}

// TestBrokerSuiteQuorum runs the shared broker suite on quorum queues.
func TestBrokerSuiteQuorum(t *testing.T) {
	t.Parallel()
	brokertest.RunBrokerSuite(t, func(t *testing.T) worker.Broker {
		return suiteBroker{Broker: dialTyped(t, rabbitmq.QueueQuorum, rabbitmq.ExchangeTopic), t: t}
	})
}

func envelope(id string, headers map[string]any) protocol.Envelope {
	h := map[string]any{"task": "test.task", "id": id, "lang": "py"}
	for k, v := range headers {
		h[k] = v
	}
	return protocol.Envelope{ContentType: "application/json", ContentEncoding: "utf-8", Headers: h,
		Body: []byte(`[[], {}, {"callbacks": null, "errbacks": null, "chain": null, "chord": null}]`), DeliveryMode: 2}
}

func next(t *testing.T, ctx context.Context, ch <-chan worker.Delivery) worker.Delivery {
	t.Helper()
	select {
	case d, ok := <-ch:
		if !ok {
			t.Fatal("delivery channel closed")
		}
		return d
	case <-ctx.Done():
		t.Fatal("no delivery before the test's deadline")
	}
	return nil
}

// TestNativeDelayedDeliveryTopology: a worker on a quorum queue with a
// topic exchange declares the 28 levels and celery_delayed_delivery as
// Celery does, binds its queue, and a countdown published as a Celery 5.6
// client publishes it (to celery_delayed_27, key = 28 digits + the queue's
// routing key) arrives, not before its delay.
func TestNativeDelayedDeliveryTopology(t *testing.T) {
	t.Parallel()
	queue := uniqueName(t, "ndd")
	deleteTaskQueue(t, queue)
	declareQuorum(t, queue, amqp.ExchangeTopic)
	ctx := testContext(t)
	b := dialTyped(t, rabbitmq.QueueQuorum, rabbitmq.ExchangeTopic)
	deliveries, err := b.Consume(ctx, []string{queue}, 1)
	if err != nil {
		t.Fatal(err)
	}

	// The levels exist with Celery's arguments: declaring them again as
	// kombu does is accepted (RabbitMQ refuses inequivalent arguments).
	ch := adminChannel(t)
	for level := 27; level >= 0; level-- {
		name := rabbitmq.DelayedLevel(level)
		dlx := rabbitmq.DelayedDeliveryExchange
		if level > 0 {
			dlx = rabbitmq.DelayedLevel(level - 1)
		}
		args := amqp.Table{"x-queue-type": "quorum", "x-overflow": "reject-publish",
			"x-message-ttl": int64(1<<level) * 1000, "x-dead-letter-exchange": dlx,
			"x-dead-letter-strategy": "at-least-once"}
		if _, err := ch.QueueDeclare(name, true, false, false, false, args); err != nil {
			t.Fatalf("declare %s as kombu does: %v", name, err)
		}
		if err := ch.ExchangeDeclarePassive(name, amqp.ExchangeTopic, true, false, false, false, nil); err != nil {
			t.Fatalf("exchange %s: %v", name, err)
		}
	}
	if err := ch.ExchangeDeclarePassive(rabbitmq.DelayedDeliveryExchange, amqp.ExchangeTopic, true, false, false, false, nil); err != nil {
		t.Fatalf("exchange %s: %v", rabbitmq.DelayedDeliveryExchange, err)
	}

	// 3 s = 0b11: levels 1 and 0.
	key := strings.Repeat("0.", 26) + "1.1." + queue
	sent := time.Now()
	eta := sent.Add(3 * time.Second).UTC().Format("2006-01-02T15:04:05.000000+00:00")
	msg := amqp.Publishing{ContentType: "application/json", ContentEncoding: "utf-8", DeliveryMode: 2,
		Headers: amqp.Table{"task": "test.task", "id": "countdown", "lang": "py", "eta": eta},
		Body:    []byte(`[[], {}, {}]`)}
	if err := ch.PublishWithContext(ctx, rabbitmq.DelayedEntry, key, false, false, msg); err != nil {
		t.Fatal(err)
	}
	d := next(t, ctx, deliveries)
	if waited := time.Since(sent); waited < 2900*time.Millisecond {
		t.Errorf("delayed message arrived after %v, want 3 s", waited)
	}
	if id := d.Envelope().Headers["id"]; id != "countdown" {
		t.Errorf("got %v, want countdown", id)
	}
	for k := range d.Envelope().Headers {
		if strings.HasPrefix(k, "x-") {
			t.Errorf("broker header %s reaches the worker", k)
		}
	}
	if info := d.Info(); info.Exchange != "" || info.RoutingKey != queue {
		t.Errorf("route of a delayed message = %q/%q, want the queue through the default exchange", info.Exchange, info.RoutingKey)
	}
	if err := d.Ack(); err != nil {
		t.Fatal(err)
	}
}

// TestPublishCountdownGoesThroughDelay: a message this worker publishes
// with an ETA goes through native delayed delivery, on a quorum topic
// queue (as a 5.6 client sends it) and on a classic direct queue (through
// this worker's own binding), and arrives not before its ETA.
func TestPublishCountdownGoesThroughDelay(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct{ queueType, exchangeType string }{
		{rabbitmq.QueueQuorum, rabbitmq.ExchangeTopic},
		{rabbitmq.QueueClassic, rabbitmq.ExchangeDirect},
	} {
		t.Run(tt.queueType+"-"+tt.exchangeType, func(t *testing.T) {
			t.Parallel()
			queue := uniqueName(t, "pubdelay")
			deleteTaskQueue(t, queue)
			ctx := testContext(t)
			b := dialTyped(t, tt.queueType, tt.exchangeType)
			deliveries, err := b.Consume(ctx, []string{queue}, 1)
			if err != nil {
				t.Fatal(err)
			}
			eta := time.Now().Add(2 * time.Second).UTC()
			env := envelope("later", map[string]any{"eta": eta.Format("2006-01-02T15:04:05.000000+00:00")})
			if err := b.Publish(ctx, worker.QueueRoute(queue), env); err != nil {
				t.Fatal(err)
			}
			d := next(t, ctx, deliveries)
			// Cut to whole seconds, as Celery does: up to a second early.
			if early := time.Until(eta); early > time.Second {
				t.Errorf("arrived %v before its ETA", early)
			}
			if d.Info().Exchange != "" {
				t.Errorf("route %q/%q", d.Info().Exchange, d.Info().RoutingKey)
			}
			if err := d.Ack(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestQuorumRedeliveryCount: on a quorum queue the count is the broker's
// x-delivery-count: a requeue by the worker (Reject with requeue) does not
// count, a consumer lost with the message does.
func TestQuorumRedeliveryCount(t *testing.T) {
	t.Parallel()
	queue := uniqueName(t, "qcount")
	deleteTaskQueue(t, queue)
	ctx := testContext(t)
	b1 := dialTyped(t, rabbitmq.QueueQuorum, "")
	c1, cancel1 := context.WithCancel(ctx)
	deliveries, err := b1.Consume(c1, []string{queue}, 1)
	if err != nil {
		t.Fatal(err)
	}
	if err := b1.Publish(ctx, worker.QueueRoute(queue), envelope("count", nil)); err != nil {
		t.Fatal(err)
	}
	d := next(t, ctx, deliveries)
	if n := d.Info().Redeliveries; n != 0 {
		t.Errorf("first delivery: Redeliveries = %d", n)
	}
	for i := range 3 {
		if err := d.Reject(true); err != nil {
			t.Fatal(err)
		}
		d = next(t, ctx, deliveries)
		if info := d.Info(); info.Redeliveries != 0 || !info.Redelivered {
			t.Errorf("after requeue %d: Redeliveries = %d, Redelivered = %v; want 0, true", i+1, info.Redeliveries, info.Redelivered)
		}
	}
	// Lost with its consumer: a real return.
	cancel1()
	if err := b1.Close(); err != nil {
		t.Fatal(err)
	}
	b2 := dialTyped(t, rabbitmq.QueueQuorum, "")
	deliveries2, err := b2.Consume(ctx, []string{queue}, 1)
	if err != nil {
		t.Fatal(err)
	}
	d = next(t, ctx, deliveries2)
	if n := d.Info().Redeliveries; n != 1 {
		t.Errorf("after a lost consumer: Redeliveries = %d, want 1", n)
	}
	// A requeue keeps the count of real returns.
	if err := d.Reject(true); err != nil {
		t.Fatal(err)
	}
	d = next(t, ctx, deliveries2)
	if n := d.Info().Redeliveries; n != 1 {
		t.Errorf("after a lost consumer and a requeue: Redeliveries = %d, want 1", n)
	}
	if err := d.Ack(); err != nil {
		t.Fatal(err)
	}
}

// logWriter sends the broker's log to the test log.
type logWriter struct{ t *testing.T }

func (w logWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// TestReturnCounts: a message given back as a failed delivery
// (worker.ReturningDelivery, e.g. its outcome could not be stored) counts
// as a redelivery, on both queue types, unlike a requeue.
func TestReturnCounts(t *testing.T) {
	t.Parallel()
	for _, queueType := range []string{rabbitmq.QueueClassic, rabbitmq.QueueQuorum} {
		t.Run(queueType, func(t *testing.T) {
			t.Parallel()
			queue := uniqueName(t, "return")
			deleteTaskQueue(t, queue)
			ctx := testContext(t)
			b := dialTyped(t, queueType, "")
			deliveries, err := b.Consume(ctx, []string{queue}, 1)
			if err != nil {
				t.Fatal(err)
			}
			if err := b.Publish(ctx, worker.QueueRoute(queue), envelope("returned", nil)); err != nil {
				t.Fatal(err)
			}
			d := next(t, ctx, deliveries)
			for want := 1; want <= 2; want++ {
				if err := d.(worker.ReturningDelivery).Return(); err != nil {
					t.Fatal(err)
				}
				d = next(t, ctx, deliveries)
				if info := d.Info(); info.Redeliveries != want || !info.Redelivered {
					t.Errorf("after %d returns: Redeliveries %d, Redelivered %v", want, info.Redeliveries, info.Redelivered)
				}
			}
			if err := d.Ack(); err != nil {
				t.Fatal(err)
			}
		})
	}
}
