package worker_test

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/vhg/vhg-worker/protocol"
	"github.com/vhg/vhg-worker/worker"
	"github.com/vhg/vhg-worker/worker/memory"
)

// scriptedBroker hands the Server exactly the deliveries a test pushes, so
// that a test can play a lost connection: a delivery turning stale, then
// the broker's redelivery of the same message.
type scriptedBroker struct {
	*memory.Broker // Publish
	in             chan worker.Delivery
}

// Consume hands out the pushed deliveries; the Server stops reading them
// when its ctx is done.
func (b *scriptedBroker) Consume(context.Context, []string, int) (<-chan worker.Delivery, error) {
	return b.in, nil
}

// scriptedDelivery records its settlement as "<name> ack" or "<name>
// reject"; once stale, its Ack fails as a delivery of a lost connection.
type scriptedDelivery struct {
	name        string
	env         protocol.Envelope
	redelivered bool
	stale       atomic.Bool
	log         *eventLog
	id          string
}

func (d *scriptedDelivery) Envelope() protocol.Envelope { return d.env }
func (d *scriptedDelivery) Info() worker.DeliveryInfo {
	return worker.DeliveryInfo{RoutingKey: "celery", Redelivered: d.redelivered}
}
func (d *scriptedDelivery) Stale() bool { return d.stale.Load() }
func (d *scriptedDelivery) Ack() error {
	d.log.add(d.id, d.name+" ack")
	if d.Stale() {
		return errors.New("connection lost")
	}
	return nil
}
func (d *scriptedDelivery) Reject(requeue bool) error {
	d.log.add(d.id, fmt.Sprintf("%s reject requeue=%t", d.name, requeue))
	return nil
}

// TestAckLostWithTheConnection: an acks_late task finishes after its
// connection is lost, so its ack fails; the broker's redelivery of that
// message is acknowledged without running the task again, while a retry of
// the same id (one more retry) still runs.
func TestAckLostWithTheConnection(t *testing.T) {
	t.Parallel()
	events := newEventLog()
	var runs atomic.Int32
	release := make(chan struct{})
	mux := worker.NewServeMux()
	mux.HandleFunc("encode", func(ctx context.Context, task *worker.Task) (any, error) {
		events.add(task.Msg.ID, fmt.Sprintf("run retries=%d", task.Msg.Retries))
		runs.Add(1)
		if task.Msg.Retries == 0 {
			<-release
		}
		return "done", nil
	}, worker.AcksLate())
	broker := &scriptedBroker{Broker: memory.NewBroker(), in: make(chan worker.Delivery)}
	backend := memory.NewBackend()
	srv := worker.NewServer(worker.Config{Concurrency: 1, NodeName: "w@test"}, broker, backend, mux, discardLogger())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})

	msg := newMsg("encode")
	env, err := protocol.Encode(msg)
	if err != nil {
		t.Fatal(err)
	}
	deliver := func(name string, env protocol.Envelope, redelivered bool) *scriptedDelivery {
		d := &scriptedDelivery{name: name, env: env, redelivered: redelivered, log: events, id: msg.ID}
		broker.in <- d
		return d
	}

	first := deliver("first", env, false)
	events.waitFor(t, msg.ID, "run retries=0")
	first.stale.Store(true) // the connection is lost while the task runs
	close(release)
	events.waitFor(t, msg.ID, "first ack")

	deliver("redelivered", env, true)
	events.waitFor(t, msg.ID, "redelivered ack")

	retry := *msg
	retry.Retries = 1
	retryEnv, err := protocol.Encode(&retry)
	if err != nil {
		t.Fatal(err)
	}
	deliver("retry", retryEnv, true)
	events.waitFor(t, msg.ID, "retry ack")

	want := []string{"run retries=0", "first ack", "redelivered ack", "run retries=1", "retry ack"}
	if got := events.of(msg.ID); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("events = %q, want %q", got, want)
	}
	if runs.Load() != 2 {
		t.Errorf("the task ran %d times, want 2 (the first delivery and the retry)", runs.Load())
	}
}

// TestAckWrittenThenLost: an early-ack task's ack is written (Ack returns
// nil) just before the connection goes away, and the broker never
// processed it: the message comes back redelivered while the delivery it
// was acknowledged on is stale. The worker acknowledges it without running
// the task again. A message acknowledged on a connection that is still
// open is not mistaken for one: it runs.
func TestAckWrittenThenLost(t *testing.T) {
	t.Parallel()
	events := newEventLog()
	var runs atomic.Int32
	mux := worker.NewServeMux()
	mux.HandleFunc("noop", func(ctx context.Context, task *worker.Task) (any, error) {
		events.add(task.Msg.ID, "run")
		runs.Add(1)
		return nil, nil
	})
	broker := &scriptedBroker{Broker: memory.NewBroker(), in: make(chan worker.Delivery)}
	srv := worker.NewServer(worker.Config{Concurrency: 1, NodeName: "w@test"}, broker, memory.NewBackend(), mux, discardLogger())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	for _, c := range []struct {
		name      string
		loseFirst bool
		want      []string
	}{
		{"ack lost", true, []string{"first ack", "run", "redelivered ack"}},
		{"connection kept", false, []string{"first ack", "run", "redelivered ack", "run"}},
	} {
		msg := newMsg("noop")
		env, err := protocol.Encode(msg)
		if err != nil {
			t.Fatal(err)
		}
		first := &scriptedDelivery{name: "first", env: env, log: events, id: msg.ID}
		broker.in <- first
		events.waitFor(t, msg.ID, "run")
		first.stale.Store(c.loseFirst)
		broker.in <- &scriptedDelivery{name: "redelivered", env: env, redelivered: true, log: events, id: msg.ID}
		events.waitUntil(t, c.name, func() bool { return len(events.of(msg.ID)) >= len(c.want) })
		if got := events.of(msg.ID); fmt.Sprint(got) != fmt.Sprint(c.want) {
			t.Errorf("%s: events = %q, want %q", c.name, got, c.want)
		}
	}
}
