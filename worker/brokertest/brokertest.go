// Package brokertest is the test suite every worker.Broker adapter runs, so
// that the Server can rely on the same acknowledgement semantics whatever
// the broker: a published Envelope comes back intact, Ack removes a
// message, Reject requeues or drops it, a consumer that goes away without
// settling gives its messages back, the prefetch count bounds unsettled
// deliveries, and cancelling the consumer stops deliveries without
// invalidating the ones already received.
//
// An adapter's test calls RunBrokerSuite with a function that returns a
// broker for a (sub)test; see the worker/memory and worker/rabbitmq tests.
package brokertest

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"reflect"
	"testing"
	"time"

	"github.com/vhg/vhg-worker/protocol"
	"github.com/vhg/vhg-worker/worker"
)

// QueueDeleter is implemented by brokers whose queues outlive a test (a
// real RabbitMQ). The suite deletes the queues it used at the end of each
// test.
type QueueDeleter interface {
	DeleteQueue(name string) error
}

// timeout bounds every wait for a delivery that must come.
const timeout = 15 * time.Second

// quiet is how long the suite watches for a delivery that must not come. A
// slow machine can only make such a check pass wrongly, never fail.
const quiet = 300 * time.Millisecond

// RunBrokerSuite runs the shared broker tests as subtests of t.
//
// newBroker returns a broker for the test it is given. It may be called
// more than once for one test: brokers returned for the same test must
// share their queues, as connections to one RabbitMQ server do. If the
// broker has a Close method (io.Closer), closing it must give its unsettled
// deliveries back to the queue, as a lost AMQP connection does; brokers
// without one skip that test. Queue names are unique per test; brokers that
// implement QueueDeleter get them deleted at cleanup.
func RunBrokerSuite(t *testing.T, newBroker func(t *testing.T) worker.Broker) {
	t.Helper()
	tests := []struct {
		name string
		run  func(t *testing.T, s *suite)
	}{
		{"RoundTripKeepsEveryField", testRoundTrip},
		{"AckRemoves", testAckRemoves},
		{"RejectRequeueRedelivers", testRejectRequeue},
		{"RejectWithoutRequeueDrops", testRejectDrop},
		{"ConsumerGoneRedelivers", testConsumerGone},
		{"PrefetchBound", testPrefetch},
		{"CancelStopsDeliveries", testCancel},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.run(t, &suite{newBroker: newBroker, queue: uniqueQueue(t)})
		})
	}
}

// suite holds what one test needs.
type suite struct {
	newBroker func(t *testing.T) worker.Broker
	queue     string
}

// broker returns a broker and arranges for the test queue to be deleted.
func (s *suite) broker(t *testing.T) worker.Broker {
	t.Helper()
	b := s.newBroker(t)
	if d, ok := b.(QueueDeleter); ok {
		t.Cleanup(func() {
			if err := d.DeleteQueue(s.queue); err != nil {
				t.Errorf("delete queue %s: %v", s.queue, err)
			}
		})
	}
	return b
}

func uniqueQueue(t *testing.T) string {
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("test-brokertest-%x", b)
}

// consume starts consuming the test queue; the consumer stops at cleanup.
func (s *suite) consume(t *testing.T, b worker.Broker, prefetch int) (<-chan worker.Delivery, context.CancelFunc) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	ch, err := b.Consume(ctx, []string{s.queue}, prefetch)
	if err != nil {
		t.Fatalf("Consume: %v", err)
	}
	return ch, cancel
}

// message returns a minimal task envelope whose body names it.
func message(name string) protocol.Envelope {
	return protocol.Envelope{
		ContentType:     "application/json",
		ContentEncoding: "utf-8",
		Headers:         map[string]any{"task": "brokertest.task", "id": name},
		Body:            []byte(`[["` + name + `"], {}, {}]`),
		CorrelationID:   name,
		DeliveryMode:    2,
	}
}

func (s *suite) publish(t *testing.T, b worker.Broker, env protocol.Envelope) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := b.Publish(ctx, worker.QueueRoute(s.queue), env); err != nil {
		t.Fatalf("Publish: %v", err)
	}
}

