package metrics_test

import (
	"errors"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/vhg/vhg-worker/protocol"
	"github.com/vhg/vhg-worker/worker"
	"github.com/vhg/vhg-worker/worker/metrics"
	"github.com/vhg/vhg-worker/worker/metrics/metricstest"
)

type fixedStats worker.Stats

func (s fixedStats) Stats() worker.Stats { return worker.Stats(s) }

// Registered knows the tasks of these tests.
func (s fixedStats) Registered(task string) bool { return task == "add" || task == "enc" }

// value returns the value of a series (a histogram's sample count), or -1.
func value(t *testing.T, reg *prometheus.Registry, name, task string) float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	return metricstest.Value(families, name, task)
}

func TestCollectorCounts(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	c, err := metrics.New(reg, fixedStats{Active: 2, Held: 5}, metrics.Config{FFmpegTasks: []string{"enc"}})
	if err != nil {
		t.Fatal(err)
	}
	add := &protocol.Message{ID: "1", Task: "add"}
	enc := &protocol.Message{ID: "2", Task: "enc"}
	for _, e := range []worker.TaskEvent{
		{Type: protocol.EventTaskReceived, Msg: add},
		{Type: protocol.EventTaskReceived, Msg: add},
		{Type: protocol.EventTaskStarted, Msg: add},
		{Type: protocol.EventTaskSucceeded, Msg: add, Runtime: 10 * time.Millisecond},
		{Type: protocol.EventTaskFailed, Msg: add, Runtime: 20 * time.Millisecond},
		{Type: protocol.EventTaskFailed, Msg: &protocol.Message{Task: "unknown"}}, // never ran
		{Type: protocol.EventTaskRetried, Msg: add, Runtime: time.Millisecond},
		{Type: protocol.EventTaskRejected, Msg: add},
		{Type: protocol.EventTaskRevoked, Msg: add},
		{Type: protocol.EventTaskSucceeded, Msg: enc, Runtime: 3 * time.Second},
		{Type: protocol.EventTaskRevoked, Msg: enc, Terminated: true, Runtime: 1500 * time.Millisecond},
		{Type: worker.EventStoreFailed, Msg: add},
	} {
		c.ObserveTask(e)
	}
	c.BrokerDisconnected()
	for _, tc := range []struct {
		name, task string
		want       float64
	}{
		{"vhg_worker_tasks_received_total", "add", 2},
		{"vhg_worker_tasks_succeeded_total", "add", 1},
		{"vhg_worker_tasks_failed_total", "add", 1},
		{"vhg_worker_tasks_failed_total", "unknown", -1},
		{"vhg_worker_tasks_failed_total", metrics.Unregistered, 1},
		{"vhg_worker_result_store_failures_total", "add", 1},
		{"vhg_worker_tasks_retried_total", "add", 1},
		{"vhg_worker_tasks_rejected_total", "add", 1},
		{"vhg_worker_tasks_revoked_total", "add", 1},
		{"vhg_worker_tasks_revoked_total", "enc", 1},
		{"vhg_worker_task_runtime_seconds", "add", 3},
		{"vhg_worker_task_runtime_seconds", "enc", 2},
		{"vhg_worker_task_runtime_seconds", "unknown", -1},
		{"vhg_worker_ffmpeg_seconds_total", "enc", 4.5},
		{"vhg_worker_ffmpeg_seconds_total", "add", -1},
		{"vhg_worker_tasks_active", "", 2},
		{"vhg_worker_tasks_held", "", 5},
		{"vhg_worker_broker_disconnects_total", "", 1},
	} {
		if got := value(t, reg, tc.name, tc.task); got != tc.want {
			t.Errorf("%s{task=%q} = %v, want %v", tc.name, tc.task, got, tc.want)
		}
	}
	if _, err := metrics.New(reg, fixedStats{}, metrics.Config{}); err == nil {
		t.Error("registering twice on one registry is not an error")
	}
}

// TestCollectorBoundsLabels: names from messages that are not registered
// (a name that is not UTF-8, 1000 random ones) all count under one label;
// nothing panics and the number of series stays bounded.
func TestCollectorBoundsLabels(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	c, err := metrics.New(reg, fixedStats{}, metrics.Config{})
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	names := []string{"no.such\xff\xfe", "", "add\x00"}
	for range 1000 {
		b := make([]byte, 1+rng.IntN(40))
		for i := range b {
			b[i] = byte(rng.IntN(256))
		}
		names = append(names, string(b))
	}
	types := []string{protocol.EventTaskReceived, protocol.EventTaskSucceeded, protocol.EventTaskFailed,
		protocol.EventTaskRetried, protocol.EventTaskRevoked, protocol.EventTaskRejected, worker.EventStoreFailed}
	for i, name := range names {
		msg := &protocol.Message{ID: "id", Task: name}
		for _, typ := range types {
			c.ObserveTask(worker.TaskEvent{Type: typ, Msg: msg, Runtime: time.Duration(i+1) * time.Millisecond, Terminated: true})
		}
	}
	c.ObserveTask(worker.TaskEvent{Type: protocol.EventTaskSucceeded, Msg: &protocol.Message{Task: "add"}, Runtime: time.Millisecond})
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		labels := map[string]bool{}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "task" {
					labels[l.GetValue()] = true
				}
			}
		}
		for l := range labels {
			if l != metrics.Unregistered && l != "add" {
				t.Errorf("%s has a series for task=%q", f.GetName(), l)
			}
		}
	}
	if got := value(t, reg, "vhg_worker_tasks_failed_total", metrics.Unregistered); got != float64(len(names)) {
		t.Errorf("failed{task=unregistered} = %v, want %d", got, len(names))
	}
	if got := value(t, reg, "vhg_worker_tasks_succeeded_total", "add"); got != 1 {
		t.Errorf("succeeded{task=add} = %v, want 1", got)
	}
}

func TestHandler(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	if _, err := metrics.New(reg, fixedStats{}, metrics.Config{}); err != nil {
		t.Fatal(err)
	}
	var healthErr error
	srv := httptest.NewServer(metrics.Handler(reg, func() (string, error) { return "broker amqp://h:5672//", healthErr }))
	defer srv.Close()
	get := func(path string) (int, string) {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	for _, tc := range []struct {
		name     string
		health   error
		path     string
		wantCode int
		wantBody string
	}{
		{"healthy", nil, "/healthz", 200, "ok broker amqp://h:5672//\n"},
		{"broker down", errors.New("broker connection closed"), "/healthz", 503, "broker connection closed\n"},
		{"metrics", nil, "/metrics", 200, "# TYPE vhg_worker_tasks_active gauge"},
		{"elsewhere", nil, "/", 404, ""},
	} {
		healthErr = tc.health
		code, body := get(tc.path)
		if code != tc.wantCode || !strings.Contains(body, tc.wantBody) {
			t.Errorf("%s: GET %s = %d %q, want %d %q", tc.name, tc.path, code, body, tc.wantCode, tc.wantBody)
		}
	}
}
