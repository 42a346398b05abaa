package worker_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/vhg/vhg-worker/protocol"
	"github.com/vhg/vhg-worker/worker"
)

// replaceMux is canvasMux plus tasks that use Task.Replace and
// Task.AddToChord:
//
//	t.replace_add(x, y)       -> replaced by t.add(x, y)
//	t.replace_chain(x)        -> replaced by chain(t.add(x, 1), t.mul(2))
//	t.replace_group(x)        -> replaced by group(t.add(x, 1), t.add(x, 2))
//	t.replace_empty()         -> replaced by an empty chain (refused)
//	t.add_to_chord(x)         -> adds t.add(x, 100) to its chord, returns x
//	t.add_chord_to_chord(x)   -> adds chord([t.add(x,1), t.add(x,2)], t.tsum), returns x
func replaceMux() *worker.ServeMux {
	mux := canvasMux()
	mux.HandleFunc("t.replace_add", func(ctx context.Context, task *worker.Task) (any, error) {
		return nil, task.Replace(ctx, sig("t.add", task.Args()...))
	})
	mux.HandleFunc("t.replace_chain", func(ctx context.Context, task *worker.Task) (any, error) {
		return nil, task.Replace(ctx, protocol.NewChain(sig("t.add", task.Args()[0], int64(1)), sig("t.mul", int64(2))))
	})
	mux.HandleFunc("t.replace_group", func(ctx context.Context, task *worker.Task) (any, error) {
		x := task.Args()[0]
		return nil, task.Replace(ctx, protocol.NewGroup(sig("t.add", x, int64(1)), sig("t.add", x, int64(2))))
	})
	mux.HandleFunc("t.replace_empty", func(ctx context.Context, task *worker.Task) (any, error) {
		return nil, task.Replace(ctx, protocol.NewChain())
	})
	mux.HandleFunc("t.add_to_chord", func(ctx context.Context, task *worker.Task) (any, error) {
		x := task.Args()[0]
		if _, err := task.AddToChord(ctx, sig("t.add", x, int64(100))); err != nil {
			return nil, err
		}
		return x, nil
	})
	mux.HandleFunc("t.add_chord_to_chord", func(ctx context.Context, task *worker.Task) (any, error) {
		x := task.Args()[0]
		inner := protocol.NewChord([]protocol.Signature{sig("t.add", x, int64(1)), sig("t.add", x, int64(2))}, sig("t.tsum"))
		if _, err := task.AddToChord(ctx, inner); err != nil {
			return nil, err
		}
		return x, nil
	})
	return mux
}

func startReplaceWorker(t *testing.T) (*testWorker, *worker.Client) {
	t.Helper()
	w := startWorker(t, replaceMux(), worker.Config{})
	return w, worker.NewClient(w.broker, worker.ClientConfig{Backend: w.backend})
}

// TestReplace checks that a replaced task's id ends with the result of its
// replacement, whatever canvas the replacement is and wherever the task
// stood (alone, in a chain, in a chord header).
func TestReplace(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		canvas func() protocol.Signature
		want   any
	}{
		{"task", func() protocol.Signature { return withID(sig("t.replace_add", int64(2), int64(3)), "result") }, int64(5)},
		{"chain", func() protocol.Signature { return withID(sig("t.replace_chain", int64(4)), "result") }, int64(10)},
		{"group", func() protocol.Signature { return withID(sig("t.replace_group", int64(1)), "result") }, []any{int64(2), int64(3)}},
		{"middle of a chain", func() protocol.Signature {
			return protocol.NewChain(sig("t.add", int64(1), int64(1)), sig("t.replace_chain"), withID(sig("t.add", int64(1)), "result"))
		}, int64(7)},
		{"chain replaced in a chain", func() protocol.Signature {
			return protocol.NewChain(sig("t.replace_chain", int64(1)), withID(sig("t.mul", int64(10)), "result"))
		}, int64(40)},
		{"chord header member", func() protocol.Signature {
			return withID(protocol.NewChord([]protocol.Signature{sig("t.replace_add", int64(1), int64(2)), sig("t.replace_group", int64(5))}, sig("t.collect")), "result")
		}, []any{[]any{int64(3), []any{int64(6), int64(7)}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			w, c := startReplaceWorker(t)
			apply(t, c, tt.canvas())
			got := w.result(t, "result")
			if got.Status != protocol.StateSuccess {
				t.Fatalf("state %s (%v), want SUCCESS", got.Status, got.Result)
			}
			assertJSONEqual(t, "result", got.Result, tt.want)
		})
	}
}

