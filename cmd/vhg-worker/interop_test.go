//go:build integration

package main

// Interop tests: real Python Celery 5.2.6 (/usr/bin/python3) against the Go
// worker over the real RabbitMQ and Redis. The Python side lives in
// testdata/python: interop.py (the app and its tasks) and scenarios.py (the
// client scenarios, each printing one JSON document).
//
// The Go worker runs in-process with the same test tasks as interop.py
// (interop.add, interop.tsum, ...), on its own queue per test. Nothing here
// skips: a missing service or Python Celery is a failure that says how to
// get it (make setup).

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/sirupsen/logrus"
	"github.com/vhg/vhg-worker/protocol"
	"github.com/vhg/vhg-worker/tasks"
	"github.com/vhg/vhg-worker/worker"
	"github.com/vhg/vhg-worker/worker/rabbitmq"
	"github.com/vhg/vhg-worker/worker/redis"
)

const (
	testBrokerURL = "amqp://guest:guest@127.0.0.1:5672//"
	testRedisURL  = "redis://127.0.0.1:6379/0"
	pythonBin     = "/usr/bin/python3"
)

var pythonDir = filepath.Join("..", "..", "testdata", "python")

// requireServices fails the test when RabbitMQ, Redis or Python Celery is
// missing, saying how to get them.
func requireServices(t *testing.T) {
	t.Helper()
	for _, addr := range []string{"127.0.0.1:5672", "127.0.0.1:6379"} {
		c, err := net.DialTimeout("tcp", addr, 2*time.Second)
		if err != nil {
			t.Fatalf("service at %s unreachable (%v): run `make setup` to install and start RabbitMQ and Redis", addr, err)
		}
		c.Close()
	}
	out, err := exec.Command(pythonBin, "-c", "import celery; print(celery.__version__)").CombinedOutput()
	if err != nil {
		t.Fatalf("Python Celery is not importable by %s (%v: %s): run `make setup`", pythonBin, err, out)
	}
}

// uniqueQueue returns a fresh queue name and deletes the queue (and the
// exchange Celery declares with it) when the test ends.
func uniqueQueue(t *testing.T) string {
	t.Helper()
	name := "interop-" + strings.ReplaceAll(strings.ToLower(t.Name()), "/", "-") + "-" + worker.NewTaskID()[:8]
	t.Cleanup(func() {
		conn, err := amqp.Dial(testBrokerURL)
		if err != nil {
			return
		}
		defer conn.Close()
		ch, err := conn.Channel()
		if err != nil {
			return
		}
		failures := tasks.FailureQueue(name)
		for _, q := range []string{name, rabbitmq.GuardQueue(name), failures, rabbitmq.GuardQueue(failures)} {
			ch.QueueDelete(q, false, false, false)
		}
		ch.ExchangeDelete(name, false, false)
		ch.ExchangeDelete(failures, false, false)
	})
	return name
}

// interopMux registers the Go versions of testdata/python/interop.py.
func interopMux() *worker.ServeMux {
	mux := worker.NewServeMux()
	mux.HandleFunc("interop.add", func(_ context.Context, t *worker.Task) (any, error) { return sum(t.Args()) })
	mux.HandleFunc("interop.tsum", func(_ context.Context, t *worker.Task) (any, error) {
		if len(t.Args()) != 1 {
			return nil, worker.NewTaskError("TypeError", "tsum() takes 1 positional argument but %d were given", len(t.Args()))
		}
		values, ok := t.Args()[0].([]any)
		if !ok {
			return nil, worker.NewTaskError("TypeError", "'%T' object is not iterable", t.Args()[0])
		}
		return sum(values)
	})
	mux.HandleFunc("interop.fail", func(context.Context, *worker.Task) (any, error) {
		return nil, worker.NewTaskError("ValueError", "boom")
	})
	mux.HandleFunc("interop.whoami", func(_ context.Context, t *worker.Task) (any, error) { return t.Hostname(), nil })
	mux.HandleFunc("interop.sleep", func(ctx context.Context, t *worker.Task) (any, error) {
		secs, _ := t.Args()[0].(int64)
		select {
		case <-time.After(time.Duration(secs) * time.Second):
			return secs, nil
		case <-ctx.Done():
			return nil, context.Cause(ctx)
		}
	})
	mux.HandleFunc("interop.retry_once", func(_ context.Context, t *worker.Task) (any, error) {
		if t.Msg.Retries == 0 {
			return nil, t.Retry(worker.NewTaskError("RuntimeError", "first try"), time.Second)
		}
		return fmt.Sprintf("retried %d", t.Msg.Retries), nil
	})
	return mux
}

