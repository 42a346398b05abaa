package worker

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"time"
	"unicode/utf8"
)

// Handler runs one task. The returned value is stored as the task's result
// (it must be JSON-encodable by protocol.MarshalJSON); a returned error ends
// the task as FAILURE unless it is one of the flow-control errors (RetryError,
// RejectError, ErrIgnore).
type Handler interface {
	ServeTask(ctx context.Context, t *Task) (any, error)
}

// HandlerFunc adapts a function to the Handler interface.
type HandlerFunc func(ctx context.Context, t *Task) (any, error)

// ServeTask calls f(ctx, t).
func (f HandlerFunc) ServeTask(ctx context.Context, t *Task) (any, error) { return f(ctx, t) }

// TaskConfig is the per-task behaviour Celery sets with task decorator
// options. Every zero value is Celery's default.
type TaskConfig struct {
	// AcksLate acknowledges the message after the task finishes instead of
	// when it starts, so a worker crash redelivers it (Celery's acks_late).
	AcksLate bool
	// TrackStarted stores a STARTED state when the task begins.
	TrackStarted bool
	// IgnoreResult stores no result (errors neither).
	IgnoreResult bool
	// TimeLimit and SoftTimeLimit apply when the message's timelimit header
	// is null; zero means no limit.
	TimeLimit     time.Duration
	SoftTimeLimit time.Duration
	// MaxRetries bounds retries; zero means Celery's default of 3 and a
	// negative value means no limit.
	MaxRetries int
	// DefaultRetryDelay is the countdown of a retry that names none; zero
	// means Celery's default of 180 s.
	DefaultRetryDelay time.Duration
	// RateLimit is how many tasks of this name may start per second on
	// this worker (Celery's rate_limit; see RateLimit); zero means no limit.
	RateLimit float64
}

// TaskOption changes a TaskConfig when a task is registered.
type TaskOption func(*TaskConfig)

// AcksLate makes the task acknowledge its message after it ran.
func AcksLate() TaskOption { return func(c *TaskConfig) { c.AcksLate = true } }

// TrackStarted makes the task store STARTED when it begins.
func TrackStarted() TaskOption { return func(c *TaskConfig) { c.TrackStarted = true } }

// IgnoreResult makes the task store no result.
func IgnoreResult() TaskOption { return func(c *TaskConfig) { c.IgnoreResult = true } }

// TimeLimits sets the default hard and soft time limits (zero: none).
func TimeLimits(hard, soft time.Duration) TaskOption {
	return func(c *TaskConfig) { c.TimeLimit, c.SoftTimeLimit = hard, soft }
}

// MaxRetries sets how many retries the task may ask for (negative: no limit).
func MaxRetries(n int) TaskOption { return func(c *TaskConfig) { c.MaxRetries = n } }

// Middleware wraps every handler of a ServeMux.
type Middleware func(Handler) Handler

type muxEntry struct {
	handler Handler
	config  TaskConfig
	// errback is set for new-style errbacks (HandleErrback).
	errback ErrbackFunc
}

// ServeMux maps Celery task names to handlers, like http.ServeMux maps paths.
// Registering an empty or duplicate name panics: it is a programming error
// found at start-up.
type ServeMux struct {
	mu         sync.RWMutex
	entries    map[string]muxEntry
	middleware []Middleware
}

// NewServeMux returns an empty ServeMux.
func NewServeMux() *ServeMux {
	return &ServeMux{entries: make(map[string]muxEntry)}
}

// Handle registers h under the Celery task name.
func (m *ServeMux) Handle(name string, h Handler, opts ...TaskOption) {
	if name == "" {
		panic("worker: empty task name")
	}
	if !utf8.ValidString(name) {
		panic(fmt.Sprintf("worker: task name %q is not valid UTF-8", name))
	}
	if h == nil {
		panic(fmt.Sprintf("worker: nil handler for task %q", name))
	}
	var cfg TaskConfig
	for _, opt := range opts {
		opt(&cfg)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, dup := m.entries[name]; dup {
		panic(fmt.Sprintf("worker: task %q registered twice", name))
	}
	m.entries[name] = muxEntry{handler: h, config: cfg}
}

// HandleFunc registers f under the Celery task name.
func (m *ServeMux) HandleFunc(name string, f func(ctx context.Context, t *Task) (any, error), opts ...TaskOption) {
	m.Handle(name, HandlerFunc(f), opts...)
}

// Use appends middleware applied to every handler, outermost first.
func (m *ServeMux) Use(mw ...Middleware) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.middleware = append(m.middleware, mw...)
}

// lookup returns the wrapped handler and config for name.
func (m *ServeMux) lookup(name string) (Handler, TaskConfig, bool) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	e, ok := m.entries[name]
	if !ok {
		return nil, TaskConfig{}, false
	}
	h := e.handler
	for i := len(m.middleware) - 1; i >= 0; i-- {
		h = m.middleware[i](h)
	}
	return h, e.config, true
}

// config returns the current config of a registered task.
func (m *ServeMux) config(name string) (TaskConfig, bool) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	e, ok := m.entries[name]
	return e.config, ok
}

// configure changes the config of a registered task at run time (the
// rate_limit and time_limit control commands); it reports false for an
// unknown name.
func (m *ServeMux) configure(name string, change func(*TaskConfig)) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	e, ok := m.entries[name]
	if ok {
		change(&e.config)
		m.entries[name] = e
	}
	return ok
}

// Has reports whether a task name is registered.
func (m *ServeMux) Has(name string) bool {
	m.mu.RLock()
	defer m.mu.RUnlock()
	_, ok := m.entries[name]
	return ok
}

// Names returns the registered task names, sorted.
func (m *ServeMux) Names() []string {
	m.mu.RLock()
	defer m.mu.RUnlock()
	names := make([]string, 0, len(m.entries))
	for n := range m.entries {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}
