package worker_test

import (
	"context"
	"errors"
	"os"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vhg/vhg-worker/protocol"
	"github.com/vhg/vhg-worker/worker"
)

func okHandler(context.Context, *worker.Task) (any, error) { return "ok", nil }

func failHandler(context.Context, *worker.Task) (any, error) {
	return nil, worker.NewTaskError("ValueError", "boom")
}

// TestAckTiming checks the acknowledgement rules of reference §2.3: ack at
// start by default, after the outcome is stored with AcksLate.
func TestAckTiming(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		handler worker.HandlerFunc
		opts    []worker.TaskOption
		want    []string
	}{
		{"early on success", okHandler, nil, []string{"deliver", "ack", "run", "store SUCCESS"}},
		{"early on failure", failHandler, nil, []string{"deliver", "ack", "run", "store FAILURE"}},
		{"late on success", okHandler, []worker.TaskOption{worker.AcksLate()}, []string{"deliver", "run", "store SUCCESS", "ack"}},
		{"late on failure", failHandler, []worker.TaskOption{worker.AcksLate()}, []string{"deliver", "run", "store FAILURE", "ack"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			mux := worker.NewServeMux()
			mux.HandleFunc("t.task", tt.handler, tt.opts...)
			w := startWorker(t, mux, worker.Config{})
			id := w.send(t, newMsg("t.task"))
			w.result(t, id)
			w.events.waitUntil(t, "the message to be settled", func() bool { return len(w.events.of(id)) >= len(tt.want) })
			if got := w.events.of(id); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("events = %q, want %q", got, tt.want)
			}
		})
	}
}

// TestRejectInvalid checks that messages a worker cannot run are rejected
// without requeue, with a FAILURE stored when the task id is known.
func TestRejectInvalid(t *testing.T) {
	t.Parallel()
	v2Headers := func(task, id string) map[string]any {
		return map[string]any{"lang": "py", "task": task, "id": id, "root_id": id}
	}
	tests := []struct {
		name    string
		env     func(id string) protocol.Envelope
		wantExc map[string]any // nil: nothing stored
	}{
		{
			name: "pickle content type",
			env: func(id string) protocol.Envelope {
				return protocol.Envelope{ContentType: "application/x-python-serialize", ContentEncoding: "binary",
					Headers: v2Headers("t.ok", id), Body: []byte("\x80\x04\x95..."), CorrelationID: id}
			},
			wantExc: map[string]any{"exc_module": "kombu.exceptions", "exc_type": "ContentDisallowed"},
		},
		{
			name: "bad JSON body",
			env: func(id string) protocol.Envelope {
				return protocol.Envelope{ContentType: "application/json", ContentEncoding: "utf-8",
					Headers: v2Headers("t.ok", id), Body: []byte(`[[1], {`), CorrelationID: id}
			},
			wantExc: map[string]any{"exc_module": "kombu.exceptions", "exc_type": "DecodeError"},
		},
		{
			name: "body is not a 3-element array",
			env: func(id string) protocol.Envelope {
				return protocol.Envelope{ContentType: "application/json", ContentEncoding: "utf-8",
					Headers: v2Headers("t.ok", id), Body: []byte(`[[1], {}]`), CorrelationID: id}
			},
			wantExc: map[string]any{"exc_module": "kombu.exceptions", "exc_type": "DecodeError"},
		},
		{
			name: "no task id anywhere",
			env: func(id string) protocol.Envelope {
				return protocol.Envelope{ContentType: "application/json", ContentEncoding: "utf-8",
					Body: []byte(`[[1], {}, {}]`), CorrelationID: id}
			},
		},
		{
			name: "unknown task",
			env: func(id string) protocol.Envelope {
				env, err := protocol.Encode(&protocol.Message{ID: id, Task: "t.nobody.runs.this"})
				if err != nil {
					panic(err)
				}
				return env
			},
			wantExc: excDict("celery.exceptions", "NotRegistered", "t.nobody.runs.this"),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			mux := worker.NewServeMux()
			mux.HandleFunc("t.ok", okHandler)
			w := startWorker(t, mux, worker.Config{})
			id := worker.NewTaskID()
			w.sendEnvelope(t, tt.env(id))
			w.events.waitFor(t, id, "reject requeue=false")

			if slices.Contains(w.events.of(id), "run") {
				t.Error("the handler ran")
			}
			if tt.wantExc == nil {
				if h := w.backend.History(); len(h) != 0 {
					t.Errorf("stored %v, want nothing", h)
				}
				return
			}
			meta, _ := w.backend.Result(context.Background(), id)
			if meta.Status != protocol.StateFailure {
				t.Fatalf("state = %s, want FAILURE", meta.Status)
			}
			got := asJSON(t, meta.Result).(map[string]any)
			if _, exact := tt.wantExc["exc_message"]; !exact {
				// Decode errors carry a Go message; check the type only.
				delete(got, "exc_message")
			}
			assertJSONEqual(t, "exception", got, tt.wantExc)
		})
	}
}

