//go:build integration

package rabbitmq_test

// These tests need the real RabbitMQ that `make setup` starts on
// 127.0.0.1:5672 (guest/guest); VHG_TEST_AMQP_URL points them elsewhere.
// They fail, not skip, when it cannot be reached.

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"reflect"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/vhg/vhg-worker/protocol"
	"github.com/vhg/vhg-worker/worker"
	"github.com/vhg/vhg-worker/worker/brokertest"
	"github.com/vhg/vhg-worker/worker/rabbitmq"
)

func amqpURL() string {
	if u := os.Getenv("VHG_TEST_AMQP_URL"); u != "" {
		return u
	}
	return "amqp://guest:guest@127.0.0.1:5672/"
}

func unreachable(t *testing.T, err error) {
	t.Helper()
	t.Fatalf("RabbitMQ is not reachable at %s: %v\nStart it with `make setup` (or set VHG_TEST_AMQP_URL).",
		rabbitmq.Redact(amqpURL()), err)
}

// dial connects a Broker that is closed at cleanup.
func dial(t *testing.T) *rabbitmq.Broker {
	t.Helper()
	b, err := rabbitmq.Dial(rabbitmq.Config{URL: amqpURL(), ConnectionName: "vhg-worker-test " + t.Name()})
	if err != nil {
		unreachable(t, err)
	}
	t.Cleanup(func() { _ = b.Close() }) // may already be closed by the test
	return b
}

// adminChannel opens a plain AMQP channel, independent of the code under
// test, to check what it wrote and to clean up.
func adminChannel(t *testing.T) *amqp.Channel {
	t.Helper()
	conn, err := amqp.Dial(amqpURL())
	if err != nil {
		unreachable(t, err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	ch, err := conn.Channel()
	if err != nil {
		t.Fatalf("open channel: %v", err)
	}
	return ch
}

func deleteQueue(t *testing.T, name string) {
	t.Helper()
	t.Cleanup(func() {
		ch := adminChannel(t)
		for _, q := range []string{name, rabbitmq.GuardQueue(name)} {
			if _, err := ch.QueueDelete(q, false, false, false); err != nil {
				t.Errorf("delete queue %s: %v", q, err)
			}
		}
	})
}

func uniqueName(t *testing.T, prefix string) string {
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("test-%s-%x", prefix, b)
}

// suiteBroker adds queue deletion to the Broker for the shared suite. The
// Broker declares a task queue with a direct exchange of the same name and
// its guard queue, so all three go.
type suiteBroker struct {
	*rabbitmq.Broker
	t *testing.T
}

func (b suiteBroker) DeleteQueue(name string) error {
	ch := adminChannel(b.t)
	for _, q := range []string{name, rabbitmq.GuardQueue(name)} {
		if _, err := ch.QueueDelete(q, false, false, false); err != nil {
			return err
		}
	}
	return ch.ExchangeDelete(name, false, false)
}

func TestBrokerSuite(t *testing.T) {
	t.Parallel()
	brokertest.RunBrokerSuite(t, func(t *testing.T) worker.Broker {
		return suiteBroker{Broker: dial(t), t: t}
	})
}

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// getOne waits for a message in queue (a requeue on another channel is not
// visible at once) and takes it.
func getOne(t *testing.T, ch *amqp.Channel, queue string) amqp.Delivery {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		m, ok, err := ch.Get(queue, true)
		if err != nil {
			t.Fatalf("basic.get %s: %v", queue, err)
		}
		if ok {
			return m
		}
		if time.Now().After(deadline) {
			t.Fatalf("no message in %s", queue)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// bodyKeys returns the keys of a JSON object in the order they are written.
func bodyKeys(t *testing.T, body []byte) []string {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(body))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		t.Fatalf("body %s is not a JSON object", body)
	}
	var keys []string
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, tok.(string))
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			t.Fatal(err)
		}
	}
	return keys
}

