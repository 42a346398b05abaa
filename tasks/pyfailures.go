package tasks

import (
	"strings"
	"sync"
	"time"

	"github.com/vhg/vhg-worker/protocol"
)

// PythonFailures turns the Celery events of the original Python workers
// into the FAILURE status their workflows never sent.
//
// A canvas built by the original encode_workflow (on a Python worker)
// carries no notify_failure errback: a step of it that fails on a Go
// worker is reported by the FailureStatus middleware, but one that fails
// on a Python worker was reported by nobody. Celery's task events say
// enough to close that gap: task-received gives every task's name and
// root_id, task-failed its exception. PythonFailures remembers the roots
// whose encode_workflow a Python worker received, and, when a step of one
// fails on a Python worker, returns the FAILURE status for that root, once.
// Roots built by a Go encode_workflow are left to their errbacks, and
// failures on Go workers (known by the sw_impl of their worker events) to
// the middleware.
//
// It needs task events from the Python workers (celery worker -E, or
// `celery control enable_events`) and Celery 4 or later there (root_id in
// task-received). It keeps what it learnt in memory, for MaxAge: one
// consumer only should feed it (a single-active-consumer queue), and a
// workflow whose encode_workflow was received before that consumer started
// is not covered. The zero value is not usable; use NewPythonFailures.
type PythonFailures struct {
	// MaxAge is how long a root or a step is remembered.
	MaxAge time.Duration

	mu       sync.Mutex
	now      func() time.Time
	roots    map[string]time.Time // roots of canvases built by the original encode_workflow
	steps    map[string]stepInfo  // task id -> root, for steps of those roots
	goNodes  map[string]bool      // node names of Go workers
	reported map[string]time.Time // roots already reported
	seen     int                  // events since the last pruning
}

type stepInfo struct {
	root, name string
	at         time.Time
}

// NewPythonFailures returns an empty PythonFailures that remembers for a
// day.
func NewPythonFailures() *PythonFailures {
	return &PythonFailures{
		MaxAge:   24 * time.Hour,
		now:      time.Now,
		roots:    map[string]time.Time{},
		steps:    map[string]stepInfo{},
		goNodes:  map[string]bool{},
		reported: map[string]time.Time{},
	}
}

// Observe takes one Celery event (its decoded JSON body) and returns the
// FAILURE status to publish for a workflow, with the failed task's id as
// correlation id, or ok false.
func (f *PythonFailures) Observe(e map[string]any) (meta protocol.ResultMeta, correlationID string, ok bool) {
	str := func(k string) string { s, _ := e[k].(string); return s }
	typ, host, id := str("type"), str("hostname"), str("uuid")
	f.mu.Lock()
	defer f.mu.Unlock()
	now := f.now()
	if f.seen++; f.seen >= 1000 {
		f.prune(now)
	}
	switch {
	case strings.HasPrefix(typ, "worker-"):
		if str("sw_impl") == protocol.EventSoftwareImpl {
			f.goNodes[host] = true
		}
	case typ == protocol.EventTaskReceived:
		name := str("name")
		if !strings.HasPrefix(name, namePrefix) || f.goNodes[host] {
			return
		}
		root := str("root_id")
		if name == NameEncodeWorkflow && (root == "" || root == id) {
			f.roots[id] = now
			return
		}
		if _, ok := f.roots[root]; ok {
			f.steps[id] = stepInfo{root: root, name: name, at: now}
		}
	case typ == protocol.EventTaskFailed:
		if f.goNodes[host] {
			return
		}
		root := id
		if step, known := f.steps[id]; known {
			root = step.root
		} else if _, known := f.roots[id]; !known {
			return
		}
		if _, done := f.reported[root]; done {
			return
		}
		f.reported[root] = now
		return failureStatus(root, id, parseExceptionRepr(str("exception"))), id, true
	}
	return
}

// prune forgets what is older than MaxAge.
func (f *PythonFailures) prune(now time.Time) {
	f.seen = 0
	for k, at := range f.roots {
		if now.Sub(at) > f.MaxAge {
			delete(f.roots, k)
		}
	}
	for k, s := range f.steps {
		if now.Sub(s.at) > f.MaxAge {
			delete(f.steps, k)
		}
	}
	for k, at := range f.reported {
		if now.Sub(at) > f.MaxAge {
			delete(f.reported, k)
		}
	}
}

// parseExceptionRepr reads the exception of a task-failed event, Python's
// repr of it ("OSError('GET ...: 404 Not Found')"), into its type and
// message.
func parseExceptionRepr(s string) protocol.ExceptionInfo {
	exc := protocol.ExceptionInfo{Module: "builtins", Type: "Exception", Message: []any{s}}
	open := strings.IndexByte(s, '(')
	if open <= 0 || !strings.HasSuffix(s, ")") {
		return exc
	}
	exc.Type = s[:open]
	if i := strings.LastIndexByte(exc.Type, '.'); i >= 0 {
		exc.Module, exc.Type = exc.Type[:i], exc.Type[i+1:]
	}
	inner := s[open+1 : len(s)-1]
	inner = strings.TrimSuffix(inner, ",")
	if len(inner) >= 2 && (inner[0] == '\'' || inner[0] == '"') && inner[len(inner)-1] == inner[0] {
		inner = strings.ReplaceAll(inner[1:len(inner)-1], `\'`, `'`)
	}
	exc.Message = []any{inner}
	return exc
}