// receive returns the next delivery, failing if none comes or the channel
// is closed.
func receive(t *testing.T, ch <-chan worker.Delivery) worker.Delivery {
	t.Helper()
	select {
	case d, ok := <-ch:
		if !ok {
			t.Fatal("the delivery channel closed while a delivery was expected")
		}
		return d
	case <-time.After(timeout):
		t.Fatal("no delivery")
		return nil
	}
}

// expectNone fails if a delivery arrives within quiet.
func expectNone(t *testing.T, ch <-chan worker.Delivery, why string) {
	t.Helper()
	select {
	case d, ok := <-ch:
		if ok {
			t.Fatalf("unexpected delivery %s: %s", d.Envelope().CorrelationID, why)
		}
	case <-time.After(quiet):
	}
}

// expectBody checks which message a delivery is.
func expectBody(t *testing.T, d worker.Delivery, name string) {
	t.Helper()
	if got := d.Envelope().CorrelationID; got != name {
		t.Fatalf("got message %q, want %q", got, name)
	}
}

func ack(t *testing.T, d worker.Delivery) {
	t.Helper()
	if err := d.Ack(); err != nil {
		t.Fatalf("Ack: %v", err)
	}
}

func testRoundTrip(t *testing.T, s *suite) {
	b := s.broker(t)
	sent := protocol.Envelope{
		ContentType:     "application/json",
		ContentEncoding: "utf-8",
		Headers: map[string]any{
			"task":      "brokertest.task",
			"id":        "round-trip",
			"shadow":    nil,
			"retries":   int32(3),
			"big":       int64(1) << 40,
			"ratio":     2.5,
			"flag":      true,
			"timelimit": []any{nil, int32(10)},
			"nested": map[string]any{
				"list":  []any{"a", int32(1), []any{false}},
				"table": map[string]any{"k": "v", "none": nil},
			},
		},
		Body:          []byte(`[[1, "two", {"three": 3.0}], {"k": null}, {"callbacks": null, "errbacks": null, "chain": null, "chord": null}]`),
		CorrelationID: "round-trip",
		ReplyTo:       "reply-queue-1",
		Priority:      5,
		DeliveryMode:  2,
		Expiration:    "60000",
	}
	s.publish(t, b, sent)
	ch, _ := s.consume(t, b, 1)
	d := receive(t, ch)
	defer ack(t, d)
	got := d.Envelope()
	if !bytes.Equal(got.Body, sent.Body) {
		t.Errorf("body %q, want %q", got.Body, sent.Body)
	}
	got.Body, sent.Body = nil, nil
	if !reflect.DeepEqual(got, sent) {
		t.Errorf("envelope changed in transit:\n got %#v\nwant %#v", got, sent)
	}
	info := d.Info()
	if info.RoutingKey != s.queue || info.Redelivered {
		t.Errorf("delivery info %+v, want routing key %s, not redelivered", info, s.queue)
	}
}

func testAckRemoves(t *testing.T, s *suite) {
	b := s.broker(t)
	s.publish(t, b, message("first"))
	ch, cancel := s.consume(t, b, 1)
	d := receive(t, ch)
	expectBody(t, d, "first")
	ack(t, d)
	cancel()
	closeBroker(t, b)

	// A new consumer (on a new connection where there is one) sees only
	// what comes after.
	b2 := s.broker(t)
	s.publish(t, b2, message("second"))
	ch2, _ := s.consume(t, b2, 1)
	d2 := receive(t, ch2)
	expectBody(t, d2, "second")
	ack(t, d2)
	expectNone(t, ch2, "the acknowledged message came back")
}

func testRejectRequeue(t *testing.T, s *suite) {
	b := s.broker(t)
	s.publish(t, b, message("again"))
	ch, _ := s.consume(t, b, 1)
	d := receive(t, ch)
	if d.Info().Redelivered {
		t.Error("first delivery marked redelivered")
	}
	if err := d.Reject(true); err != nil {
		t.Fatalf("Reject(true): %v", err)
	}
	d2 := receive(t, ch)
	expectBody(t, d2, "again")
	if !d2.Info().Redelivered {
		t.Error("requeued message not marked redelivered")
	}
	ack(t, d2)
}