func checkBody(t *testing.T, body []byte, want map[string]any) {
	t.Helper()
	if got, keys := bodyKeys(t, body), []string{"task_id", "status", "result", "traceback", "children"}; !reflect.DeepEqual(got, keys) {
		t.Errorf("body keys %v, want %v", got, keys)
	}
	got, err := protocol.UnmarshalJSON(body)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("body %s, want %v", body, want)
	}
}

// TestAMQPBackendStatusMessage checks the legacy amqp:// status message the
// VHG status consumers read (DESIGN.md, reference §4.2), from the wire.
func TestAMQPBackendStatusMessage(t *testing.T) {
	t.Parallel()
	backend := dial(t).AMQPBackend(0)
	mainID, currentID := worker.NewTaskID(), worker.NewTaskID()
	queue := rabbitmq.ResultQueue(mainID)
	deleteQueue(t, queue)
	if len(queue) != 32 {
		t.Fatalf("queue %q, want the id without dashes", queue)
	}

	// Children as the Server stores them: [] when there are none.
	meta := protocol.ResultMeta{TaskID: mainID, Status: "PROGRESS", Result: map[string]any{"step": "transcode", "done": int64(1)}, Children: []any{}}
	if err := backend.Store(testContext(t), meta, worker.ReplyRoute{CorrelationID: currentID}); err != nil {
		t.Fatalf("Store: %v", err)
	}

	ch := adminChannel(t)
	// Declaring what a Python (or Java) consumer declares succeeds only if
	// every flag and argument is equivalent; RabbitMQ answers 406 otherwise.
	if err := ch.ExchangeDeclare(rabbitmq.ResultExchange, "direct", true, false, false, false, nil); err != nil {
		t.Fatalf("celeryresults is not a durable direct exchange: %v", err)
	}
	args := amqp.Table{"x-expires": int32(86400000)}
	if _, err := ch.QueueDeclare(queue, true, true, false, false, args); err != nil {
		t.Fatalf("result queue is not durable, auto_delete, x-expires 86400000: %v", err)
	}
	m := getOne(t, ch, queue)
	if m.Exchange != rabbitmq.ResultExchange || m.RoutingKey != queue {
		t.Errorf("published to %q/%q, want %q/%q", m.Exchange, m.RoutingKey, rabbitmq.ResultExchange, queue)
	}
	if m.DeliveryMode != amqp.Persistent || m.ContentType != "application/json" || m.ContentEncoding != "utf-8" || m.CorrelationId != currentID {
		t.Errorf("properties delivery_mode=%d content_type=%q content_encoding=%q correlation_id=%q; want 2, application/json, utf-8, %s",
			m.DeliveryMode, m.ContentType, m.ContentEncoding, m.CorrelationId, currentID)
	}
	checkBody(t, m.Body, map[string]any{
		"task_id": mainID, "status": "PROGRESS", "result": map[string]any{"step": "transcode", "done": int64(1)},
		"traceback": nil, "children": []any{},
	})

	// A declaration that differs is refused, so the check above means
	// something.
	other := adminChannel(t)
	_, err := other.QueueDeclare(queue, true, true, false, false, amqp.Table{"x-expires": int32(1000)})
	var amqpErr *amqp.Error
	if !errors.As(err, &amqpErr) || amqpErr.Code != amqp.PreconditionFailed {
		t.Errorf("declaring with another x-expires = %v, want 406 PRECONDITION_FAILED", err)
	}
}

