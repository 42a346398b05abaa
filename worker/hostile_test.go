package worker_test

// Hostile messages, panics and a failing backend: whatever arrives, every
// delivery is settled exactly once, what can be stored is stored, and the
// worker goes on serving.

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/vhg/vhg-worker/protocol"
	"github.com/vhg/vhg-worker/worker"
	"github.com/vhg/vhg-worker/worker/metrics"
)

// settlements returns the settling events among events.
func settlements(events []string) []string {
	var out []string
	for _, e := range events {
		if e == "ack" || strings.HasPrefix(e, "reject") {
			out = append(out, e)
		}
	}
	return out
}

// withMetrics attaches a metrics Collector, as the command always does:
// the reported crash came from its label values.
func withMetrics(t *testing.T, w *testWorker) {
	t.Helper()
	c, err := metrics.New(prometheus.NewRegistry(), w.server, metrics.Config{})
	if err != nil {
		t.Fatal(err)
	}
	w.server.Observe(c)
}

// TestHostileHeaders sends messages whose headers or properties are not
// valid UTF-8, of the wrong type or oversize: each is rejected once without
// requeue, a FAILURE (DecodeError) is stored when the id is usable, nothing
// otherwise, and a valid task still runs afterwards.
func TestHostileHeaders(t *testing.T) {
	t.Parallel()
	const body = `[[1, 2], {}, {"callbacks": null, "errbacks": null, "chain": null, "chord": null}]`
	headers := func(id string, kv ...any) map[string]any {
		h := map[string]any{"lang": "py", "task": "t.ok", "id": id, "root_id": id, "retries": int64(0)}
		for i := 0; i+1 < len(kv); i += 2 {
			h[kv[i].(string)] = kv[i+1]
		}
		return h
	}
	tests := []struct {
		name string
		// env builds the message; key is the correlation id the event
		// log files it under.
		env       func(id, key string) protocol.Envelope
		wantStore bool // a FAILURE DecodeError under id
	}{
		{"task name not UTF-8", func(id, key string) protocol.Envelope {
			return protocol.Envelope{Headers: headers(id, "task", "no.such\xff\xfe"), Body: []byte(body), CorrelationID: key}
		}, true},
		{"id not UTF-8", func(id, key string) protocol.Envelope {
			return protocol.Envelope{Headers: headers(id + "\xff"), Body: []byte(body), CorrelationID: key}
		}, false},
		{"task name as bytes", func(id, key string) protocol.Envelope {
			return protocol.Envelope{Headers: headers(id, "task", []byte("t.ok")), Body: []byte(body), CorrelationID: key}
		}, true},
		{"id as a number", func(id, key string) protocol.Envelope {
			return protocol.Envelope{Headers: headers(id, "id", int32(7)), Body: []byte(body), CorrelationID: key}
		}, false},
		{"task name too long", func(id, key string) protocol.Envelope {
			return protocol.Envelope{Headers: headers(id, "task", strings.Repeat("t", protocol.MaxNameLen+1)), Body: []byte(body), CorrelationID: key}
		}, true},
		{"id too long", func(id, key string) protocol.Envelope {
			return protocol.Envelope{Headers: headers(id + strings.Repeat("i", protocol.MaxIDLen)), Body: []byte(body), CorrelationID: key}
		}, false},
		{"retries as a table", func(id, key string) protocol.Envelope {
			return protocol.Envelope{Headers: headers(id, "retries", map[string]any{"n": int64(1)}), Body: []byte(body), CorrelationID: key}
		}, true},
		{"eta as a bool", func(id, key string) protocol.Envelope {
			return protocol.Envelope{Headers: headers(id, "eta", true), Body: []byte(body), CorrelationID: key}
		}, true},
		{"oversize argsrepr", func(id, key string) protocol.Envelope {
			return protocol.Envelope{Headers: headers(id, "argsrepr", strings.Repeat("a", protocol.MaxHeaderStringLen+1)), Body: []byte(body), CorrelationID: key}
		}, true},
		{"custom header not UTF-8", func(id, key string) protocol.Envelope {
			return protocol.Envelope{Headers: headers(id, "x-trace", []any{"\xc3"}), Body: []byte(body), CorrelationID: key}
		}, true},
		{"correlation_id not UTF-8", func(id, _ string) protocol.Envelope {
			return protocol.Envelope{Headers: headers(id), Body: []byte(body), CorrelationID: "\xff" + id}
		}, true},
		{"no headers, garbage body", func(_, key string) protocol.Envelope {
			return protocol.Envelope{Body: []byte("\x00\xff"), CorrelationID: key}
		}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			mux := worker.NewServeMux()
			mux.HandleFunc("t.ok", okHandler)
			w := newTestWorker(t, mux, worker.Config{})
			withMetrics(t, w)
			w.run(t)
			id, key := worker.NewTaskID(), worker.NewTaskID()
			env := tt.env(id, key)
			if tt.name == "correlation_id not UTF-8" {
				key = env.CorrelationID
			}
			w.sendEnvelope(t, env)
			w.events.waitFor(t, key, "reject requeue=false")

			good := w.send(t, newMsg("t.ok"))
			if meta := w.result(t, good); meta.Status != protocol.StateSuccess {
				t.Errorf("a valid task afterwards: %s %v", meta.Status, meta.Result)
			}
			if got := settlements(w.events.of(key)); !reflect.DeepEqual(got, []string{"reject requeue=false"}) {
				t.Errorf("settlements = %q, want one reject without requeue", got)
			}
			if slices.Contains(w.events.of(key), "run") {
				t.Error("the handler ran")
			}
			meta, _ := w.backend.Result(context.Background(), id)
			switch {
			case tt.wantStore && meta.Status != protocol.StateFailure:
				t.Errorf("state of %s = %s, want FAILURE", id, meta.Status)
			case tt.wantStore:
				exc, _ := protocol.ParseExceptionInfo(meta.Result)
				if exc.Type != "DecodeError" {
					t.Errorf("stored %v, want a DecodeError", meta.Result)
				}
			case !tt.wantStore:
				for _, m := range w.backend.History() {
					if m.TaskID != good {
						t.Errorf("stored %s for %q, want nothing", m.Status, m.TaskID)
					}
				}
			}
		})
	}
}