// TestExpired checks that an expired message is acknowledged with REVOKED
// stored and never run.
func TestExpired(t *testing.T) {
	t.Parallel()
	mux := worker.NewServeMux()
	mux.HandleFunc("t.ok", okHandler)
	w := startWorker(t, mux, worker.Config{})
	msg := newMsg("t.ok")
	msg.Expires = time.Now().Add(-time.Minute)
	id := w.send(t, msg)

	meta := w.result(t, id)
	if meta.Status != protocol.StateRevoked {
		t.Fatalf("state = %s, want REVOKED", meta.Status)
	}
	assertJSONEqual(t, "result", meta.Result, excDict("celery.exceptions", "TaskRevokedError", "expired"))
	w.events.waitFor(t, id, "ack")
	if got, want := w.events.of(id), []string{"deliver", "store REVOKED", "ack"}; !reflect.DeepEqual(got, want) {
		t.Errorf("events = %q, want %q", got, want)
	}
}

// TestETA checks that a message with a future ETA is held unacknowledged
// without blocking later messages, then acknowledged and run at its ETA.
func TestETA(t *testing.T) {
	t.Parallel()
	mux := worker.NewServeMux()
	var mu sync.Mutex
	var order []string
	mux.HandleFunc("t.ok", func(_ context.Context, task *worker.Task) (any, error) {
		mu.Lock()
		order = append(order, task.ID())
		mu.Unlock()
		return time.Now().UTC().Format(time.RFC3339Nano), nil
	})
	w := startWorker(t, mux, worker.Config{})

	later := newMsg("t.ok")
	later.ETA = time.Now().Add(300 * time.Millisecond).UTC()
	laterID := w.send(t, later)
	nowID := w.send(t, newMsg("t.ok"))

	w.result(t, nowID)
	meta := w.result(t, laterID)

	mu.Lock()
	if want := []string{nowID, laterID}; !reflect.DeepEqual(order, want) {
		t.Errorf("run order = %v, want %v (the ETA message must not block the queue)", order, want)
	}
	mu.Unlock()
	w.events.waitFor(t, laterID, "store SUCCESS")
	if got, want := w.events.of(laterID), []string{"deliver", "ack", "run", "store SUCCESS"}; !reflect.DeepEqual(got, want) {
		t.Errorf("events of the ETA message = %q, want %q", got, want)
	}
	ranAt, err := time.Parse(time.RFC3339Nano, meta.Result.(string))
	if err != nil {
		t.Fatal(err)
	}
	// A timer never fires early: this holds however slow the machine is.
	if ranAt.Before(later.ETA) {
		t.Errorf("ran at %s, before its ETA %s", ranAt, later.ETA)
	}
}

