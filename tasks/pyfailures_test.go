package tasks

import (
	"testing"
	"time"

	"github.com/vhg/vhg-worker/protocol"
)

func TestPythonFailures(t *testing.T) {
	t.Parallel()
	f := NewPythonFailures()
	ev := func(kv ...string) map[string]any {
		m := map[string]any{}
		for i := 0; i+1 < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}
	observe := func(e map[string]any) (protocol.ResultMeta, bool) {
		meta, _, ok := f.Observe(e)
		return meta, ok
	}
	observe(ev("type", "worker-heartbeat", "hostname", "go@a", "sw_ident", "py-celery", "sw_impl", "vhg-worker"))
	observe(ev("type", "worker-heartbeat", "hostname", "py@b", "sw_ident", "py-celery"))

	// A canvas built by the original encode_workflow on a Python worker.
	observe(ev("type", "task-received", "hostname", "py@b", "uuid", "root1", "name", NameEncodeWorkflow, "root_id", "root1"))
	observe(ev("type", "task-received", "hostname", "py@b", "uuid", "dl1", "name", NameDownloadFile, "root_id", "root1", "parent_id", "root1"))
	observe(ev("type", "task-received", "hostname", "go@a", "uuid", "gs1", "name", NameGetVideoSize, "root_id", "root1"))
	// A canvas built by the Go encode_workflow: its errbacks report.
	observe(ev("type", "task-received", "hostname", "py@b", "uuid", "dl2", "name", NameDownloadFile, "root_id", "root2", "parent_id", "root2"))

	if _, ok := observe(ev("type", "task-failed", "hostname", "go@a", "uuid", "gs1", "exception", "ValueError('x')")); ok {
		t.Error("a failure on a Go worker was reported: the Go worker reports it itself")
	}
	if _, ok := observe(ev("type", "task-failed", "hostname", "py@b", "uuid", "dl2", "exception", "OSError('x')")); ok {
		t.Error("a failure in a Go-built canvas was reported: its errback reports it")
	}
	meta, ok := observe(ev("type", "task-failed", "hostname", "py@b", "uuid", "dl1",
		"exception", `OSError('GET http://h/a.mp4: 404 Not Found')`))
	if !ok {
		t.Fatal("a failure on a Python worker in an original canvas was not reported")
	}
	r := meta.Result.(map[string]any)
	if meta.TaskID != "root1" || meta.Status != protocol.StateFailure || r["task_id"] != "dl1" ||
		r["exc_type"] != "OSError" || r["error"] != "GET http://h/a.mp4: 404 Not Found" {
		t.Errorf("FAILURE = %+v", meta)
	}
	if _, ok := observe(ev("type", "task-failed", "hostname", "py@b", "uuid", "dl1", "exception", "OSError('x')")); ok {
		t.Error("the same workflow was reported twice")
	}

	// Forgotten after MaxAge.
	observe(ev("type", "task-received", "hostname", "py@b", "uuid", "root3", "name", NameEncodeWorkflow, "root_id", "root3"))
	f.now = func() time.Time { return time.Now().Add(25 * time.Hour) }
	f.prune(f.now())
	if _, ok := observe(ev("type", "task-failed", "hostname", "py@b", "uuid", "root3", "exception", "OSError('x')")); ok {
		t.Error("a root older than MaxAge was still known")
	}
}

func TestParseExceptionRepr(t *testing.T) {
	t.Parallel()
	for in, want := range map[string][3]string{
		`OSError('GET x: 404 Not Found')`:    {"builtins", "OSError", "GET x: 404 Not Found"},
		`ValueError("it's bad")`:             {"builtins", "ValueError", "it's bad"},
		`celery.exceptions.Boom('a')`:        {"celery.exceptions", "Boom", "a"},
		`ZeroDivisionError('division by 0')`: {"builtins", "ZeroDivisionError", "division by 0"},
		`something odd`:                      {"builtins", "Exception", "something odd"},
	} {
		got := parseExceptionRepr(in)
		if got.Module != want[0] || got.Type != want[1] || got.Message[0] != want[2] {
			t.Errorf("parseExceptionRepr(%q) = %+v, want %v", in, got, want)
		}
	}
}