// panicObserver panics on events of type typ for task t.boom.
func panicObserver(typ string) worker.Observer {
	return worker.ObserverFunc(func(e worker.TaskEvent) {
		if e.Type == typ && e.Msg.Task == "t.boom" {
			panic("observer boom on " + typ)
		}
	})
}

// TestLastNet forces panics in each stage of a message's handling: the
// message is settled exactly once (rejected without requeue when it was
// not settled yet), a FAILURE is stored unless an outcome was, and the
// worker serves the next task.
func TestLastNet(t *testing.T) {
	t.Parallel()
	panicking := func(context.Context, *worker.Task) (any, error) { panic("handler boom") }
	tests := []struct {
		name      string
		handler   worker.HandlerFunc
		opts      []worker.TaskOption
		observer  worker.Observer
		want      []string
		wantState protocol.State
		wantExc   string
	}{
		{"observer panics on receive", okHandler, nil, panicObserver(protocol.EventTaskReceived),
			[]string{"deliver", "store FAILURE", "reject requeue=false"}, protocol.StateFailure, "RuntimeError"},
		{"observer panics on start, acks late", okHandler, []worker.TaskOption{worker.AcksLate()}, panicObserver(protocol.EventTaskStarted),
			[]string{"deliver", "store FAILURE", "reject requeue=false"}, protocol.StateFailure, "RuntimeError"},
		{"observer panics on start, early ack", okHandler, nil, panicObserver(protocol.EventTaskStarted),
			[]string{"deliver", "ack", "store FAILURE"}, protocol.StateFailure, "RuntimeError"},
		{"observer panics after success, acks late", okHandler, []worker.TaskOption{worker.AcksLate()}, panicObserver(protocol.EventTaskSucceeded),
			[]string{"deliver", "run", "store SUCCESS", "reject requeue=false"}, protocol.StateSuccess, ""},
		{"handler panics", panicking, nil, nil,
			[]string{"deliver", "ack", "run", "store FAILURE"}, protocol.StateFailure, "RuntimeError"},
		{"handler panics, acks late", panicking, []worker.TaskOption{worker.AcksLate()}, nil,
			[]string{"deliver", "run", "store FAILURE", "ack"}, protocol.StateFailure, "RuntimeError"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			mux := worker.NewServeMux()
			mux.HandleFunc("t.boom", tt.handler, tt.opts...)
			mux.HandleFunc("t.ok", okHandler)
			w := newTestWorker(t, mux, worker.Config{})
			withMetrics(t, w)
			if tt.observer != nil {
				w.server.Observe(tt.observer)
			}
			w.run(t)
			id := w.send(t, newMsg("t.boom"))
			w.events.waitUntil(t, "the message to be settled and its state stored", func() bool {
				return len(w.events.of(id)) >= len(tt.want)
			})
			good := w.send(t, newMsg("t.ok"))
			if meta := w.result(t, good); meta.Status != protocol.StateSuccess {
				t.Errorf("the next task: %s %v", meta.Status, meta.Result)
			}
			if got := w.events.of(id); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("events = %q, want %q", got, tt.want)
			}
			meta, _ := w.backend.Result(context.Background(), id)
			exc, _ := protocol.ParseExceptionInfo(meta.Result)
			if meta.Status != tt.wantState || exc.Type != tt.wantExc {
				t.Errorf("stored %s %v, want %s %s", meta.Status, meta.Result, tt.wantState, tt.wantExc)
			}
		})
	}
}

