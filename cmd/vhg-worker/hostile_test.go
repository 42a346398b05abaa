//go:build integration

package main

// Hostile messages through the real RabbitMQ to two Go workers on one
// queue: the report of issue 10 was one message (a task header that is not
// UTF-8) killing every Go worker in turn, the message never settled and
// redelivered to the next. Here every message must end settled, the queue
// empty (nothing ready, nothing unacknowledged), both workers alive, and a
// valid task served afterwards. Needs RabbitMQ, Redis and rabbitmqctl
// (make setup) and fails without them.

import (
	"context"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/sirupsen/logrus"
	"github.com/vhg/vhg-worker/protocol"
	"github.com/vhg/vhg-worker/worker"
	"github.com/vhg/vhg-worker/worker/metrics"
	"github.com/vhg/vhg-worker/worker/rabbitmq"
	"github.com/vhg/vhg-worker/worker/redis"
)

// hostileMessages are the messages of issue 10: headers that are not
// UTF-8, of the wrong AMQP type or oversize, and a task that panics.
func hostileMessages() []rawMessage {
	id := func() string { return worker.NewTaskID() }
	ok := []byte(`[[1, 2], {}, {"callbacks": null, "errbacks": null, "chain": null, "chord": null}]`)
	return []rawMessage{
		{name: "task header not UTF-8", headers: v2("no.such\xff\xfe", id()), body: ok, wantExc: "DecodeError"},
		{name: "id not UTF-8", headers: v2("interop.add", "", "id", "\xff\xfe-"+id()), body: ok},
		{name: "task header as an AMQP byte array", headers: v2("interop.add", id(), "task", []byte("interop.add")), body: ok, wantExc: "DecodeError"},
		{name: "id as an AMQP table", headers: v2("interop.add", "", "id", amqp.Table{"id": id()}), body: ok},
		{name: "retries as an AMQP decimal", headers: v2("interop.add", id(), "retries", amqp.Decimal{Scale: 1, Value: 15}), body: ok, wantExc: "DecodeError"},
		{name: "eta as an AMQP bool", headers: v2("interop.add", id(), "eta", true), body: ok, wantExc: "DecodeError"},
		{name: "timelimit as an AMQP timestamp", headers: v2("interop.add", id(), "timelimit", time.Now()), body: ok, wantExc: "DecodeError"},
		{name: "oversize task name", headers: v2(strings.Repeat("t", protocol.MaxNameLen+1), id()), body: ok, wantExc: "DecodeError"},
		{name: "oversize id", headers: v2("interop.add", "", "id", strings.Repeat("i", protocol.MaxIDLen+1)), body: ok},
		// Under RabbitMQ's frame_max (128 KiB), over MaxHeaderStringLen.
		{name: "oversize argsrepr (80 KiB)", headers: v2("interop.add", id(), "argsrepr", strings.Repeat("a", 80<<10)), body: ok, wantExc: "DecodeError"},
		{name: "custom header not UTF-8", headers: v2("interop.add", id(), "x-trace", []any{"ok", "\xc3"}), body: ok, wantExc: "DecodeError"},
		{name: "task that panics", headers: v2("hostile.panic", id()), body: ok, wantExc: "RuntimeError"},
		// The adapter's private lease header, forged: ignored, the message
		// runs as an ordinary one (it used to drop the connection).
		{name: "forged lease header (oversize)", headers: v2("interop.add", id(), "x-vhg-lease", strings.Repeat("l", 300)), body: ok, wantSuccess: true},
		{name: "forged lease header (not UTF-8)", headers: v2("interop.add", id(), "x-vhg-lease", "l\xff.0123456789ab"), body: ok, wantSuccess: true},
		{name: "forged lease header (wrong type)", headers: v2("interop.add", id(), "x-vhg-lease", int32(1)), body: ok, wantSuccess: true},
	}
}

// queueCounts returns the messages_ready and messages_unacknowledged of a
// queue as rabbitmqctl list_queues reports them.
func queueCounts(t *testing.T, queue string) (ready, unacked int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "rabbitmqctl", "list_queues", "-q", "name", "messages_ready", "messages_unacknowledged").CombinedOutput()
	if err != nil {
		t.Fatalf("rabbitmqctl list_queues: %v\n%s (run make setup)", err, out)
	}
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) != 3 || f[0] != queue {
			continue
		}
		ready, err1 := strconv.Atoi(f[1])
		unacked, err2 := strconv.Atoi(f[2])
		if err1 != nil || err2 != nil {
			t.Fatalf("rabbitmqctl list_queues: bad line %q", line)
		}
		return ready, unacked
	}
	t.Fatalf("rabbitmqctl list_queues does not list %s:\n%s", queue, out)
	return 0, 0
}