// sum adds numbers as Python's sum() does: ints stay ints.
func sum(values []any) (any, error) {
	var ints int64
	var floats float64
	isFloat := false
	for _, v := range values {
		switch n := v.(type) {
		case int64:
			ints += n
		case float64:
			floats += n
			isFloat = true
		default:
			return nil, worker.NewTaskError("TypeError", "unsupported operand type(s) for +: 'int' and '%T'", v)
		}
	}
	if isFloat {
		return floats + float64(ints), nil
	}
	return ints, nil
}

type goWorkerOptions struct {
	backend     string // "redis" (default), "rpc" or "amqp"
	node        string
	concurrency int // 0 means 4
	// queueType and exchangeType are the broker's (rabbitmq.Config);
	// empty means classic and direct.
	queueType, exchangeType string
	// noNativeDelay keeps messages with an ETA in the worker until then.
	noNativeDelay bool
	// autoscale, when Max is set, is the worker's Config.Autoscale.
	autoscale worker.Autoscale
	// setup, when set, runs before the worker starts, with the ctx that
	// stops it (the ops tests start events, remote control and metrics).
	setup func(ctx context.Context, srv *worker.Server, broker *rabbitmq.Broker)
}

// startGoWorker runs an in-process Go worker on queue until the test ends.
func startGoWorker(t *testing.T, queue string, o goWorkerOptions) (*worker.Server, *rabbitmq.Broker, worker.Backend) {
	t.Helper()
	log := logrus.New()
	log.SetLevel(logrus.WarnLevel)
	log.SetOutput(testWriter{t})
	broker, err := rabbitmq.Dial(rabbitmq.Config{URL: testBrokerURL, Log: log, QueueType: o.queueType, ExchangeType: o.exchangeType, NoNativeDelay: o.noNativeDelay})
	if err != nil {
		t.Fatalf("connect to RabbitMQ: %v (run `make setup`)", err)
	}
	var backend worker.Backend
	switch o.backend {
	case "", "redis":
		rb, err := redis.New(context.Background(), redis.Config{URL: testRedisURL})
		if err != nil {
			t.Fatalf("connect to Redis: %v (run `make setup`)", err)
		}
		t.Cleanup(func() { rb.Close() })
		backend = rb
	case "rpc":
		backend = broker.RPCBackend()
	case "amqp":
		backend = broker.AMQPBackend(0)
	}
	if o.node == "" {
		o.node = "go-" + queue + "@test"
	}
	if o.concurrency == 0 {
		o.concurrency = 4
	}
	srv := worker.NewServer(worker.Config{Queues: []string{queue}, Concurrency: o.concurrency, Autoscale: o.autoscale, NodeName: o.node, ShutdownTimeout: 5 * time.Second},
		broker, backend, interopMux(), log)
	ctx, cancel := context.WithCancel(context.Background())
	if o.setup != nil {
		o.setup(ctx, srv, broker)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("go worker: %v", err)
		}
		broker.Close()
	})
	return srv, broker, backend
}

