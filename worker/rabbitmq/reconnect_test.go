//go:build integration

package rabbitmq_test

import (
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vhg/vhg-worker/protocol"
	"github.com/vhg/vhg-worker/worker"
	"github.com/vhg/vhg-worker/worker/rabbitmq"
)

// closeConnection has RabbitMQ close the connection with the given client
// name, as a broker restart or a network cut would.
func closeConnection(t *testing.T, name string) {
	t.Helper()
	out, err := exec.Command("rabbitmqctl", "-q", "list_connections", "pid", "client_properties").CombinedOutput()
	if err != nil {
		t.Fatalf("rabbitmqctl list_connections: %v %s (run make setup)", err, out)
	}
	for _, line := range strings.Split(string(out), "\n") {
		if !strings.Contains(line, name) {
			continue
		}
		pid, _, _ := strings.Cut(line, "\t")
		if out, err := exec.Command("rabbitmqctl", "close_connection", pid, "test: connection cut").CombinedOutput(); err != nil {
			t.Fatalf("rabbitmqctl close_connection: %v %s", err, out)
		}
		return
	}
	t.Fatalf("no connection named %q:\n%s", name, out)
}

// TestReconnect cuts the connection under a consumer: the Broker reports
// the loss, reconnects, consumes again and publishes again, and a delivery
// from before the loss reports itself stale instead of acknowledging.
func TestReconnect(t *testing.T) {
	t.Parallel()
	var lost, back atomic.Int32
	name := uniqueName(t, "reconnect")
	b, err := rabbitmq.Dial(rabbitmq.Config{URL: amqpURL(), ConnectionName: name, MaxBackoff: time.Second,
		OnConnectionLost: func(error) { lost.Add(1) }, OnReconnect: func() { back.Add(1) }})
	if err != nil {
		unreachable(t, err)
	}
	t.Cleanup(func() { b.Close() })
	queue := uniqueName(t, "q")
	deleteQueue(t, queue)
	ctx := testContext(t)
	deliveries, err := b.Consume(ctx, []string{queue}, 4)
	if err != nil {
		t.Fatal(err)
	}
	publish := func(id string) {
		t.Helper()
		env, _ := protocol.Encode(&protocol.Message{ID: id, Task: "t"})
		if err := b.Publish(ctx, worker.QueueRoute(queue), env); err != nil {
			t.Fatalf("publish %s: %v", id, err)
		}
	}
	receive := func() worker.Delivery {
		t.Helper()
		select {
		case d, ok := <-deliveries:
			if !ok {
				t.Fatal("delivery channel closed")
			}
			return d
		case <-ctx.Done():
			t.Fatal("no delivery")
		}
		return nil
	}
	publish("before")
	old := receive()
	closeConnection(t, name)
	publish("after") // waits for the new connection
	for {
		d := receive()
		if d.Envelope().Headers["id"] == "after" {
			if err := d.Ack(); err != nil {
				t.Fatalf("ack on the new connection: %v", err)
			}
			break
		}
		d.Ack() // "before", redelivered
	}
	if sd, ok := old.(worker.StaleDelivery); !ok || !sd.Stale() {
		t.Error("a delivery from the lost connection is not stale")
	}
	if err := old.Ack(); err == nil {
		t.Error("ack of a delivery from the lost connection succeeded")
	}
	if lost.Load() != 1 || back.Load() != 1 {
		t.Errorf("hooks: lost %d, reconnected %d; want 1 and 1", lost.Load(), back.Load())
	}
}

// TestHeartbeatsWhileBusy holds a delivery for more than two heartbeat
// intervals (1 s) before acknowledging it: heartbeats go on their own
// goroutine, so the connection survives and the ack succeeds.
func TestHeartbeatsWhileBusy(t *testing.T) {
	t.Parallel()
	var lost atomic.Int32
	b, err := rabbitmq.Dial(rabbitmq.Config{URL: amqpURL(), Heartbeat: time.Second, OnConnectionLost: func(error) { lost.Add(1) }})
	if err != nil {
		unreachable(t, err)
	}
	t.Cleanup(func() { b.Close() })
	queue := uniqueName(t, "hb")
	deleteQueue(t, queue)
	ctx := testContext(t)
	deliveries, err := b.Consume(ctx, []string{queue}, 1)
	if err != nil {
		t.Fatal(err)
	}
	env, _ := protocol.Encode(&protocol.Message{ID: "hb", Task: "t"})
	if err := b.Publish(ctx, worker.QueueRoute(queue), env); err != nil {
		t.Fatal(err)
	}
	d := <-deliveries
	deadline := time.Now().Add(3500 * time.Millisecond)
	for time.Now().Before(deadline) {
		// A busy task: no I/O, no sleeping, on every CPU the test has.
	}
	if err := d.Ack(); err != nil {
		t.Fatalf("ack after 3.5 s with a 1 s heartbeat: %v", err)
	}
	if lost.Load() != 0 || !b.Connected() {
		t.Errorf("the connection was lost while the task was busy (%d losses)", lost.Load())
	}
}