// TestHostileMessagesTwoWorkers publishes the hostile messages and the
// bad-input matrix to one queue consumed by two Go workers (each with the
// metrics collector attached, as the command always has it).
func TestHostileMessagesTwoWorkers(t *testing.T) {
	t.Parallel()
	requireServices(t)
	queue := uniqueQueue(t)
	backend, err := redis.New(context.Background(), redis.Config{URL: testRedisURL})
	if err != nil {
		t.Fatalf("Redis: %v (run make setup)", err)
	}
	t.Cleanup(func() { backend.Close() })

	type running struct {
		srv  *worker.Server
		done chan error
	}
	var workers []running
	for i := range 2 {
		log := logrus.New()
		log.SetLevel(logrus.ErrorLevel)
		log.SetOutput(testWriter{t})
		broker, err := rabbitmq.Dial(rabbitmq.Config{URL: testBrokerURL, Log: log})
		if err != nil {
			t.Fatalf("RabbitMQ: %v (run make setup)", err)
		}
		t.Cleanup(func() { broker.Close() })
		mux := interopMux()
		mux.HandleFunc("hostile.panic", func(context.Context, *worker.Task) (any, error) { panic("task boom") })
		srv := worker.NewServer(worker.Config{Queues: []string{queue}, Concurrency: 2, NodeName: fmt.Sprintf("hostile%d@%s", i, queue),
			ShutdownTimeout: 5 * time.Second}, broker, backend, mux, log)
		m, err := metrics.New(prometheus.NewRegistry(), srv, metrics.Config{})
		if err != nil {
			t.Fatal(err)
		}
		srv.Observe(m)
		ctx, cancel := context.WithCancel(context.Background())
		w := running{srv: srv, done: make(chan error, 1)}
		go func() { w.done <- srv.Run(ctx) }()
		t.Cleanup(func() {
			cancel()
			if err := <-w.done; err != nil {
				t.Errorf("worker %d: %v", i, err)
			}
		})
		workers = append(workers, w)
	}
	waitFor(t, "both workers consuming", func() bool { return workers[0].srv.Consuming() && workers[1].srv.Consuming() })

	conn, err := amqp.Dial(testBrokerURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	messages := append(hostileMessages(), badMessages(t)...)
	for _, m := range messages {
		ct, enc := m.contentType, m.encoding
		if ct == "" {
			ct = "application/json"
		}
		if enc == "" {
			enc = "utf-8"
		}
		if err := ch.Publish("", queue, false, false, amqp.Publishing{Headers: m.headers, ContentType: ct, ContentEncoding: enc, Body: m.body, DeliveryMode: 2}); err != nil {
			t.Fatalf("%s: publish: %v", m.name, err)
		}
	}

	for _, m := range messages {
		id, _ := m.headers["id"].(string)
		if m.wantSuccess {
			if meta := waitReady(t, backend, id); meta.Status != protocol.StateSuccess {
				t.Errorf("%s: stored %s %v, want SUCCESS", m.name, meta.Status, meta.Result)
			}
			continue
		}
		if m.wantExc == "" || id == "" {
			continue
		}
		meta := waitReady(t, backend, id)
		exc, _ := protocol.ParseExceptionInfo(meta.Result)
		if meta.Status != protocol.StateFailure || exc.Type != m.wantExc {
			t.Errorf("%s: stored %s %v, want FAILURE %s", m.name, meta.Status, meta.Result, m.wantExc)
		}
	}

	// A valid task is still served, by whichever worker.
	client := worker.NewClient(mustDial(t), worker.ClientConfig{DefaultQueue: queue})
	good, err := client.SendTask(t.Context(), "interop.add", []any{int64(2), int64(3)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if meta := waitReady(t, backend, good); meta.Status != protocol.StateSuccess || meta.Result != int64(5) {
		t.Errorf("a valid task after the hostile messages: %s %v", meta.Status, meta.Result)
	}

	// Nothing loops: every message settled, none ready, none held.
	var ready, unacked int
	waitFor(t, "0 ready and 0 unacknowledged messages in "+queue, func() bool {
		ready, unacked = queueCounts(t, queue)
		return ready == 0 && unacked == 0
	})
	for i, w := range workers {
		select {
		case err := <-w.done:
			t.Errorf("worker %d stopped: %v", i, err)
			w.done <- err // for the cleanup
		default:
		}
	}
	t.Logf("FIGURE hostile messages: %d sent to 2 workers; queue %d ready, %d unacknowledged; both workers up; a valid task served", len(messages), ready, unacked)
}

// mustDial connects a broker for a client.
func mustDial(t *testing.T) *rabbitmq.Broker {
	t.Helper()
	b, err := rabbitmq.Dial(rabbitmq.Config{URL: testBrokerURL})
	if err != nil {
		t.Fatalf("RabbitMQ: %v (run make setup)", err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}
