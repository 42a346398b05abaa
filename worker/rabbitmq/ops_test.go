//go:build integration

package rabbitmq_test

import (
	"context"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/vhg/vhg-worker/protocol"
	"github.com/vhg/vhg-worker/worker"
	"github.com/vhg/vhg-worker/worker/memory"
)

// TestMailbox declares the node's mailbox the way kombu declares it (any
// difference would be a 406 from RabbitMQ), sends a ping as `celery inspect`
// does and reads the reply from the client's reply queue.
func TestMailbox(t *testing.T) {
	t.Parallel()
	b := dial(t)
	node := uniqueName(t, "node") + "@test"
	mb, err := b.OpenMailbox(node)
	if err != nil {
		t.Fatal(err)
	}
	srv := worker.NewServer(worker.Config{NodeName: node}, memory.NewBroker(), nil, worker.NewServeMux(), nil)
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- mb.Serve(ctx, worker.NewControl(srv, worker.ControlConfig{})) }()

	admin := adminChannel(t)
	if err := admin.ExchangeDeclare(protocol.ControlExchange, amqp.ExchangeFanout, false, false, false, false, nil); err != nil {
		t.Fatalf("declare %s as kombu does: %v", protocol.ControlExchange, err)
	}
	if _, err := admin.QueueDeclare(protocol.ControlQueue(node), false, true, false, false,
		amqp.Table{"x-expires": int32(10000), "x-message-ttl": int32(300000)}); err != nil {
		t.Fatalf("declare the mailbox as kombu does: %v", err)
	}
	oid := uniqueName(t, "oid")
	reply := oid + ".reply.celery.pidbox"
	if err := admin.ExchangeDeclare(protocol.ControlReplyExchange, amqp.ExchangeDirect, false, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.QueueDeclare(reply, false, true, false, false, amqp.Table{"x-expires": int32(10000)}); err != nil {
		t.Fatal(err)
	}
	if err := admin.QueueBind(reply, oid, protocol.ControlReplyExchange, false, nil); err != nil {
		t.Fatal(err)
	}
	body, err := protocol.ControlRequest{Method: "ping", Destination: []string{node}, Ticket: "ticket-1",
		ReplyTo: &protocol.ControlReplyTo{Exchange: protocol.ControlReplyExchange, RoutingKey: oid}}.JSON()
	if err != nil {
		t.Fatal(err)
	}
	err = admin.PublishWithContext(testContext(t), protocol.ControlExchange, "", false, false, amqp.Publishing{
		Headers:     amqp.Table{"clock": int64(7), "expires": float64(time.Now().Add(time.Minute).UnixNano()) / 1e9},
		ContentType: "application/json", ContentEncoding: "utf-8", Body: body,
	})
	if err != nil {
		t.Fatal(err)
	}
	m := getOne(t, admin, reply)
	if string(m.Body) != `{"`+node+`": {"ok": "pong"}}` || m.Headers["ticket"] != "ticket-1" ||
		m.DeliveryMode != amqp.Transient || m.ContentType != "application/json" {
		t.Errorf("reply %s, headers %v, delivery mode %d, content type %q", m.Body, m.Headers, m.DeliveryMode, m.ContentType)
	}
	if clock, _ := m.Headers["clock"].(int64); clock <= 7 {
		t.Errorf("reply clock %v, want past the request's 7", m.Headers["clock"])
	}
	cancel()
	if err := <-served; err != nil {
		t.Errorf("Serve returned %v after its ctx was done", err)
	}
}

// TestPublishEvent reads an event from the celeryev exchange.
func TestPublishEvent(t *testing.T) {
	t.Parallel()
	b := dial(t)
	admin := adminChannel(t)
	if err := admin.ExchangeDeclare(protocol.EventExchange, amqp.ExchangeTopic, true, false, false, false, nil); err != nil {
		t.Fatalf("declare celeryev as Celery does: %v", err)
	}
	q, err := admin.QueueDeclare("", false, true, true, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	node := uniqueName(t, "node") + "@test"
	if err := admin.QueueBind(q.Name, "task.#", protocol.EventExchange, false, nil); err != nil {
		t.Fatal(err)
	}
	e := protocol.TaskStartedEvent("id-1")
	e.Hostname, e.Clock, e.Timestamp = node, 3, time.Now()
	if err := b.PublishEvent(testContext(t), e); err != nil {
		t.Fatal(err)
	}
	want, _ := e.JSON()
	for {
		m := getOne(t, admin, q.Name)
		if m.Headers["hostname"] != node {
			continue // another test's event
		}
		if string(m.Body) != string(want) || m.RoutingKey != "task.started" || m.DeliveryMode != amqp.Transient ||
			m.ContentType != "application/json" || m.ContentEncoding != "utf-8" {
			t.Errorf("event %s, routing key %q, delivery mode %d, content %q/%q",
				m.Body, m.RoutingKey, m.DeliveryMode, m.ContentType, m.ContentEncoding)
		}
		return
	}
}

func TestBrokerInfo(t *testing.T) {
	t.Parallel()
	info := dial(t).Info()
	u, err := amqp.ParseURI(amqpURL())
	if err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]any{"hostname": u.Host, "port": u.Port, "userid": u.Username, "virtual_host": u.Vhost, "transport": "amqp", "ssl": false} {
		if info[k] != want {
			t.Errorf("Info()[%q] = %v, want %v", k, info[k], want)
		}
	}
	if _, ok := info["password"]; ok {
		t.Error("Info() gives the password")
	}
}