// testWriter sends log lines to the test log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// scenario runs testdata/python/scenarios.py NAME and decodes its output.
func scenario(t *testing.T, name, queue string, env ...string) map[string]any {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, pythonBin, "scenarios.py", name)
	cmd.Dir = pythonDir
	cmd.Env = append(os.Environ(),
		"CELERY_BROKER_URL="+testBrokerURL,
		"CELERY_RESULT_BACKEND="+testRedisURL,
		"INTEROP_QUEUE="+queue)
	cmd.Env = append(cmd.Env, env...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("scenario %s: %v\nstderr:\n%s", name, err, stderr.String())
	}
	var result map[string]any
	if err := json.Unmarshal(out, &result); err != nil {
		t.Fatalf("scenario %s printed %q: %v", name, out, err)
	}
	t.Logf("scenario %s: %s", name, out)
	return result
}

// startPythonWorker runs a real Celery worker (prefork, 2 processes) on
// queue until the test ends, and waits until it is ready. env is added to
// its environment (INTEROP_QUEUE_TYPE=quorum, ...).
func startPythonWorker(t *testing.T, queue, node string, env ...string) {
	t.Helper()
	startPythonWorkerArgs(t, queue, node, []string{"-c", "2"}, env...)
}

// startPythonWorkerArgs is startPythonWorker with other worker options
// than "-c 2".
func startPythonWorkerArgs(t *testing.T, queue, node string, args []string, env ...string) {
	t.Helper()
	startCeleryWorker(t, celeryWorker{app: "interop", queues: []string{queue}, node: node, args: args,
		env: append([]string{"INTEROP_QUEUE=" + queue}, env...)})
}

// celeryWorker is a Python Celery worker process run by a test.
type celeryWorker struct {
	app    string   // the module in testdata/python (-A)
	queues []string // -Q
	node   string   // -n
	args   []string // more worker options
	env    []string // more environment, after the broker and backend URLs
	// onLine, when set, sees every line of the worker's log.
	onLine func(line string)
}

// startCeleryWorker runs `celery -A APP worker` from testdata/python on
// the test broker and Redis backend, waits until it is ready, and stops it
// (SIGINT, then SIGKILL) when the test ends; a failed test shows the last
// lines of its log.
func startCeleryWorker(t *testing.T, w celeryWorker) {
	t.Helper()
	cmd := exec.Command(pythonBin, append([]string{"-m", "celery", "-A", w.app, "worker",
		"-Q", strings.Join(w.queues, ","), "-n", w.node, "-l", "info", "--without-mingle", "--without-gossip", "--without-heartbeat"}, w.args...)...)
	cmd.Dir = pythonDir
	cmd.Env = append(os.Environ(), "CELERY_BROKER_URL="+testBrokerURL, "CELERY_RESULT_BACKEND="+testRedisURL)
	cmd.Env = append(cmd.Env, w.env...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout = io.Discard
	if err := cmd.Start(); err != nil {
		t.Fatalf("start the Python worker %s: %v", w.node, err)
	}
	ready := make(chan struct{})
	var once sync.Once
	var tailMu sync.Mutex
	var tail []string
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			tailMu.Lock()
			if tail = append(tail, line); len(tail) > 80 {
				tail = tail[1:]
			}
			tailMu.Unlock()
			if strings.Contains(line, "ready.") {
				once.Do(func() { close(ready) })
			}
			if w.onLine != nil {
				w.onLine(line)
			}
		}
	}()
	t.Cleanup(func() {
		cmd.Process.Signal(os.Interrupt)
		waited := make(chan error, 1)
		go func() { waited <- cmd.Wait() }()
		select {
		case <-waited:
		case <-time.After(20 * time.Second):
			cmd.Process.Kill()
			<-waited
		}
		if t.Failed() {
			tailMu.Lock()
			t.Logf("Python worker %s, last lines:\n%s", w.node, strings.Join(tail, "\n"))
			tailMu.Unlock()
		}
	})
	select {
	case <-ready:
	case <-time.After(60 * time.Second):
		tailMu.Lock()
		defer tailMu.Unlock()
		t.Fatalf("Python worker %s not ready after 60 s; its log:\n%s", w.node, strings.Join(tail, "\n"))
	}
}

