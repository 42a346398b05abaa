package worker_test

// The test harness: a Server on the in-memory broker and backend, wrapped so
// that every ack, reject, delivery, stored state and handler run is recorded
// in one ordered event log. Tests assert on the order of those events, never
// on how long anything took.

import (
	"context"
	"fmt"
	"io"
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/vhg/vhg-worker/protocol"
	"github.com/vhg/vhg-worker/worker"
	"github.com/vhg/vhg-worker/worker/memory"
)

// waitTimeout bounds every wait in these tests. It is generous on purpose:
// a test that needs it has failed anyway, and a loaded CI machine must not
// turn a slow pass into a failure.
const waitTimeout = 15 * time.Second

// event is one thing that happened to a task id.
type event struct {
	id   string
	what string // "deliver", "ack", "reject requeue=true", "run", "store SUCCESS", ...
}

// eventLog records events in the order they happen.
type eventLog struct {
	mu      sync.Mutex
	events  []event
	changed chan struct{}
}

func newEventLog() *eventLog { return &eventLog{changed: make(chan struct{})} }

func (l *eventLog) add(id, what string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.events = append(l.events, event{id, what})
	close(l.changed)
	l.changed = make(chan struct{})
}

// position returns the index of the first event what of id in the whole
// log, or -1.
func (l *eventLog) position(id, what string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	for i, e := range l.events {
		if e.id == id && e.what == what {
			return i
		}
	}
	return -1
}

// of returns what happened to id, in order.
func (l *eventLog) of(id string) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, e := range l.events {
		if e.id == id {
			out = append(out, e.what)
		}
	}
	return out
}

// waitUntil blocks until cond holds, failing the test after waitTimeout.
// Call it from the test goroutine only; handlers use wait.
func (l *eventLog) waitUntil(t *testing.T, desc string, cond func() bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if err := l.wait(ctx, cond); err != nil {
		t.Fatalf("timed out waiting for %s", desc)
	}
}