// TestReplaceMessage checks the message that replaces a task: same id,
// the task as parent, the root kept, replaced_task_nesting one higher, and
// the task's callbacks and errbacks carried over; the replaced task itself
// stores nothing.
func TestReplaceMessage(t *testing.T) {
	t.Parallel()
	w, _ := startReplaceWorker(t)
	msg := newMsg("t.replace_add", int64(2), int64(3))
	msg.ID, msg.RootID, msg.ReplacedTaskNesting = "replaced", "root", 1
	msg.Callbacks = []protocol.Signature{sig("t.collect")}
	msg.Errbacks = []protocol.Signature{sig("t.errback")}
	w.send(t, msg)
	if got := w.result(t, "replaced"); got.Result != int64(5) {
		t.Fatalf("result %v, want 5", got.Result)
	}
	adds := w.publishedTask(t, "t.add")
	if len(adds) != 1 {
		t.Fatalf("%d t.add messages, want 1", len(adds))
	}
	add := adds[0]
	if add.ID != "replaced" || add.ParentID != "replaced" || add.RootID != "root" || add.ReplacedTaskNesting != 2 {
		t.Errorf("replacement id=%s parent=%s root=%s nesting=%d, want replaced, replaced, root, 2",
			add.ID, add.ParentID, add.RootID, add.ReplacedTaskNesting)
	}
	if len(add.Callbacks) != 1 || add.Callbacks[0].Task != "t.collect" || len(add.Errbacks) != 1 || add.Errbacks[0].Task != "t.errback" {
		t.Errorf("replacement callbacks %v errbacks %v, want t.collect and t.errback", add.Callbacks, add.Errbacks)
	}
	for _, s := range states(w.backend.Backend, "replaced") {
		if s != protocol.StateSuccess {
			t.Errorf("the replaced task stored %s; only the replacement's SUCCESS is expected", s)
		}
	}
}

// TestReplaceEmptyChain checks Celery's refusal of an empty replacement.
func TestReplaceEmptyChain(t *testing.T) {
	t.Parallel()
	w, _ := startReplaceWorker(t)
	id := w.send(t, newMsg("t.replace_empty"))
	got := w.result(t, id)
	assertJSONEqual(t, "result", got.Result, excDict("celery.exceptions", "ImproperlyConfigured", "Cannot replace with an empty chain"))
}

// TestAddToChord checks that members added by a header task (a task, or a
// chord whose body joins the outer chord) are waited for by the body.
func TestAddToChord(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, task string
		want       []any
	}{
		{"task", "t.add_to_chord", []any{int64(1), int64(2), int64(101), int64(102)}},
		{"chord", "t.add_chord_to_chord", []any{int64(1), int64(2), int64(5), int64(7)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			w, c := startReplaceWorker(t)
			chord := withID(protocol.NewChord([]protocol.Signature{sig(tt.task, int64(1)), sig(tt.task, int64(2))}, sig("t.collect")), "body")
			apply(t, c, chord)
			got := w.result(t, "body")
			// The added results share their adder's group index, so only
			// the set is fixed.
			list, ok := got.Result.([]any)
			if !ok || len(list) != 1 {
				t.Fatalf("body result %v, want one list", got.Result)
			}
			results, _ := list[0].([]any)
			if len(results) != len(tt.want) {
				t.Fatalf("body got %v, want the elements of %v", results, tt.want)
			}
			for _, v := range tt.want {
				found := false
				for _, r := range results {
					found = found || r == v
				}
				if !found {
					t.Errorf("body got %v, missing %v", results, v)
				}
			}
		})
	}
}

