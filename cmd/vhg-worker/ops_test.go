//go:build integration

package main

// Ops tests: the tools Celery operators use, run against an in-process Go
// worker over the real RabbitMQ and Redis. `celery inspect`, `celery
// control` and `celery status` are Python Celery 5.2.6's own command line;
// the event receiver is celery's app.events.Receiver feeding
// celery.events.state (testdata/python/ops.py), as Flower does. Flower
// itself is not installable here (no Debian package, no PyPI).

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/sirupsen/logrus"
	"github.com/vhg/vhg-worker/protocol"
	"github.com/vhg/vhg-worker/worker"
	"github.com/vhg/vhg-worker/worker/metrics/metricstest"
	"github.com/vhg/vhg-worker/worker/rabbitmq"
)

// opsWorker is an in-process Go worker with events, remote control and
// metrics on, consuming its own queue under its own node name.
type opsWorker struct {
	queue, node string
	srv         *worker.Server
	broker      *rabbitmq.Broker
	ops         *ops
	client      *worker.Client
}

// startOpsWorker starts an opsWorker on a fresh queue; before it runs,
// beforeRun (if set) sees the ops set up but the worker not consuming yet.
func startOpsWorker(t *testing.T, concurrency int, cfg opsConfig, beforeRun func(o *ops)) *opsWorker {
	t.Helper()
	w := &opsWorker{queue: uniqueQueue(t)}
	w.node = "go-" + w.queue + "@ops"
	cfg.log = testLogger(t)
	if cfg.metricsAddr == "" {
		cfg.metricsAddr = "127.0.0.1:0"
	}
	var backend worker.Backend
	// Without native delayed delivery a countdown task waits in the
	// worker, where inspect scheduled lists it; with it, the task waits
	// in the broker until its ETA (as with Celery 5.5+ on quorum queues).
	w.srv, w.broker, backend = startGoWorker(t, w.queue, goWorkerOptions{
		node: w.node, concurrency: concurrency, noNativeDelay: true,
		setup: func(ctx context.Context, srv *worker.Server, broker *rabbitmq.Broker) {
			o, err := newOps(srv, broker, cfg)
			if err != nil {
				t.Fatalf("set up ops: %v", err)
			}
			o.start(ctx)
			t.Cleanup(o.stop) // runs after the worker has stopped
			if beforeRun != nil {
				beforeRun(o)
			}
			w.ops = o
		},
	})
	w.client = worker.NewClient(w.broker, worker.ClientConfig{DefaultQueue: w.queue, Backend: backend})
	return w
}

func testLogger(t *testing.T) *logrus.Logger {
	log := logrus.New()
	log.SetLevel(logrus.WarnLevel)
	log.SetOutput(testWriter{t})
	return log
}

// send publishes a task to the worker's queue with a chosen id.
func (w *opsWorker) send(t *testing.T, id, task string, args ...any) {
	t.Helper()
	sig := protocol.Signature{Task: task, Args: args, Options: protocol.Options{TaskID: id}}
	if _, err := w.client.Apply(context.Background(), sig); err != nil {
		t.Fatalf("send %s: %v", task, err)
	}
}