// field walks nested maps: field(m, "a", "b") is m["a"]["b"].
func field(t *testing.T, m map[string]any, path ...string) any {
	t.Helper()
	var cur any = m
	for _, p := range path {
		mm, ok := cur.(map[string]any)
		if !ok {
			t.Fatalf("%v: %v is not an object", path, cur)
		}
		cur = mm[p]
	}
	return cur
}

func wantJSON(t *testing.T, what string, got any, want string) {
	t.Helper()
	var w any
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		t.Fatalf("bad want %q: %v", want, err)
	}
	gb, _ := json.Marshal(got)
	wb, _ := json.Marshal(w)
	if !bytes.Equal(gb, wb) {
		t.Errorf("%s = %s, want %s", what, gb, wb)
	}
}

func TestInteropResultsOnEveryBackend(t *testing.T) {
	requireServices(t)
	for _, backend := range []struct{ name, url string }{
		{"redis", testRedisURL},
		{"rpc", "rpc://"},
	} {
		t.Run(backend.name, func(t *testing.T) {
			queue := uniqueQueue(t)
			startGoWorker(t, queue, goWorkerOptions{backend: backend.name})
			env := "CELERY_RESULT_BACKEND=" + backend.url
			got := scenario(t, "accumulate", queue, env)
			wantJSON(t, "accumulate", got, `{"all": {"result": [1, 2, 3]}, "index": {"result": 2}}`)
			got = scenario(t, "failure", queue, env)
			wantJSON(t, "exception type", field(t, got, "exc_type"), `"ValueError"`)
			wantJSON(t, "exception args", field(t, got, "exc_args"), `["boom"]`)
			wantJSON(t, "state", field(t, got, "state"), `"FAILURE"`)
		})
	}
}

// TestInteropMatchesPython runs every client scenario twice, against a
// Python worker and against the Go worker, and requires the same outcome;
// each scenario also has explicit expectations, so that a bug shared by both
// runs would not pass unnoticed.
func TestInteropMatchesPython(t *testing.T) {
	requireServices(t)
	pyQueue, goQueue := uniqueQueue(t), uniqueQueue(t)
	startPythonWorker(t, pyQueue, "py-baseline@interop")
	startGoWorker(t, goQueue, goWorkerOptions{})

	for _, sc := range []struct {
		name  string
		env   []string
		check func(t *testing.T, got map[string]any)
	}{
		{name: "add", check: func(t *testing.T, got map[string]any) { wantJSON(t, "add", got, `{"result": 5}`) }},
		{name: "failure", check: func(t *testing.T, got map[string]any) {
			wantJSON(t, "failure", got, `{"exc_type": "ValueError", "exc_module": "builtins", "exc_args": ["boom"], "state": "FAILURE", "traceback_present": true}`)
		}},
		{name: "retry", check: func(t *testing.T, got map[string]any) {
			wantJSON(t, "retry", got, `{"result": "retried 1", "states": ["RETRY", "SUCCESS"]}`)
		}},
		{name: "countdown", check: func(t *testing.T, got map[string]any) {
			wantJSON(t, "result", got["result"], `2`)
			if elapsed, _ := got["elapsed"].(float64); elapsed < 1.9 {
				t.Errorf("countdown=2 task finished after %.2fs, before its ETA", elapsed)
			}
		}},
		{name: "expired", check: func(t *testing.T, got map[string]any) {
			wantJSON(t, "expired", got, `{"exc_type": "TaskRevokedError", "exc_module": "celery.exceptions", "exc_args": ["expired"], "state": "REVOKED"}`)
		}},
		{name: "unknown", check: func(t *testing.T, got map[string]any) {
			wantJSON(t, "unknown", got, `{"exc_type": "NotRegistered", "exc_module": "celery.exceptions", "exc_args": ["interop.no_such_task"]}`)
		}},
		{name: "canvas", check: func(t *testing.T, got map[string]any) {
			wantJSON(t, "chain", got["chain"], `{"result": 113}`)
			wantJSON(t, "group", got["group"], `{"result": [2, 4]}`)
			wantJSON(t, "chord", got["chord"], `{"result": 90}`)
			wantJSON(t, "chain with chord", got["chain_with_chord"], `{"result": 17}`)
			wantJSON(t, "immutable", got["immutable"], `{"result": 10}`)
			wantJSON(t, "empty chord", got["empty_chord"], `{"result": 0}`)
			wantJSON(t, "workflow shape", got["workflow_shape"], `{"result": 1338}`)
			wantJSON(t, "chord failure", got["chord_failure"], `{"exc_type": "ValueError", "exc_module": "builtins", "exc_args": ["boom"], "body_state": "FAILURE", "body_exc_type": "ChordError"}`)
		}},
		{name: "links", check: func(t *testing.T, got map[string]any) {
			wantJSON(t, "first", got["first"], `3`)
			wantJSON(t, "callback", got["callback"], `{"result": 103}`)
			wantJSON(t, "failed", field(t, got, "failed", "exc_type"), `"ValueError"`)
			failedID, _ := got["failed_id"].(string)
			wantJSON(t, "errback", got["errback"], fmt.Sprintf(`{"result": [%q, "errback"]}`, failedID))
		}},
		{name: "protocol1", env: []string{"INTEROP_PROTOCOL=1"}, check: func(t *testing.T, got map[string]any) {
			wantJSON(t, "v1", got, `{"send_task": {"result": 42}, "chain": {"result": 6}}`)
		}},
	} {
		t.Run(sc.name, func(t *testing.T) {
			want := scenario(t, sc.name, pyQueue, sc.env...)
			got := scenario(t, sc.name, goQueue, sc.env...)
			sc.check(t, got)
			if g, w := comparable(got), comparable(want); g != w {
				t.Errorf("Go worker and Python worker differ:\n  go:     %s\n  python: %s", g, w)
			}
		})
	}
}