// TestAddToChordOutsideChord checks the error outside a chord.
func TestAddToChordOutsideChord(t *testing.T) {
	t.Parallel()
	mux := worker.NewServeMux()
	errs := make(chan error, 1)
	mux.HandleFunc("t.adder", func(ctx context.Context, task *worker.Task) (any, error) {
		_, err := task.AddToChord(ctx, sig("t.adder"))
		errs <- err
		return nil, nil
	})
	w := startWorker(t, mux, worker.Config{})
	w.send(t, newMsg("t.adder"))
	select {
	case err := <-errs:
		if !errors.Is(err, worker.ErrNoChord) {
			t.Fatalf("AddToChord outside a chord: %v, want ErrNoChord", err)
		}
	case <-time.After(waitTimeout):
		t.Fatal("t.adder did not run")
	}
}

// TestNewStyleErrback checks that an errback registered with
// HandleErrback is called inline with the failed request, also for a
// chord body that fails, while other errbacks are still published with the
// failed task's id.
func TestNewStyleErrback(t *testing.T) {
	t.Parallel()
	type call struct {
		id, task string
		exc      protocol.ExceptionInfo
	}
	var mu sync.Mutex
	var calls []call
	mux := replaceMux()
	mux.HandleErrback("t.new_errback", func(_ context.Context, failed *worker.Task, exc protocol.ExceptionInfo, tb string) error {
		mu.Lock()
		defer mu.Unlock()
		calls = append(calls, call{failed.ID(), failed.Name(), exc})
		if tb == "" {
			return errors.New("no traceback")
		}
		return nil
	})
	w := startWorker(t, mux, worker.Config{})
	c := worker.NewClient(w.broker, worker.ClientConfig{Backend: w.backend})

	failing := withID(sig("t.fail"), "failed")
	failing.Options.LinkError = []protocol.Signature{sig("t.new_errback"), withID(sig("t.errback"), "old")}
	apply(t, c, failing)
	if got := w.result(t, "old"); !jsonEqual(got.Result, []any{"failed"}) {
		t.Errorf("old-style errback got %v, want [failed]", got.Result)
	}
	chord := withID(protocol.NewChord([]protocol.Signature{sig("t.fail")}, sig("t.collect")), "body")
	chord.Options.LinkError = []protocol.Signature{sig("t.new_errback")}
	apply(t, c, chord)
	w.result(t, "body")

	// The errback of the chord body runs after its FAILURE is stored.
	for deadline := time.Now().Add(waitTimeout); ; time.Sleep(5 * time.Millisecond) {
		mu.Lock()
		n := len(calls)
		mu.Unlock()
		if n >= 2 || time.Now().After(deadline) {
			break
		}
	}
	mu.Lock()
	defer mu.Unlock()
	for _, want := range []call{{"failed", "t.fail", protocol.ExceptionInfo{Module: "builtins", Type: "ValueError"}},
		{"body", "t.collect", protocol.ExceptionInfo{Module: "celery.exceptions", Type: "ChordError"}}} {
		found := false
		for _, got := range calls {
			found = found || (got.id == want.id && got.task == want.task && got.exc.Type == want.exc.Type && got.exc.Module == want.exc.Module)
		}
		if !found {
			t.Errorf("no errback call for %s %s with %s.%s; calls %+v", want.task, want.id, want.exc.Module, want.exc.Type, calls)
		}
	}
	if n := len(w.publishedTask(t, "t.new_errback")); n != 0 {
		t.Errorf("the new-style errback was also published %d times", n)
	}
}

func jsonEqual(a, b any) bool {
	ja, err1 := protocol.MarshalJSON(a)
	jb, err2 := protocol.MarshalJSON(b)
	return err1 == nil && err2 == nil && string(ja) == string(jb)
}