// TestRetry checks reference §2.5: the message is republished under the
// same id with retries+1 and an ETA, RETRY is stored with the cause, and
// once the retries are used up the task ends as FAILURE with the cause.
func TestRetry(t *testing.T) {
	t.Parallel()
	mux := worker.NewServeMux()
	mux.HandleFunc("t.flaky", func(_ context.Context, task *worker.Task) (any, error) {
		return nil, task.Retry(worker.NewTaskError("ValueError", "boom"), 10*time.Millisecond)
	}, worker.MaxRetries(2))
	w := startWorker(t, mux, worker.Config{})
	msg := newMsg("t.flaky", int64(1))
	msg.Kwargs = map[string]any{"k": "v"}
	msg.ExtraHeaders = map[string]any{"x-custom": "kept"}
	id := w.send(t, msg)

	meta := w.result(t, id)
	if meta.Status != protocol.StateFailure {
		t.Fatalf("state = %s, want FAILURE", meta.Status)
	}
	assertJSONEqual(t, "failure", meta.Result, excDict("builtins", "ValueError", "boom"))
	if got, want := states(w.backend.Backend, id), []protocol.State{"RETRY", "RETRY", "FAILURE"}; !reflect.DeepEqual(got, want) {
		t.Errorf("stored states = %v, want %v", got, want)
	}
	for _, m := range w.backend.History() {
		if m.TaskID == id && m.Status == protocol.StateRetry {
			assertJSONEqual(t, "RETRY result", m.Result, excDict("builtins", "ValueError", "boom"))
		}
	}

	var retries []*protocol.Message
	for _, p := range w.broker.Published() {
		m, err := protocol.Decode(p.Envelope)
		if err != nil {
			t.Fatal(err)
		}
		if m.ID == id && m.Retries > 0 {
			retries = append(retries, m)
			if p.Route != worker.QueueRoute("celery") {
				t.Errorf("retry routed to %+v, want the queue it came from", p.Route)
			}
		}
	}
	if len(retries) != 2 {
		t.Fatalf("republished %d retries, want 2", len(retries))
	}
	for i, m := range retries {
		if m.Retries != i+1 || m.ETA.IsZero() || m.ParentID != id || m.RootID != id {
			t.Errorf("retry %d: retries=%d eta=%v parent=%q root=%q; want retries=%d, an eta, parent and root = %s",
				i, m.Retries, m.ETA, m.ParentID, m.RootID, i+1, id)
		}
		assertJSONEqual(t, "retry args", m.Args, msg.Args)
		assertJSONEqual(t, "retry kwargs", m.Kwargs, msg.Kwargs)
		assertJSONEqual(t, "retry custom headers", m.ExtraHeaders, msg.ExtraHeaders)
	}
	w.events.waitUntil(t, "three acks", func() bool {
		n := 0
		for _, e := range w.events.of(id) {
			if e == "ack" {
				n++
			}
		}
		return n == 3
	})
}