func testRejectDrop(t *testing.T, s *suite) {
	b := s.broker(t)
	s.publish(t, b, message("poison"))
	s.publish(t, b, message("next"))
	// Prefetch 1: "next" is only delivered once "poison" is settled, and
	// a requeued "poison" would come back before it.
	ch, _ := s.consume(t, b, 1)
	d := receive(t, ch)
	expectBody(t, d, "poison")
	if err := d.Reject(false); err != nil {
		t.Fatalf("Reject(false): %v", err)
	}
	d2 := receive(t, ch)
	expectBody(t, d2, "next")
	ack(t, d2)
	expectNone(t, ch, "the rejected message came back")
}

// closeBroker closes b if it can be closed.
func closeBroker(t *testing.T, b worker.Broker) {
	t.Helper()
	if c, ok := b.(io.Closer); ok {
		if err := c.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
	}
}

func testConsumerGone(t *testing.T, s *suite) {
	b := s.broker(t)
	closer, ok := b.(io.Closer)
	if !ok {
		t.Skipf("%T has no Close: it has no connection to lose", b)
	}
	s.publish(t, b, message("orphan"))
	ch, _ := s.consume(t, b, 1)
	expectBody(t, receive(t, ch), "orphan")
	if err := closer.Close(); err != nil { // never acknowledged
		t.Fatalf("Close: %v", err)
	}

	b2 := s.broker(t)
	ch2, _ := s.consume(t, b2, 1)
	d := receive(t, ch2)
	expectBody(t, d, "orphan")
	if !d.Info().Redelivered {
		t.Error("message of a lost consumer not marked redelivered")
	}
	ack(t, d)
}

func testPrefetch(t *testing.T, s *suite) {
	b := s.broker(t)
	for i := range 4 {
		s.publish(t, b, message(fmt.Sprintf("m%d", i)))
	}
	ch, _ := s.consume(t, b, 2)
	d0, d1 := receive(t, ch), receive(t, ch)
	expectBody(t, d0, "m0")
	expectBody(t, d1, "m1")
	expectNone(t, ch, "a third delivery with prefetch 2 and nothing settled")
	ack(t, d0)
	d2 := receive(t, ch)
	expectBody(t, d2, "m2")
	expectNone(t, ch, "a fourth delivery with prefetch 2 and two unsettled")
	if err := d1.Reject(true); err != nil {
		t.Fatal(err)
	}
	// Settling by reject frees a slot too.
	d3 := receive(t, ch)
	ack(t, d2)
	ack(t, d3)
	d4 := receive(t, ch)
	ack(t, d4)
	got := []string{d3.Envelope().CorrelationID, d4.Envelope().CorrelationID}
	if !(got[0] == "m1" && got[1] == "m3") && !(got[0] == "m3" && got[1] == "m1") {
		t.Errorf("after the reject got %v, want m1 and m3", got)
	}
}

func testCancel(t *testing.T, s *suite) {
	b := s.broker(t)
	s.publish(t, b, message("held"))
	s.publish(t, b, message("waiting"))
	ch, cancel := s.consume(t, b, 1)
	d := receive(t, ch)
	expectBody(t, d, "held")

	cancel()
	deadline := time.After(timeout)
	for open := true; open; {
		select {
		case extra, ok := <-ch:
			if ok {
				t.Errorf("delivery %s after cancel", extra.Envelope().CorrelationID)
			}
			open = ok
		case <-deadline:
			t.Fatal("the delivery channel was not closed after cancel")
		}
	}
	// Deliveries received before the cancel can still be settled.
	ack(t, d)

	ch2, _ := s.consume(t, b, 1)
	d2 := receive(t, ch2)
	expectBody(t, d2, "waiting")
	ack(t, d2)
	expectNone(t, ch2, "the message acknowledged after cancel came back")
}