// waitActive waits until the task runs on the worker.
func (w *opsWorker) waitActive(t *testing.T, id string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		for _, r := range w.srv.Active() {
			if r.ID == id {
				return
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("task %s not running after 15 s", id)
}

// celery runs Python Celery's command line (`python3 -m celery -A interop
// ARGS...`) and returns its stdout.
func celery(t *testing.T, queue string, args ...string) string {
	t.Helper()
	return python(t, queue, append([]string{"-m", "celery", "-A", "interop"}, args...)...)
}

// python runs /usr/bin/python3 ARGS in testdata/python with the interop
// environment and returns its stdout.
func python(t *testing.T, queue string, args ...string) string {
	t.Helper()
	out, stderr, err := runPython(queue, args...)
	if err != nil {
		t.Fatalf("python3 %s: %v\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), err, out, stderr)
	}
	t.Logf("python3 %s:\n%s", strings.Join(args, " "), out)
	return out
}

func runPython(queue string, args ...string) (stdout, stderr string, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, pythonBin, args...)
	cmd.Dir = pythonDir
	cmd.Env = append(os.Environ(),
		"CELERY_BROKER_URL="+testBrokerURL,
		"CELERY_RESULT_BACKEND="+testRedisURL,
		"INTEROP_QUEUE="+queue)
	var errBuf bytes.Buffer
	cmd.Stderr = &errBuf
	out, err := cmd.Output()
	return string(out), errBuf.String(), err
}

// inspectJSON runs `celery inspect CMD -d NODE -j` and returns the node's
// reply.
func (w *opsWorker) inspectJSON(t *testing.T, command string) any {
	t.Helper()
	out := celery(t, w.queue, "inspect", command, "-d", w.node, "-j", "--timeout", "5")
	var replies map[string]any
	if err := json.Unmarshal([]byte(out), &replies); err != nil {
		t.Fatalf("inspect %s printed %q: %v", command, out, err)
	}
	reply, ok := replies[w.node]
	if !ok {
		t.Fatalf("inspect %s: no reply from %s in %s", command, w.node, out)
	}
	return reply
}

// opsResult runs ops.py result ID: the outcome a Python client sees.
func opsResult(t *testing.T, queue, id string) map[string]any {
	t.Helper()
	var got map[string]any
	out := python(t, queue, "ops.py", "result", id)
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("ops.py result printed %q: %v", out, err)
	}
	return got
}

func TestOpsInspect(t *testing.T) {
	t.Parallel()
	requireServices(t)
	w := startOpsWorker(t, 1, opsConfig{}, nil)

	wantJSON(t, "inspect ping", w.inspectJSON(t, "ping"), `{"ok": "pong"}`)
	wantJSON(t, "inspect registered", w.inspectJSON(t, "registered"),
		`["interop.add", "interop.fail", "interop.retry_once", "interop.sleep", "interop.tsum", "interop.whoami"]`)

	// One slot: sleep runs, add waits for the slot, the countdown task
	// waits for its ETA. The sleep outlasts every inspect below (each
	// starts a Python process, slow on a busy CI machine) and is
	// terminated once stats has been read.
	sleepID, addID, laterID := worker.NewTaskID(), worker.NewTaskID(), worker.NewTaskID()
	w.send(t, sleepID, "interop.sleep", int64(300))
	w.waitActive(t, sleepID)
	w.send(t, addID, "interop.add", int64(1), int64(2))
	countdown := 60.0
	if _, err := w.client.Apply(context.Background(), protocol.Signature{Task: "interop.add", Args: []any{int64(3)},
		Options: protocol.Options{TaskID: laterID, Countdown: &countdown}}); err != nil {
		t.Fatal(err)
	}

	active := w.inspectJSON(t, "active").([]any)
	if len(active) != 1 {
		t.Fatalf("inspect active = %v, want the sleep task", active)
	}
	info := active[0].(map[string]any)
	wantJSON(t, "active id, name, args", []any{info["id"], info["name"], info["type"], info["args"], info["kwargs"], info["hostname"], info["acknowledged"]},
		fmt.Sprintf(`[%q, "interop.sleep", "interop.sleep", [300], {}, %q, true]`, sleepID, w.node))
	wantJSON(t, "active delivery_info", info["delivery_info"], fmt.Sprintf(`{"exchange": "", "routing_key": %q, "priority": 0, "redelivered": false}`, w.queue))
	if start, _ := info["time_start"].(float64); time.Since(time.Unix(int64(start), 0)) > time.Minute {
		t.Errorf("active time_start = %v, want about now", info["time_start"])
	}
	if pid, _ := info["worker_pid"].(float64); int(pid) != os.Getpid() {
		t.Errorf("active worker_pid = %v, want %d", info["worker_pid"], os.Getpid())
	}

	waitFor(t, "add reserved", func() bool { return len(w.srv.Reserved()) == 1 })
	reserved := w.inspectJSON(t, "reserved").([]any)
	if len(reserved) != 1 || reserved[0].(map[string]any)["id"] != addID {
		t.Errorf("inspect reserved = %v, want the add task %s", reserved, addID)
	}
	scheduled := w.inspectJSON(t, "scheduled").([]any)
	if len(scheduled) != 1 {
		t.Fatalf("inspect scheduled = %v, want the countdown task", scheduled)
	}
	entry := scheduled[0].(map[string]any)
	if entry["request"].(map[string]any)["id"] != laterID {
		t.Errorf("scheduled request = %v, want %s", entry["request"], laterID)
	}
	if eta, err := time.Parse(time.RFC3339Nano, fmt.Sprint(entry["eta"])); err != nil || time.Until(eta) < 30*time.Second {
		t.Errorf("scheduled eta = %v (%v), want about a minute from now", entry["eta"], err)
	}

	stats := w.inspectJSON(t, "stats").(map[string]any)
	wantJSON(t, "stats total", stats["total"], `{"interop.sleep": 1}`)
	wantJSON(t, "stats pool max-concurrency", field(t, stats, "pool", "max-concurrency"), `1`)
	wantJSON(t, "stats prefetch_count", stats["prefetch_count"], `4`)
	wantJSON(t, "stats broker", []any{field(t, stats, "broker", "transport"), field(t, stats, "broker", "hostname"), field(t, stats, "broker", "port")}, `["amqp", "127.0.0.1", 5672]`)
	if pid, _ := stats["pid"].(float64); int(pid) != os.Getpid() {
		t.Errorf("stats pid = %v, want %d", stats["pid"], os.Getpid())
	}
	if _, err := fmt.Sscan(fmt.Sprint(stats["clock"]), new(uint64)); err != nil {
		t.Errorf("stats clock = %v, want a number as a string", stats["clock"])
	}
	if _, ok := field(t, stats, "rusage", "maxrss").(float64); !ok {
		t.Errorf("stats rusage = %v", stats["rusage"])
	}
	if !w.srv.Terminate(sleepID) {
		t.Errorf("the sleep task %s was not running when stats had been read", sleepID)
	}

	queues := w.inspectJSON(t, "active_queues").([]any)
	if len(queues) != 1 || field(t, queues[0].(map[string]any), "name") != w.queue ||
		field(t, queues[0].(map[string]any), "exchange", "type") != "direct" {
		t.Errorf("inspect active_queues = %v", queues)
	}
	wantJSON(t, "conf task_default_queue", field(t, w.inspectJSON(t, "conf").(map[string]any), "task_default_queue"), fmt.Sprintf("%q", w.queue))

	status := celery(t, w.queue, "status", "--timeout", "3")
	if !strings.Contains(status, "->  "+w.node+": OK") {
		t.Errorf("celery status does not show %s:\n%s", w.node, status)
	}

	var nodes struct{ Nodes []string }
	for _, m := range []struct{ pattern, matcher string }{
		{"go-interop-testopsinspect-*@ops", "glob"},
		{`go-interop-testopsinspect-[0-9a-f]{8}@`, "pcre"},
	} {
		json.Unmarshal([]byte(python(t, w.queue, "ops.py", "ping", m.pattern, m.matcher)), &nodes)
		if !slices.Contains(nodes.Nodes, w.node) {
			t.Errorf("ping with %s pattern %q: replies from %v, want %s", m.matcher, m.pattern, nodes.Nodes, w.node)
		}
	}
}

func TestOpsRevoke(t *testing.T) {
	t.Parallel()
	requireServices(t)
	w := startOpsWorker(t, 1, opsConfig{}, nil)

	// A queued task: it waits for the single slot, is revoked there, and
	// is discarded just before it would run. The blocker holds the slot
	// until the revoke is in, however slow the Python CLI is to start.
	//
	// Every control command gets --timeout 5: the request expires after
	// the timeout (1 s by default), and a worker on a busy CI machine may
	// take longer than that to read it.
	blockerID, queuedID := worker.NewTaskID(), worker.NewTaskID()
	w.send(t, blockerID, "interop.sleep", int64(300))
	w.waitActive(t, blockerID)
	w.send(t, queuedID, "interop.add", int64(1), int64(1))
	out := celery(t, w.queue, "control", "revoke", queuedID, "-d", w.node, "--timeout", "5")
	if !strings.Contains(out, "tasks "+queuedID+" flagged as revoked") {
		t.Errorf("celery control revoke printed:\n%s", out)
	}
	if !w.srv.Terminate(blockerID) {
		t.Errorf("the blocker %s was not running when the revoke was in", blockerID)
	}
	wantJSON(t, "revoked queued task", opsResult(t, w.queue, queuedID),
		`{"state": "REVOKED", "exc_type": "TaskRevokedError", "exc_args": ["revoked"]}`)

	// A task revoked before it arrives is discarded on arrival.
	earlyID := worker.NewTaskID()
	celery(t, w.queue, "control", "revoke", earlyID, "-d", w.node, "--timeout", "5")
	w.send(t, earlyID, "interop.add", int64(2), int64(2))
	wantJSON(t, "task revoked before arrival", opsResult(t, w.queue, earlyID),
		`{"state": "REVOKED", "exc_type": "TaskRevokedError", "exc_args": ["revoked"]}`)
	revoked := w.inspectJSON(t, "revoked").([]any)
	if !slices.Contains(revoked, any(queuedID)) || !slices.Contains(revoked, any(earlyID)) {
		t.Errorf("inspect revoked = %v, want %s and %s", revoked, queuedID, earlyID)
	}

	// A running task is terminated (Celery 5.2's CLI spells revoke
	// --terminate as `control terminate SIGNAL ID`).
	runningID := worker.NewTaskID()
	w.send(t, runningID, "interop.sleep", int64(30))
	w.waitActive(t, runningID)
	start := time.Now()
	out = celery(t, w.queue, "control", "terminate", "SIGTERM", runningID, "-d", w.node, "--timeout", "5")
	if !strings.Contains(out, "terminate: "+runningID) {
		t.Errorf("celery control terminate printed:\n%s", out)
	}
	wantJSON(t, "terminated task", opsResult(t, w.queue, runningID),
		`{"state": "REVOKED", "exc_type": "TaskRevokedError", "exc_args": ["terminated"]}`)
	if took := time.Since(start); took > 15*time.Second {
		t.Errorf("terminated task ended after %s, not at once", took)
	}

	// The worker goes on with the next task.
	afterID := worker.NewTaskID()
	w.send(t, afterID, "interop.add", int64(20), int64(22))
	wantJSON(t, "task after the revokes", opsResult(t, w.queue, afterID), `{"state": "SUCCESS", "result": 42}`)
}

func TestOpsEventsSeenByCelery(t *testing.T) {
	t.Parallel()
	requireServices(t)
	queue := uniqueQueue(t)
	node := "go-" + queue + "@ops"

	// The receiver comes first so that it sees worker-online; it sends
	// interop.add(2, 2) once its queue is bound, and the worker starts after.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, pythonBin, "ops.py", "events", node)
	cmd.Dir = pythonDir
	cmd.Env = append(os.Environ(), "CELERY_BROKER_URL="+testBrokerURL, "CELERY_RESULT_BACKEND="+testRedisURL, "INTEROP_QUEUE="+queue)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stdout bytes.Buffer
	cmd.Stdout = &stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ready := make(chan struct{})
	var logTail bytes.Buffer
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			if sc.Text() == "ready" {
				close(ready)
				io.Copy(&logTail, stderr)
				return
			}
			logTail.WriteString(sc.Text() + "\n")
		}
	}()
	select {
	case <-ready:
	case <-ctx.Done():
		t.Fatalf("event receiver not ready: %s", logTail.String())
	}

	startGoWorker(t, queue, goWorkerOptions{node: node, setup: func(ctx context.Context, srv *worker.Server, broker *rabbitmq.Broker) {
		o, err := newOps(srv, broker, opsConfig{taskEvents: true, log: testLogger(t)})
		if err != nil {
			t.Fatal(err)
		}
		o.start(ctx)
		t.Cleanup(o.stop)
	}})
	if err := cmd.Wait(); err != nil {
		t.Fatalf("ops.py events: %v\n%s", err, logTail.String())
	}
	t.Logf("ops.py events: %s", stdout.String())
	var got struct {
		TaskID        string `json:"task_id"`
		Events        []map[string]any
		WorkerAlive   bool   `json:"worker_alive"`
		WorkerSWIdent string `json:"worker_sw_ident"`
		TaskState     string `json:"task_state"`
		TaskResult    string `json:"task_result"`
		TaskName      string `json:"task_name"`
		TaskArgs      string `json:"task_args"`
	}
	if err := json.Unmarshal(stdout.Bytes(), &got); err != nil {
		t.Fatalf("ops.py events printed %q: %v", stdout.String(), err)
	}
	if !got.WorkerAlive || got.WorkerSWIdent != "py-celery" {
		t.Errorf("celery's event state: worker alive %v, sw_ident %q", got.WorkerAlive, got.WorkerSWIdent)
	}
	if got.TaskState != "SUCCESS" || got.TaskResult != "4" || got.TaskName != "interop.add" || got.TaskArgs != "[2, 2]" {
		t.Errorf("celery's event state: task %s %s%s -> %q", got.TaskState, got.TaskName, got.TaskArgs, got.TaskResult)
	}
	var types []string
	var last float64
	for _, e := range got.Events {
		types = append(types, e["type"].(string))
		clock, _ := e["clock"].(float64)
		if clock <= last {
			t.Errorf("event clock %v after %v: not increasing", clock, last)
		}
		last = clock
	}
	var taskTypes []string
	for _, e := range got.Events {
		if e["uuid"] == got.TaskID {
			taskTypes = append(taskTypes, e["type"].(string))
		}
	}
	wantJSON(t, "task events", taskTypes, `["task-received", "task-started", "task-succeeded"]`)
	if types[0] != "worker-online" || !slices.Contains(types, "worker-heartbeat") {
		t.Errorf("events = %v, want worker-online first and a heartbeat", types)
	}
}