// TestFailures checks the exception dict stored for each way a handler can
// fail, as a Python client rebuilds it (reference §4.4, §2.6).
func TestFailures(t *testing.T) {
	t.Parallel()
	waitDone := func(ctx context.Context) { <-ctx.Done() }
	tests := []struct {
		name    string
		handler worker.HandlerFunc
		opts    []worker.TaskOption
		limit   protocol.TimeLimit // the message's timelimit header
		config  worker.Config      // the worker's defaults (--time-limit)
		want    map[string]any
	}{
		{
			name: "TaskError",
			handler: func(context.Context, *worker.Task) (any, error) {
				return nil, &worker.TaskError{Module: "myapp.errors", Type: "BadInput", Args: []any{"x", int64(3)}}
			},
			want: excDict("myapp.errors", "BadInput", "x", 3),
		},
		{
			name:    "TaskError without module",
			handler: func(context.Context, *worker.Task) (any, error) { return nil, &worker.TaskError{Type: "KeyError"} },
			want:    excDict("builtins", "KeyError"),
		},
		{
			name: "wrapped TaskError",
			handler: func(context.Context, *worker.Task) (any, error) {
				return nil, wrap(worker.NewTaskError("ValueError", "bad %d", 7))
			},
			want: excDict("builtins", "ValueError", "bad 7"),
		},
		{
			name:    "plain Go error",
			handler: func(context.Context, *worker.Task) (any, error) { return nil, errors.New("disk full") },
			want:    excDict("builtins", "Exception", "disk full"),
		},
		{
			name:    "panic",
			handler: func(context.Context, *worker.Task) (any, error) { panic("kaboom") },
			want:    excDict("builtins", "RuntimeError", "panic: kaboom"),
		},
		{
			name:    "soft time limit from the message",
			handler: func(ctx context.Context, _ *worker.Task) (any, error) { waitDone(ctx); return nil, ctx.Err() },
			limit:   protocol.TimeLimit{Soft: 50 * time.Millisecond},
			want:    excDict("billiard.exceptions", "SoftTimeLimitExceeded", "SoftTimeLimitExceeded()"),
		},
		{
			name:    "soft time limit from the task",
			handler: func(ctx context.Context, _ *worker.Task) (any, error) { waitDone(ctx); return nil, context.Cause(ctx) },
			opts:    []worker.TaskOption{worker.TimeLimits(0, 50*time.Millisecond)},
			want:    excDict("billiard.exceptions", "SoftTimeLimitExceeded", "SoftTimeLimitExceeded()"),
		},
		{
			// The process would be killed in Python; here the handler
			// returns, and whatever it returned is replaced.
			name:    "hard time limit",
			handler: func(ctx context.Context, _ *worker.Task) (any, error) { waitDone(ctx); return "too late", nil },
			limit:   protocol.TimeLimit{Hard: 50 * time.Millisecond},
			want:    excDict("billiard.exceptions", "TimeLimitExceeded", 0.05),
		},
		{
			name:    "hard time limit from the task",
			handler: func(ctx context.Context, _ *worker.Task) (any, error) { waitDone(ctx); return nil, ctx.Err() },
			opts:    []worker.TaskOption{worker.TimeLimits(50*time.Millisecond, 0)},
			want:    excDict("billiard.exceptions", "TimeLimitExceeded", 0.05),
		},
		{
			name:    "hard time limit from the worker",
			handler: func(ctx context.Context, _ *worker.Task) (any, error) { waitDone(ctx); return nil, ctx.Err() },
			config:  worker.Config{TaskTimeLimit: 50 * time.Millisecond},
			want:    excDict("billiard.exceptions", "TimeLimitExceeded", 0.05),
		},
		{
			name:    "soft time limit from the worker",
			handler: func(ctx context.Context, _ *worker.Task) (any, error) { waitDone(ctx); return nil, context.Cause(ctx) },
			config:  worker.Config{TaskSoftTimeLimit: 50 * time.Millisecond},
			want:    excDict("billiard.exceptions", "SoftTimeLimitExceeded", "SoftTimeLimitExceeded()"),
		},
		{
			// The task's own limit wins over the worker's, as in Celery.
			name:    "task limit before the worker's",
			handler: func(ctx context.Context, _ *worker.Task) (any, error) { waitDone(ctx); return nil, ctx.Err() },
			opts:    []worker.TaskOption{worker.TimeLimits(50*time.Millisecond, 0)},
			config:  worker.Config{TaskTimeLimit: time.Hour},
			want:    excDict("billiard.exceptions", "TimeLimitExceeded", 0.05),
		},
		{
			// And the message's wins over both.
			name:    "message limit before the worker's",
			handler: func(ctx context.Context, _ *worker.Task) (any, error) { waitDone(ctx); return nil, ctx.Err() },
			limit:   protocol.TimeLimit{Hard: 50 * time.Millisecond},
			config:  worker.Config{TaskTimeLimit: time.Hour},
			want:    excDict("billiard.exceptions", "TimeLimitExceeded", 0.05),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			mux := worker.NewServeMux()
			mux.HandleFunc("t.task", tt.handler, tt.opts...)
			w := startWorker(t, mux, tt.config)
			msg := newMsg("t.task")
			msg.TimeLimit = tt.limit
			id := w.send(t, msg)
			meta := w.result(t, id)
			if meta.Status != protocol.StateFailure {
				t.Fatalf("state = %s (%v), want FAILURE", meta.Status, meta.Result)
			}
			assertJSONEqual(t, "exception", meta.Result, tt.want)
			if meta.Traceback == "" || meta.DateDone.IsZero() {
				t.Errorf("traceback %q, date_done %v: want both set", meta.Traceback, meta.DateDone)
			}
		})
	}
}

func wrap(err error) error { return errors.Join(errors.New("while working"), err) }

