package worker_test

import (
	"context"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/vhg/vhg-worker/worker"
)

func TestServeMuxPanics(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		register  func(m *worker.ServeMux)
		wantPanic string
	}{
		{"empty name", func(m *worker.ServeMux) { m.HandleFunc("", okHandler) }, "empty task name"},
		{"nil handler", func(m *worker.ServeMux) { m.Handle("t.nil", nil) }, `nil handler for task "t.nil"`},
		{"duplicate name", func(m *worker.ServeMux) {
			m.HandleFunc("t.dup", okHandler)
			m.HandleFunc("t.dup", failHandler)
		}, `task "t.dup" registered twice`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			defer func() {
				p := recover()
				if p == nil {
					t.Fatal("no panic")
				}
				if msg, _ := p.(string); !strings.Contains(msg, tt.wantPanic) {
					t.Errorf("panic %q, want it to mention %q", p, tt.wantPanic)
				}
			}()
			tt.register(worker.NewServeMux())
		})
	}
}

func TestServeMuxNames(t *testing.T) {
	t.Parallel()
	m := worker.NewServeMux()
	for _, name := range []string{"b.task", "a.task", "c.task"} {
		m.HandleFunc(name, okHandler)
	}
	if got, want := m.Names(), []string{"a.task", "b.task", "c.task"}; !reflect.DeepEqual(got, want) {
		t.Errorf("Names() = %v, want %v", got, want)
	}
	if !m.Has("a.task") || m.Has("d.task") {
		t.Errorf("Has: a.task %t, d.task %t; want true, false", m.Has("a.task"), m.Has("d.task"))
	}

	// The Server adds Celery's builtins it does not find registered.
	worker.NewServer(worker.Config{}, nil, nil, m, discardLogger())
	for _, builtin := range []string{"celery.accumulate", "celery.chain", "celery.chord", "celery.chord_unlock", "celery.group"} {
		if !m.Has(builtin) {
			t.Errorf("builtin %s not registered", builtin)
		}
	}
}

// TestServeMuxMiddlewareOrder checks that middleware added first is the
// outermost, across several Use calls, as with net/http wrappers.
func TestServeMuxMiddlewareOrder(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var calls []string
	record := func(s string) {
		mu.Lock()
		calls = append(calls, s)
		mu.Unlock()
	}
	named := func(name string) worker.Middleware {
		return func(next worker.Handler) worker.Handler {
			return worker.HandlerFunc(func(ctx context.Context, task *worker.Task) (any, error) {
				record(name + " in")
				defer record(name + " out")
				return next.ServeTask(ctx, task)
			})
		}
	}
	mux := worker.NewServeMux()
	mux.HandleFunc("t.task", func(context.Context, *worker.Task) (any, error) {
		record("handler")
		return "ok", nil
	})
	mux.Use(named("a"), named("b"))
	mux.Use(named("c"))
	w := startWorker(t, mux, worker.Config{})
	w.result(t, w.send(t, newMsg("t.task")))

	mu.Lock()
	defer mu.Unlock()
	want := []string{"a in", "b in", "c in", "handler", "c out", "b out", "a out"}
	if !reflect.DeepEqual(calls, want) {
		t.Errorf("calls = %q, want %q", calls, want)
	}
}