// TestAMQPBackendResultLeavesMessages checks that reading a state does not
// take the messages from the consumers that rely on them.
func TestAMQPBackendResultLeavesMessages(t *testing.T) {
	t.Parallel()
	backend := dial(t).AMQPBackend(time.Minute)
	id := worker.NewTaskID()
	queue := rabbitmq.ResultQueue(id)
	deleteQueue(t, queue)

	ctx := testContext(t)
	if meta, err := backend.Result(ctx, id); err != nil || meta.Status != protocol.StatePending {
		t.Fatalf("Result before any state = %s, %v; want PENDING", meta.Status, err)
	}
	states := []protocol.ResultMeta{
		{TaskID: id, Status: protocol.StateStarted, Result: map[string]any{"pid": int64(1), "hostname": "h"}},
		{TaskID: id, Status: protocol.StateSuccess, Result: "done"},
	}
	for _, meta := range states {
		if err := backend.Store(ctx, meta, worker.ReplyRoute{}); err != nil {
			t.Fatalf("Store %s: %v", meta.Status, err)
		}
	}
	for range 2 { // reading twice must not lose anything either
		meta, err := backend.Result(ctx, id)
		if err != nil {
			t.Fatalf("Result: %v", err)
		}
		if meta.Status != protocol.StateSuccess || meta.Result != "done" {
			t.Errorf("Result = %s %v, want SUCCESS done", meta.Status, meta.Result)
		}
	}

	ch := adminChannel(t)
	for _, want := range states {
		m := getOne(t, ch, queue)
		got, err := protocol.ParseResultMeta(m.Body)
		if err != nil {
			t.Fatal(err)
		}
		if got.Status != want.Status {
			t.Errorf("message in queue: %s, want %s (in publish order)", got.Status, want.Status)
		}
		if m.CorrelationId != id {
			t.Errorf("correlation_id %q, want the task id when no request is known", m.CorrelationId)
		}
	}
	if _, ok, err := ch.Get(queue, true); err != nil || ok {
		t.Errorf("a third message in the queue (ok=%t, err=%v)", ok, err)
	}
}

// TestRPCBackend checks the rpc:// reply: default exchange, routing key
// reply_to, the client's correlation_id, transient, no date_done.
func TestRPCBackend(t *testing.T) {
	t.Parallel()
	backend := dial(t).RPCBackend()
	ch := adminChannel(t)
	replyTo := uniqueName(t, "reply")
	if _, err := ch.QueueDeclare(replyTo, false, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	deleteQueue(t, replyTo)

	id, correlation := worker.NewTaskID(), worker.NewTaskID()
	meta := protocol.ResultMeta{TaskID: id, Status: protocol.StateSuccess, Result: int64(4),
		DateDone: time.Now(), Children: []any{[]any{[]any{correlation, nil}, nil}}}
	ctx := testContext(t)
	if err := backend.Store(ctx, meta, worker.ReplyRoute{ReplyTo: replyTo, CorrelationID: correlation}); err != nil {
		t.Fatalf("Store: %v", err)
	}
	// No reply_to: nothing is sent, and that is not an error.
	if err := backend.Store(ctx, meta, worker.ReplyRoute{CorrelationID: correlation}); err != nil {
		t.Errorf("Store without reply_to: %v", err)
	}

	m := getOne(t, ch, replyTo)
	if m.Exchange != "" || m.RoutingKey != replyTo || m.CorrelationId != correlation {
		t.Errorf("published to %q/%q correlation_id %q; want \"\"/%s %s", m.Exchange, m.RoutingKey, m.CorrelationId, replyTo, correlation)
	}
	if m.DeliveryMode != amqp.Transient || m.ContentType != "application/json" {
		t.Errorf("delivery_mode %d content_type %q; want 1, application/json", m.DeliveryMode, m.ContentType)
	}
	checkBody(t, m.Body, map[string]any{
		"task_id": id, "status": "SUCCESS", "result": int64(4), "traceback": nil,
		"children": []any{[]any{[]any{correlation, nil}, nil}},
	})
	if _, ok, err := ch.Get(replyTo, true); err != nil || ok {
		t.Errorf("a second reply was sent (ok=%t, err=%v)", ok, err)
	}
	if backend.SupportsChords() {
		t.Error("rpc backend claims chord support")
	}
}