// TestFlowControl checks the flow-control errors and result options: what
// is stored and how the message is settled.
func TestFlowControl(t *testing.T) {
	t.Parallel()
	attempts := func() worker.HandlerFunc {
		var mu sync.Mutex
		seen := map[string]int{}
		return func(_ context.Context, task *worker.Task) (any, error) {
			mu.Lock()
			defer mu.Unlock()
			seen[task.ID()]++
			if seen[task.ID()] == 1 {
				return nil, &worker.RejectError{Requeue: true, Cause: errors.New("not now")}
			}
			return task.Delivery.Redelivered, nil
		}
	}
	tests := []struct {
		name        string
		handler     worker.HandlerFunc
		opts        []worker.TaskOption
		ignoreInMsg bool
		want        []string
		wantResult  any // checked when a SUCCESS is stored
	}{
		{
			name:    "ErrIgnore stores nothing",
			handler: func(context.Context, *worker.Task) (any, error) { return nil, worker.ErrIgnore },
			opts:    []worker.TaskOption{worker.AcksLate()},
			want:    []string{"deliver", "run", "ack"},
		},
		{
			name:       "RejectError requeue runs it again, redelivered",
			handler:    attempts(),
			opts:       []worker.TaskOption{worker.AcksLate()},
			want:       []string{"deliver", "run", "reject requeue=true", "deliver", "run", "store SUCCESS", "ack"},
			wantResult: true,
		},
		{
			// Celery: with early acks the message is gone when the task
			// rejects it, so the reject does nothing.
			name: "RejectError after an early ack does nothing",
			handler: func(context.Context, *worker.Task) (any, error) {
				return nil, &worker.RejectError{Requeue: true, Cause: errors.New("too late")}
			},
			want: []string{"deliver", "ack", "run"},
		},
		{
			name: "RejectError without requeue stores FAILURE",
			handler: func(context.Context, *worker.Task) (any, error) {
				return nil, &worker.RejectError{Cause: worker.NewTaskError("ValueError", "poison")}
			},
			opts: []worker.TaskOption{worker.AcksLate()},
			want: []string{"deliver", "run", "store FAILURE", "reject requeue=false"},
		},
		{
			name:        "ignore_result header",
			handler:     okHandler,
			opts:        []worker.TaskOption{worker.AcksLate()},
			ignoreInMsg: true,
			want:        []string{"deliver", "run", "ack"},
		},
		{
			name:        "ignore_result header also for failures",
			handler:     failHandler,
			opts:        []worker.TaskOption{worker.AcksLate()},
			ignoreInMsg: true,
			want:        []string{"deliver", "run", "ack"},
		},
		{
			name:    "IgnoreResult task option",
			handler: okHandler,
			opts:    []worker.TaskOption{worker.AcksLate(), worker.IgnoreResult()},
			want:    []string{"deliver", "run", "ack"},
		},
		{
			name:       "track_started",
			handler:    okHandler,
			opts:       []worker.TaskOption{worker.TrackStarted()},
			want:       []string{"deliver", "ack", "store STARTED", "run", "store SUCCESS"},
			wantResult: "ok",
		},
		{
			name:    "track_started with ignore_result stores nothing",
			handler: okHandler,
			opts:    []worker.TaskOption{worker.TrackStarted(), worker.IgnoreResult(), worker.AcksLate()},
			want:    []string{"deliver", "run", "ack"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			mux := worker.NewServeMux()
			mux.HandleFunc("t.task", tt.handler, tt.opts...)
			w := startWorker(t, mux, worker.Config{})
			msg := newMsg("t.task")
			msg.IgnoreResult = tt.ignoreInMsg
			id := w.send(t, msg)
			last := tt.want[len(tt.want)-1]
			w.events.waitUntil(t, "the last event "+last, func() bool {
				ev := w.events.of(id)
				return len(ev) >= len(tt.want) && ev[len(tt.want)-1] == last
			})
			if got := w.events.of(id); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("events = %q, want %q", got, tt.want)
			}
			if tt.wantResult != nil {
				meta, _ := w.backend.Result(context.Background(), id)
				assertJSONEqual(t, "result", meta.Result, tt.wantResult)
			}
		})
	}
}