// wait blocks until cond holds or ctx is done.
func (l *eventLog) wait(ctx context.Context, cond func() bool) error {
	for {
		l.mu.Lock()
		changed := l.changed
		l.mu.Unlock()
		if cond() {
			return nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// waitFor blocks until id has an event what.
func (l *eventLog) waitFor(t *testing.T, id, what string) {
	t.Helper()
	l.waitUntil(t, fmt.Sprintf("%q on %s (have %q)", what, id, l.of(id)), func() bool {
		return slices.Contains(l.of(id), what)
	})
}

// recordingBroker is the memory broker with deliveries that record
// "deliver", "ack" and "reject requeue=<bool>" under the message's
// correlation id. Settlements are recorded as they start, so a requeued
// message's "reject" comes before its next "deliver".
type recordingBroker struct {
	*memory.Broker
	log *eventLog
}

// Publish records "publish" once the message is in the broker, so that a
// test woken by the event finds it there.
func (b *recordingBroker) Publish(ctx context.Context, to worker.Route, env protocol.Envelope) error {
	err := b.Broker.Publish(ctx, to, env)
	b.log.add(env.CorrelationID, "publish")
	return err
}

func (b *recordingBroker) Consume(ctx context.Context, queues []string, prefetch int) (<-chan worker.Delivery, error) {
	in, err := b.Broker.Consume(ctx, queues, prefetch)
	if err != nil {
		return nil, err
	}
	out := make(chan worker.Delivery)
	go func() {
		defer close(out)
		for d := range in {
			rd := &recordingDelivery{Delivery: d, log: b.log}
			b.log.add(rd.id(), "deliver")
			select {
			case out <- rd:
			case <-ctx.Done():
				// The Server stopped reading: give the message back, as
				// the real brokers do.
				_ = rd.Reject(true)
			}
		}
	}()
	return out, nil
}

type recordingDelivery struct {
	worker.Delivery
	log *eventLog
}

func (d *recordingDelivery) id() string { return d.Envelope().CorrelationID }

func (d *recordingDelivery) Ack() error {
	d.log.add(d.id(), "ack")
	return d.Delivery.Ack()
}

func (d *recordingDelivery) Reject(requeue bool) error {
	d.log.add(d.id(), fmt.Sprintf("reject requeue=%t", requeue))
	return d.Delivery.Reject(requeue)
}

// recordingBackend is the memory backend recording "store <STATE>". It
// embeds *memory.Backend, so it still is a ChordJoiner and ResultReader.
type recordingBackend struct {
	*memory.Backend
	log *eventLog
}

// The backend records after the fact: a test woken by "store SUCCESS"
// finds the state stored.

func (b *recordingBackend) SetChordSize(ctx context.Context, groupID string, size int) error {
	err := b.Backend.SetChordSize(ctx, groupID, size)
	b.log.add(groupID, fmt.Sprintf("chord size %d", size))
	return err
}

func (b *recordingBackend) JoinChordPart(ctx context.Context, groupID string, part worker.ChordPart, fallbackSize int) ([]worker.ChordPart, bool, error) {
	parts, done, err := b.Backend.JoinChordPart(ctx, groupID, part, fallbackSize)
	b.log.add(part.TaskID, "join")
	return parts, done, err
}

func (b *recordingBackend) Store(ctx context.Context, meta protocol.ResultMeta, to worker.ReplyRoute) error {
	err := b.Backend.Store(ctx, meta, to)
	b.log.add(meta.TaskID, "store "+string(meta.Status))
	return err
}

// testWorker is a running Server with its fakes.
type testWorker struct {
	broker  *recordingBroker
	backend *recordingBackend
	events  *eventLog
	server  *worker.Server

	stop    context.CancelFunc // soft stop
	stopped chan struct{}      // closed when Run returned
	runErr  error
}

// discardLogger keeps test output readable; failures are asserted, not logged.
func discardLogger() logrus.FieldLogger {
	l := logrus.New()
	l.SetOutput(io.Discard)
	return l
}

// newTestWorker builds a worker without running it. Every handler run is
// recorded as "run" by a middleware.
func newTestWorker(t *testing.T, mux *worker.ServeMux, cfg worker.Config) *testWorker {
	t.Helper()
	return newTestWorkerWith(t, mux, cfg, nil)
}

// newTestWorkerWith is newTestWorker with the backend the Server uses
// derived from the recording one by wrap (nil: the recording one).
func newTestWorkerWith(t *testing.T, mux *worker.ServeMux, cfg worker.Config, wrap func(*recordingBackend) worker.Backend) *testWorker {
	t.Helper()
	events := newEventLog()
	w := &testWorker{
		broker:  &recordingBroker{Broker: memory.NewBroker(), log: events},
		backend: &recordingBackend{Backend: memory.NewBackend(), log: events},
		events:  events,
		stopped: make(chan struct{}),
	}
	mux.Use(func(next worker.Handler) worker.Handler {
		return worker.HandlerFunc(func(ctx context.Context, task *worker.Task) (any, error) {
			events.add(task.ID(), "run")
			return next.ServeTask(ctx, task)
		})
	})
	if cfg.Concurrency == 0 {
		cfg.Concurrency = 4
	}
	if cfg.NodeName == "" {
		cfg.NodeName = "test@host"
	}
	var backend worker.Backend = w.backend
	if wrap != nil {
		backend = wrap(w.backend)
	}
	w.server = worker.NewServer(cfg, w.broker, backend, mux, discardLogger())
	return w
}

// startWorker builds and runs a worker; it is stopped softly at cleanup.
func startWorker(t *testing.T, mux *worker.ServeMux, cfg worker.Config) *testWorker {
	t.Helper()
	w := newTestWorker(t, mux, cfg)
	w.run(t)
	return w
}

func (w *testWorker) run(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	w.stop = cancel
	go func() {
		defer close(w.stopped)
		w.runErr = w.server.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		w.server.StopNow() // nothing in a finished test should still run
		select {
		case <-w.stopped:
		case <-time.After(waitTimeout):
			t.Errorf("Server.Run did not return after the test")
		}
	})
}

// waitLen waits until queue holds n messages. Brokers give back what they
// had not handed over yet in their own goroutines, possibly after Run
// returned.
func (w *testWorker) waitLen(t *testing.T, queue string, n int) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for w.broker.Len(queue) != n {
		if time.Now().After(deadline) {
			t.Fatalf("%d messages in %s, want %d", w.broker.Len(queue), queue, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// waitStopped waits for Run to return and returns its error.
func (w *testWorker) waitStopped(t *testing.T) error {
	t.Helper()
	select {
	case <-w.stopped:
		return w.runErr
	case <-time.After(waitTimeout):
		t.Fatal("Server.Run did not return")
		return nil
	}
}

// send publishes msg to the queue "celery" and returns its id.
func (w *testWorker) send(t *testing.T, msg *protocol.Message) string {
	t.Helper()
	env, err := protocol.Encode(msg)
	if err != nil {
		t.Fatalf("encode %s: %v", msg.Task, err)
	}
	w.sendEnvelope(t, env)
	return msg.ID
}

func (w *testWorker) sendEnvelope(t *testing.T, env protocol.Envelope) {
	t.Helper()
	// Straight to the memory broker: only what the worker publishes is
	// recorded as "publish".
	if err := w.broker.Broker.Publish(context.Background(), worker.QueueRoute("celery"), env); err != nil {
		t.Fatalf("publish: %v", err)
	}
}

// result waits for a ready state of id.
func (w *testWorker) result(t *testing.T, id string) protocol.ResultMeta {
	t.Helper()
	return waitResult(t, w.backend.Backend, id)
}

func waitResult(t *testing.T, b *memory.Backend, id string) protocol.ResultMeta {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	meta, err := b.Wait(ctx, id)
	if err != nil {
		t.Fatalf("waiting for the result of %s: %v", id, err)
	}
	return meta
}

// states returns the states stored for id, in order.
func states(b *memory.Backend, id string) []protocol.State {
	var out []protocol.State
	for _, m := range b.History() {
		if m.TaskID == id {
			out = append(out, m.Status)
		}
	}
	return out
}

// newMsg returns a protocol v2 task message with a fresh id.
func newMsg(task string, args ...any) *protocol.Message {
	if args == nil {
		args = []any{}
	}
	return &protocol.Message{Version: 2, ID: worker.NewTaskID(), Task: task, Args: args}
}

// asJSON returns v as a Python client decodes it: through the JSON the
// backends write. It makes Go values (int, ExceptionInfo) comparable with
// decoded ones (int64, map).
func asJSON(t *testing.T, v any) any {
	t.Helper()
	data, err := protocol.MarshalJSON(v)
	if err != nil {
		t.Fatalf("marshal %#v: %v", v, err)
	}
	out, err := protocol.UnmarshalJSON(data)
	if err != nil {
		t.Fatalf("unmarshal %s: %v", data, err)
	}
	return out
}

// assertJSONEqual compares two values as JSON documents.
func assertJSONEqual(t *testing.T, what string, got, want any) {
	t.Helper()
	g, w := asJSON(t, got), asJSON(t, want)
	if !reflect.DeepEqual(g, w) {
		gj, _ := protocol.MarshalJSON(g)
		wj, _ := protocol.MarshalJSON(w)
		t.Errorf("%s:\n got %s\nwant %s", what, gj, wj)
	}
}

// excDict is the exception dict a Python client rebuilds an exception from.
func excDict(module, typ string, args ...any) map[string]any {
	if args == nil {
		args = []any{}
	}
	return map[string]any{"exc_module": module, "exc_type": typ, "exc_message": args}
}

// toInt reads a JSON number argument.
func toInt(t *worker.Task, v any) (int64, error) {
	switch n := v.(type) {
	case int64:
		return n, nil
	case int:
		return int64(n), nil
	case float64:
		return int64(n), nil
	}
	return 0, worker.NewTaskError("TypeError", "%s: not a number: %#v", t.Name(), v)
}