// TestRetryOptions checks RetryMaxRetries and RetryAt.
func TestRetryOptions(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		opts   []worker.RetryOption
		runs   int
		status protocol.State
	}{
		{"max_retries=1 allows one retry", []worker.RetryOption{worker.RetryMaxRetries(1)}, 2, protocol.StateFailure},
		{"max_retries=0 allows none", []worker.RetryOption{worker.RetryMaxRetries(0)}, 1, protocol.StateFailure},
		{"eta now, task default of 3", []worker.RetryOption{worker.RetryAt(time.Time{})}, 4, protocol.StateFailure},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			mux := worker.NewServeMux()
			var mu sync.Mutex
			runs := 0
			mux.HandleFunc("t.retry", func(_ context.Context, task *worker.Task) (any, error) {
				mu.Lock()
				runs++
				mu.Unlock()
				return nil, task.Retry(errors.New("again"), time.Millisecond, tt.opts...)
			})
			w := startWorker(t, mux, worker.Config{})
			id := w.send(t, newMsg("t.retry"))
			if got := w.result(t, id); got.Status != tt.status {
				t.Fatalf("state %s, want %s", got.Status, tt.status)
			}
			mu.Lock()
			defer mu.Unlock()
			if runs != tt.runs {
				t.Errorf("ran %d times, want %d", runs, tt.runs)
			}
		})
	}
}

// TestSoftTimeLimitCaught checks that a task that sees
// ErrSoftTimeLimitExceeded as its context's cause and returns normally
// succeeds, and one that returns the error fails with
// SoftTimeLimitExceeded.
func TestSoftTimeLimitCaught(t *testing.T) {
	t.Parallel()
	mux := worker.NewServeMux()
	mux.HandleFunc("t.guarded", func(ctx context.Context, _ *worker.Task) (any, error) {
		<-ctx.Done()
		if errors.Is(context.Cause(ctx), worker.ErrSoftTimeLimitExceeded) {
			return int64(0), nil
		}
		return nil, context.Cause(ctx)
	})
	mux.HandleFunc("t.unguarded", func(ctx context.Context, _ *worker.Task) (any, error) {
		<-ctx.Done()
		return nil, context.Cause(ctx)
	})
	w := startWorker(t, mux, worker.Config{})
	guarded, unguarded := newMsg("t.guarded"), newMsg("t.unguarded")
	for _, m := range []*protocol.Message{guarded, unguarded} {
		m.TimeLimit.Soft = 20 * time.Millisecond
		w.send(t, m)
	}
	if got := w.result(t, guarded.ID); got.Status != protocol.StateSuccess || got.Result != int64(0) {
		t.Errorf("guarded: %s %v, want SUCCESS 0", got.Status, got.Result)
	}
	got := w.result(t, unguarded.ID)
	if exc, ok := protocol.ParseExceptionInfo(got.Result); !ok || exc.Type != "SoftTimeLimitExceeded" {
		t.Errorf("unguarded: %s %v, want FAILURE SoftTimeLimitExceeded", got.Status, got.Result)
	}
}

// TestRequestAccessors checks what a task reads of its request.
func TestRequestAccessors(t *testing.T) {
	t.Parallel()
	mux := worker.NewServeMux()
	seen := make(chan map[string]any, 1)
	mux.HandleFunc("t.request", func(_ context.Context, task *worker.Task) (any, error) {
		index, ok := task.GroupIndex()
		seen <- map[string]any{
			"parent": task.ParentID(), "root": task.RootID(), "group": task.GroupID(), "index": index, "has_index": ok,
			"retries": task.Retries(), "priority": task.Priority(), "props": task.Properties(),
		}
		return nil, nil
	})
	w := startWorker(t, mux, worker.Config{})
	msg := newMsg("t.request")
	index := 2
	msg.ParentID, msg.RootID, msg.Group, msg.GroupIndex, msg.Priority, msg.Retries = "p", "r", "g", &index, 7, 1
	w.send(t, msg)
	select {
	case got := <-seen:
		props, _ := got["props"].(map[string]any)
		if got["parent"] != "p" || got["root"] != "r" || got["group"] != "g" || got["index"] != 2 || got["has_index"] != true ||
			got["retries"] != 1 || got["priority"] != 7 || props["priority"] != 7 || props["correlation_id"] != msg.ID ||
			props["content_type"] != "application/json" {
			t.Errorf("request seen as %v", got)
		}
	case <-time.After(waitTimeout):
		t.Fatal("t.request did not run")
	}
}