// TestTrackStartedMeta checks the STARTED meta Python clients read:
// {"pid": <int>, "hostname": <node name>}.
func TestTrackStartedMeta(t *testing.T) {
	t.Parallel()
	mux := worker.NewServeMux()
	mux.HandleFunc("t.task", okHandler, worker.TrackStarted())
	w := startWorker(t, mux, worker.Config{NodeName: "celery@gohost"})
	id := w.send(t, newMsg("t.task"))
	w.result(t, id)
	h := w.backend.History()
	if len(h) != 2 || h[0].Status != protocol.StateStarted {
		t.Fatalf("history = %+v, want STARTED then SUCCESS", h)
	}
	assertJSONEqual(t, "STARTED meta", h[0].Result, map[string]any{"pid": os.Getpid(), "hostname": "celery@gohost"})
}

// TestStoredChildrenIsAList checks that every state the worker stores for a
// request has "children": [] when there are none, as a Python worker writes
// (null means "stored without a request").
func TestStoredChildrenIsAList(t *testing.T) {
	t.Parallel()
	mux := worker.NewServeMux()
	mux.HandleFunc("t.ok", func(ctx context.Context, task *worker.Task) (any, error) {
		return "ok", task.UpdateState(ctx, "", "PROGRESS", map[string]any{"done": 1})
	}, worker.TrackStarted())
	mux.HandleFunc("t.fail", failHandler)
	w := startWorker(t, mux, worker.Config{})
	ids := []string{w.send(t, newMsg("t.ok")), w.send(t, newMsg("t.fail")), w.send(t, newMsg("t.nobody.runs.this"))}
	for _, id := range ids {
		w.result(t, id)
	}
	for _, m := range w.backend.History() {
		data, err := m.JSON()
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(data), `"children": []`) {
			t.Errorf("%s stored %s", m.Status, data)
		}
	}
	if n := len(w.backend.History()); n != 5 {
		t.Errorf("%d states stored, want STARTED, PROGRESS, SUCCESS, FAILURE, FAILURE", n)
	}
}

// TestGracefulStop checks the soft stop: the running task finishes and is
// acknowledged, the message held for its ETA goes back to the queue.
func TestGracefulStop(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	mux := worker.NewServeMux()
	mux.HandleFunc("t.block", func(context.Context, *worker.Task) (any, error) {
		<-release
		return "finished", nil
	}, worker.AcksLate())
	mux.HandleFunc("t.ok", okHandler)
	w := startWorker(t, mux, worker.Config{})

	running := w.send(t, newMsg("t.block"))
	held := newMsg("t.ok")
	held.ETA = time.Now().Add(time.Hour)
	heldID := w.send(t, held)
	w.events.waitFor(t, running, "run")
	w.events.waitFor(t, heldID, "deliver")

	w.stop()
	w.events.waitFor(t, heldID, "reject requeue=true")
	select {
	case <-w.stopped:
		t.Fatal("Run returned while a task was still running")
	default:
	}
	close(release)
	if err := w.waitStopped(t); err != nil {
		t.Errorf("Run = %v, want nil", err)
	}
	if got, want := w.events.of(running), []string{"deliver", "run", "store SUCCESS", "ack"}; !reflect.DeepEqual(got, want) {
		t.Errorf("running task events = %q, want %q", got, want)
	}
	// A message given back while consuming stops can be delivered once
	// more before the consumer sees the stop, and is given back again, as
	// with RabbitMQ: any number of such rounds, and it ends in the queue.
	got := w.events.of(heldID)
	if len(got) == 0 || len(got)%2 != 0 {
		t.Errorf("held task events = %q, want rounds of deliver and requeue", got)
	}
	for i := 0; i+1 < len(got); i += 2 {
		if got[i] != "deliver" || got[i+1] != "reject requeue=true" {
			t.Errorf("held task events = %q, want rounds of deliver and requeue", got)
			break
		}
	}
	waitUntil(t, "the held message back in the queue", func() bool { return w.broker.Len("celery") == 1 })
}