// comparable renders a scenario outcome without what differs between any
// two runs (task ids, timings).
func comparable(v map[string]any) string {
	m := make(map[string]any, len(v))
	for k, val := range v {
		m[k] = val
	}
	delete(m, "elapsed")
	if id, ok := m["failed_id"].(string); ok {
		delete(m, "failed_id")
		b, _ := json.Marshal(m)
		return strings.ReplaceAll(string(b), id, "<failed id>")
	}
	b, _ := json.Marshal(m)
	return string(b)
}

// TestInteropMixedWorkers runs a Python and a Go worker on one queue: chords
// whose header tasks land on both join through Redis, and both workers
// take part.
func TestInteropMixedWorkers(t *testing.T) {
	requireServices(t)
	queue := uniqueQueue(t)
	startGoWorker(t, queue, goWorkerOptions{node: "go@interop"})
	startPythonWorker(t, queue, "py@interop")
	got := scenario(t, "mixed", queue)
	wantJSON(t, "chords", got["chords"], `[45, 55, 65, 75, 85]`)
	wantJSON(t, "workers", got["workers"], `["go@interop", "py@interop"]`)
}

// TestLegacyAMQPBackend reads what the Go worker stores with the legacy
// amqp:// backend the way the VHG status consumer does, and runs a chord on
// RabbitMQ alone (celery.chord_unlock).
func TestLegacyAMQPBackend(t *testing.T) {
	requireServices(t)
	queue := uniqueQueue(t)
	_, broker, backend := startGoWorker(t, queue, goWorkerOptions{backend: "amqp"})
	client := worker.NewClient(broker, worker.ClientConfig{DefaultQueue: queue, Backend: backend})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	id, err := client.SendTask(ctx, "interop.add", []any{int64(40), int64(2)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	meta := readLegacyResult(t, ctx, id)
	if meta.Status != protocol.StateSuccess || meta.Result != int64(42) {
		t.Errorf("legacy result = %+v, want SUCCESS 42", meta)
	}

	header := make([]protocol.Signature, 5)
	for i := range header {
		header[i] = protocol.Signature{Task: "interop.add", Args: []any{int64(i), int64(i)}}
	}
	bodyID := worker.NewTaskID()
	body := protocol.Signature{Task: "interop.tsum", Options: protocol.Options{TaskID: bodyID}}
	got, err := client.Apply(ctx, protocol.NewChord(header, body))
	if err != nil {
		t.Fatal(err)
	}
	if got != bodyID {
		t.Errorf("chord returned id %s, want the body's %s", got, bodyID)
	}
	meta = readLegacyResult(t, ctx, bodyID)
	if meta.Status != protocol.StateSuccess || meta.Result != int64(20) {
		t.Errorf("chord body result = %+v, want SUCCESS 20", meta)
	}
}

// readLegacyResult consumes the task's dashless queue on celeryresults, as
// the Java consumer does, until a ready state arrives.
func readLegacyResult(t *testing.T, ctx context.Context, taskID string) protocol.ResultMeta {
	t.Helper()
	conn, err := amqp.Dial(testBrokerURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	q := rabbitmq.ResultQueue(taskID)
	if _, err := ch.QueueDeclare(q, true, true, false, false, amqp.Table{"x-expires": int32(86400000)}); err != nil {
		t.Fatalf("declare %s as Celery does: %v", q, err)
	}
	if err := ch.QueueBind(q, q, rabbitmq.ResultExchange, false, nil); err != nil {
		t.Fatal(err)
	}
	msgs, err := ch.ConsumeWithContext(ctx, q, "", true, false, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	for {
		select {
		case m, ok := <-msgs:
			if !ok {
				t.Fatalf("consumer of %s closed", q)
			}
			if m.ContentType != "application/json" || m.DeliveryMode != amqp.Persistent {
				t.Errorf("status message properties: content_type %q delivery_mode %d", m.ContentType, m.DeliveryMode)
			}
			meta, err := protocol.ParseResultMeta(m.Body)
			if err != nil {
				t.Fatalf("status message %s: %v", m.Body, err)
			}
			if meta.TaskID != taskID {
				t.Errorf("status message for %s carries task_id %s", taskID, meta.TaskID)
			}
			if meta.Status.Ready() {
				return meta
			}
		case <-ctx.Done():
			t.Fatalf("no ready state for %s: %v", taskID, ctx.Err())
		}
	}
}

// TestBinaryServesPythonClient builds the real command and drives it from
// Python, and checks the one-line message for an unreachable broker.
func TestBinaryServesPythonClient(t *testing.T) {
	requireServices(t)
	bin := buildBinary(t)
	queue := uniqueQueue(t)
	cmd := exec.Command(bin, "worker", "-b", testBrokerURL, "--result-backend", testRedisURL, "-Q", queue, "-c", "2", "-l", "warning")
	var logs bytes.Buffer
	cmd.Stderr = &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(os.Interrupt)
		if err := cmd.Wait(); err != nil {
			t.Errorf("worker exited with %v after SIGINT; log:\n%s", err, logs.String())
		}
	})
	got := scenario(t, "accumulate", queue)
	wantJSON(t, "accumulate", got, `{"all": {"result": [1, 2, 3]}, "index": {"result": 2}}`)

	out, err := exec.Command(bin, "worker", "-b", "amqp://guest:guest@127.0.0.1:1//").CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 {
		t.Fatalf("unreachable broker: err %v, want exit status 1; output:\n%s", err, out)
	}
	if !strings.Contains(string(out), "cannot reach the broker at amqp://guest:xxxxx@127.0.0.1:1//") ||
		!strings.Contains(string(out), "rabbitmq-server") {
		t.Errorf("unreachable broker message does not name the URL and how to start one:\n%s", out)
	}
}

// buildWorker builds the command once per test binary.
var buildWorker = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "vhg-faults-")
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "vhg-worker")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build: %v\n%s", err, out)
	}
	return bin, nil
})

// buildBinary returns the command built for this test binary.
func buildBinary(t testing.TB) string {
	t.Helper()
	bin, err := buildWorker()
	if err != nil {
		t.Fatal(err)
	}
	return bin
}