// TestOpsEventsOnTheWire reads the worker's events from the celeryev
// exchange itself (routing keys, AMQP properties) and stops the worker
// with `celery control shutdown`: worker-offline comes last.
func TestOpsEventsOnTheWire(t *testing.T) {
	t.Parallel()
	requireServices(t)
	queue := uniqueQueue(t)
	node := "go-" + queue + "@ops"

	conn, err := amqp.Dial(testBrokerURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	if err := ch.ExchangeDeclare(protocol.EventExchange, amqp.ExchangeTopic, true, false, false, false, nil); err != nil {
		t.Fatalf("declare celeryev as Celery does: %v", err)
	}
	q, err := ch.QueueDeclare("", false, true, true, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"worker.#", "task.#"} {
		if err := ch.QueueBind(q.Name, key, protocol.EventExchange, false, nil); err != nil {
			t.Fatal(err)
		}
	}
	msgs, err := ch.Consume(q.Name, "", true, true, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}

	broker, err := rabbitmq.Dial(rabbitmq.Config{URL: testBrokerURL})
	if err != nil {
		t.Fatal(err)
	}
	defer broker.Close()
	srv := worker.NewServer(worker.Config{Queues: []string{queue}, Concurrency: 1, NodeName: node}, broker, nil, interopMux(), testLogger(t))
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	o, err := newOps(srv, broker, opsConfig{taskEvents: true, shutdown: stop, log: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	o.start(ctx)
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()

	client := worker.NewClient(broker, worker.ClientConfig{DefaultQueue: queue})
	failID := worker.NewTaskID()
	if _, err := client.Apply(ctx, protocol.Signature{Task: "interop.fail", Options: protocol.Options{TaskID: failID}}); err != nil {
		t.Fatal(err)
	}
	var events []map[string]any
	next := func(want string) map[string]any {
		t.Helper()
		timeout := time.After(15 * time.Second)
		for {
			select {
			case m := <-msgs:
				v, err := protocol.UnmarshalJSON(m.Body)
				if err != nil {
					t.Fatalf("event body %s: %v", m.Body, err)
				}
				e, ok := v.(map[string]any)
				if !ok || e["hostname"] != node {
					// Another worker on the shared broker: a Python worker
					// sends its task events in batches (a list).
					continue
				}
				if m.RoutingKey != strings.ReplaceAll(e["type"].(string), "-", ".") || m.DeliveryMode != amqp.Transient ||
					m.ContentType != "application/json" || m.Headers["hostname"] != node {
					t.Errorf("event %s: routing key %q, delivery mode %d, content type %q, headers %v",
						e["type"], m.RoutingKey, m.DeliveryMode, m.ContentType, m.Headers)
				}
				events = append(events, e)
				if e["type"] == want {
					return e
				}
			case <-timeout:
				t.Fatalf("no %s event; got %v", want, events)
			}
		}
	}
	online := next("worker-online")
	for _, k := range []string{"hostname", "utcoffset", "pid", "clock", "freq", "active", "processed", "loadavg", "sw_ident", "sw_ver", "sw_sys", "timestamp", "type"} {
		if _, ok := online[k]; !ok {
			t.Errorf("worker-online has no %q: %v", k, online)
		}
	}
	failed := next("task-failed")
	if failed["uuid"] != failID || failed["exception"] != "ValueError('boom')" || !strings.Contains(fmt.Sprint(failed["traceback"]), "ValueError: boom") {
		t.Errorf("task-failed = %v", failed)
	}

	// Like a Python worker, the Go worker stops without replying, so the
	// command says "No nodes replied" and exits with 69 (EX_UNAVAILABLE).
	// The request expires after --timeout (1 s by default, which a busy CI
	// machine can exceed).
	_, stderr, err := runPython(queue, "-m", "celery", "-A", "interop", "control", "shutdown", "-d", node, "--timeout", "5")
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 69 || !strings.Contains(stderr, "No nodes replied") {
		t.Errorf("celery control shutdown: %v, %s; want exit status 69 as with a Python worker", err, stderr)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("worker stopped with %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("worker still running 15 s after celery control shutdown")
	}
	o.stop()
	next("worker-offline")
}

func TestOpsMetricsAndHealth(t *testing.T) {
	t.Parallel()
	requireServices(t)
	var before int
	w := startOpsWorker(t, 2, opsConfig{ffmpegTasks: []string{"interop.sleep"}}, func(o *ops) {
		before, _ = httpGet(t, o.metricsURL()+"/healthz")
	})
	if before != http.StatusServiceUnavailable {
		t.Errorf("/healthz before the worker consumes: %d, want 503", before)
	}
	waitFor(t, "/healthz 200", func() bool { code, _ := httpGet(t, w.ops.metricsURL()+"/healthz"); return code == http.StatusOK })

	for i := range 3 {
		w.send(t, worker.NewTaskID(), "interop.add", int64(i), int64(1))
	}
	w.send(t, worker.NewTaskID(), "interop.fail")
	w.send(t, worker.NewTaskID(), "interop.sleep", int64(1))
	var families map[string]*dto.MetricFamily
	waitFor(t, "the tasks counted", func() bool {
		families = scrape(t, w.ops.metricsURL()+"/metrics")
		return metricValue(families, "vhg_worker_tasks_succeeded_total", "interop.add") == 3 &&
			metricValue(families, "vhg_worker_tasks_failed_total", "interop.fail") == 1 &&
			metricValue(families, "vhg_worker_tasks_succeeded_total", "interop.sleep") == 1
	})
	for _, c := range []struct {
		name, task string
		want       float64
	}{
		{"vhg_worker_tasks_received_total", "interop.add", 3},
		{"vhg_worker_tasks_received_total", "interop.fail", 1},
		{"vhg_worker_tasks_active", "", 0},
		{"vhg_worker_tasks_held", "", 0},
		{"vhg_worker_broker_disconnects_total", "", 0},
	} {
		if got := metricValue(families, c.name, c.task); got != c.want {
			t.Errorf("%s{task=%q} = %v, want %v", c.name, c.task, got, c.want)
		}
	}
	if got := metricValue(families, "vhg_worker_task_runtime_seconds", "interop.add"); got != 3 {
		t.Errorf("runtime histogram count for interop.add = %v, want 3", got)
	}
	// At least the second it slept; no upper bound, as a busy CI machine
	// can stall the test for seconds. Tasks not named as ffmpeg tasks
	// count nothing.
	if got := metricValue(families, "vhg_worker_ffmpeg_seconds_total", "interop.sleep"); got < 1 {
		t.Errorf("ffmpeg seconds of interop.sleep(1) = %v, want at least 1", got)
	}
	if got := metricValue(families, "vhg_worker_ffmpeg_seconds_total", "interop.add"); got != -1 {
		t.Errorf("ffmpeg seconds of interop.add = %v, want no series: it is not an ffmpeg task", got)
	}
	if _, ok := families["go_goroutines"]; !ok {
		t.Error("no Go runtime metrics")
	}
}

func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// scrape reads /metrics with Prometheus' own text parser.
func scrape(t *testing.T, url string) map[string]*dto.MetricFamily {
	t.Helper()
	code, body := httpGet(t, url)
	if code != http.StatusOK {
		t.Fatalf("GET %s: %d %s", url, code, body)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("parse %s: %v\n%s", url, err, body)
	}
	return families
}

// metricValue is metricstest.Value on a scraped page.
func metricValue(families map[string]*dto.MetricFamily, name, task string) float64 {
	if f, ok := families[name]; ok {
		return metricstest.Value([]*dto.MetricFamily{f}, name, task)
	}
	return -1
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