// TestStopNow checks the hard stop: running tasks are cancelled with
// ErrShutdown and their messages requeued, nothing stored.
func TestStopNow(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		cancelSoft bool // a soft stop first, as on a second interrupt
	}{
		{"after a soft stop", true},
		{"alone", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			mux := worker.NewServeMux()
			causes := make(chan error, 1)
			mux.HandleFunc("t.block", func(ctx context.Context, _ *worker.Task) (any, error) {
				<-ctx.Done()
				select {
				case causes <- context.Cause(ctx):
				default: // a redelivery, cancelled at once
				}
				return nil, ctx.Err()
			}, worker.AcksLate())
			w := startWorker(t, mux, worker.Config{})
			id := w.send(t, newMsg("t.block"))
			w.events.waitFor(t, id, "run")

			if tt.cancelSoft {
				w.stop()
			}
			w.server.StopNow()
			if err := w.waitStopped(t); err != nil {
				t.Errorf("Run = %v, want nil", err)
			}
			if cause := <-causes; !errors.Is(cause, worker.ErrShutdown) {
				t.Errorf("task cancelled with %v, want ErrShutdown", cause)
			}
			if got := w.events.of(id); !slices.Equal(got[:3], []string{"deliver", "run", "reject requeue=true"}) {
				t.Errorf("events = %q, want deliver, run, reject requeue=true", got)
			}
			if h := w.backend.History(); len(h) != 0 {
				t.Errorf("stored %+v, want nothing", h)
			}
			w.waitLen(t, "celery", 1) // the requeued message
		})
	}
}

// TestTerminate checks revoke --terminate: the running task is cancelled
// and REVOKED "terminated" is stored.
func TestTerminate(t *testing.T) {
	t.Parallel()
	mux := worker.NewServeMux()
	mux.HandleFunc("t.block", func(ctx context.Context, _ *worker.Task) (any, error) {
		<-ctx.Done()
		return nil, ctx.Err()
	})
	w := startWorker(t, mux, worker.Config{})
	id := w.send(t, newMsg("t.block"))
	w.events.waitFor(t, id, "run")

	if w.server.Terminate(worker.NewTaskID()) {
		t.Error("Terminate(unknown id) = true")
	}
	if !w.server.Terminate(id) {
		t.Fatal("Terminate(running id) = false")
	}
	meta := w.result(t, id)
	if meta.Status != protocol.StateRevoked {
		t.Fatalf("state = %s, want REVOKED", meta.Status)
	}
	assertJSONEqual(t, "result", meta.Result, excDict("celery.exceptions", "TaskRevokedError", "terminated"))
	// Once the task has returned it is no longer running here (the result
	// is stored just before that, so poll).
	deadline := time.Now().Add(waitTimeout)
	for w.server.Terminate(id) {
		if time.Now().After(deadline) {
			t.Fatal("Terminate(finished id) still true")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestAccumulate checks the celery.accumulate builtin.
func TestAccumulate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		args    []any
		kwargs  map[string]any
		want    any
		wantExc string
	}{
		{"all args", []any{int64(1), "two", int64(3)}, nil, []any{1, "two", 3}, ""},
		{"no args", nil, nil, []any{}, ""},
		{"index", []any{int64(1), "two", int64(3)}, map[string]any{"index": int64(1)}, "two", ""},
		{"negative index", []any{int64(1), "two", int64(3)}, map[string]any{"index": int64(-1)}, 3, ""},
		{"null index", []any{int64(1)}, map[string]any{"index": nil}, []any{1}, ""},
		{"index out of range", []any{int64(1)}, map[string]any{"index": int64(1)}, nil, "IndexError"},
		{"negative index out of range", []any{int64(1)}, map[string]any{"index": int64(-2)}, nil, "IndexError"},
		{"index not an int", []any{int64(1)}, map[string]any{"index": "0"}, nil, "TypeError"},
	}
	mux := worker.NewServeMux()
	w := startWorker(t, mux, worker.Config{})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			msg := newMsg("celery.accumulate", tt.args...)
			msg.Kwargs = tt.kwargs
			meta := w.result(t, w.send(t, msg))
			if tt.wantExc != "" {
				e, ok := protocol.ParseExceptionInfo(meta.Result)
				if meta.Status != protocol.StateFailure || !ok || e.Type != tt.wantExc {
					t.Fatalf("got %s %v, want FAILURE %s", meta.Status, meta.Result, tt.wantExc)
				}
				return
			}
			if meta.Status != protocol.StateSuccess {
				t.Fatalf("state = %s (%v), want SUCCESS", meta.Status, meta.Result)
			}
			assertJSONEqual(t, "result", meta.Result, tt.want)
		})
	}
}