// failingBackend fails the first fails stores of each task's outcome,
// as a backend still down after its retries does.
type failingBackend struct {
	*recordingBackend
	fails int

	mu     sync.Mutex
	failed map[string]int
}

var errBackendDown = errors.New("backend down after its retries")

func (b *failingBackend) Store(ctx context.Context, meta protocol.ResultMeta, to worker.ReplyRoute) error {
	if meta.Status.Ready() {
		b.mu.Lock()
		n := b.failed[meta.TaskID]
		if n < b.fails {
			b.failed[meta.TaskID] = n + 1
			b.mu.Unlock()
			b.log.add(meta.TaskID, "store failed")
			return errBackendDown
		}
		b.mu.Unlock()
	}
	return b.recordingBackend.Store(ctx, meta, to)
}

// TestStoreOutcomeFails: a task whose outcome cannot be stored is never
// acknowledged as if all were well. With acks_late the message is
// requeued and the task runs again (then stores); with an early ack the
// loss is reported (EventStoreFailed) and counted.
func TestStoreOutcomeFails(t *testing.T) {
	t.Parallel()
	// undecodable is a message rejected at receive; its FAILURE cannot be
	// stored either, and it is not requeued for that (it would come back
	// undecodable).
	undecodable := func(id string) protocol.Envelope {
		return protocol.Envelope{Headers: map[string]any{"task": "t.task", "id": id, "retries": "many"}, Body: []byte(`[[], {}, {}]`), CorrelationID: id}
	}
	tests := []struct {
		name    string
		handler worker.HandlerFunc
		opts    []worker.TaskOption
		env     func(id string) protocol.Envelope // nil: a valid t.task message
		want    []string
	}{
		{"acks late, success", okHandler, []worker.TaskOption{worker.AcksLate()}, nil,
			[]string{"deliver", "run", "store failed", "store-failed event", "reject requeue=true",
				"deliver", "run", "store SUCCESS", "ack"}},
		{"acks late, failure", failHandler, []worker.TaskOption{worker.AcksLate()}, nil,
			[]string{"deliver", "run", "store failed", "store-failed event", "reject requeue=true",
				"deliver", "run", "store FAILURE", "ack"}},
		{"early ack", okHandler, nil, nil,
			[]string{"deliver", "ack", "run", "store failed", "store-failed event"}},
		{"undecodable", okHandler, []worker.TaskOption{worker.AcksLate()}, undecodable,
			[]string{"deliver", "store failed", "store-failed event", "reject requeue=false"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			mux := worker.NewServeMux()
			mux.HandleFunc("t.task", tt.handler, tt.opts...)
			w := newTestWorkerWith(t, mux, worker.Config{}, func(b *recordingBackend) worker.Backend {
				return &failingBackend{recordingBackend: b, fails: 1, failed: map[string]int{}}
			})
			reg := prometheus.NewRegistry()
			c, err := metrics.New(reg, w.server, metrics.Config{})
			if err != nil {
				t.Fatal(err)
			}
			w.server.Observe(c, worker.ObserverFunc(func(e worker.TaskEvent) {
				if e.Type == worker.EventStoreFailed {
					w.events.add(e.Msg.ID, "store-failed event")
				}
			}))
			w.run(t)
			var id string
			if tt.env == nil {
				id = w.send(t, newMsg("t.task"))
			} else {
				id = worker.NewTaskID()
				w.sendEnvelope(t, tt.env(id))
			}
			w.events.waitUntil(t, fmt.Sprintf("%q", tt.want), func() bool { return len(w.events.of(id)) >= len(tt.want) })
			// The worker still serves (and the early-ack message is not
			// redelivered meanwhile).
			good := w.send(t, newMsg("t.task"))
			w.events.waitFor(t, good, "store failed")
			if got := w.events.of(id); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("events = %q, want %q", got, tt.want)
			}
			families, err := reg.Gather()
			if err != nil {
				t.Fatal(err)
			}
			var counted float64
			for _, f := range families {
				if f.GetName() == "vhg_worker_result_store_failures_total" {
					for _, m := range f.GetMetric() {
						counted += m.GetCounter().GetValue()
					}
				}
			}
			if counted < 1 {
				t.Errorf("vhg_worker_result_store_failures_total = %v, want at least 1", counted)
			}
		})
	}
}
