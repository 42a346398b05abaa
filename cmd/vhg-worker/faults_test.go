//go:build integration && faults

package main

// Fault tests: the worker binary killed with SIGKILL mid-transcode,
// RabbitMQ and Redis restarted under a running workflow, RabbitMQ's
// consumer_timeout shortened to seconds, a 100k-message soak. They change
// the shared services for everyone, so they are built only with
// -tags faults and `make test` runs them in a final `go test` of their
// own, after every other package, one at a time (-p 1, no t.Parallel).
// Like every service test, they fail, not skip, without the services.

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/sirupsen/logrus"
	"github.com/vhg/vhg-worker/ffmpeg"
	"github.com/vhg/vhg-worker/protocol"
	"github.com/vhg/vhg-worker/tasks"
	"github.com/vhg/vhg-worker/worker"
	"github.com/vhg/vhg-worker/worker/rabbitmq"
	"github.com/vhg/vhg-worker/worker/redis"
)

func workerBinary(t *testing.T) string {
	t.Helper()
	bin, err := buildWorker()
	if err != nil {
		t.Fatal(err)
	}
	return bin
}

// syncBuffer collects a process's log.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// binWorker is a running worker binary.
type binWorker struct {
	cmd  *exec.Cmd
	logs *syncBuffer
	done chan struct{}
}

// startBinary starts the worker binary with args; it is stopped (SIGTERM,
// then SIGKILL) at cleanup if still running, and its log shown on failure.
func startBinary(t *testing.T, args ...string) *binWorker {
	t.Helper()
	w := &binWorker{cmd: exec.Command(workerBinary(t), args...), logs: &syncBuffer{}, done: make(chan struct{})}
	w.cmd.Stderr = w.logs
	if err := w.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { w.cmd.Wait(); close(w.done) }()
	t.Cleanup(func() {
		w.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-w.done:
		case <-time.After(20 * time.Second):
			w.cmd.Process.Kill()
			<-w.done
		}
		if t.Failed() {
			t.Logf("worker %v log:\n%s", args, w.logs.String())
		}
	})
	return w
}

func (w *binWorker) kill9(t *testing.T) {
	t.Helper()
	if err := w.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-w.done
}

// faultClip writes a longer, larger test pattern than the encode tests
// use, so that a transcode lasts long enough to be interrupted.
func faultClip(t *testing.T, dir string, d time.Duration) string {
	t.Helper()
	path := filepath.Join(dir, "clip.mp4")
	err := ffmpeg.Run(t.Context(), ffmpeg.TestPatternArgs(ffmpeg.TestPatternOptions{
		Output: path, Duration: d, Width: 1280, Height: 720, Audio: true, Preset: "ultrafast",
	}), ffmpeg.RunOptions{})
	if err != nil {
		t.Fatalf("making the test clip (is ffmpeg installed? run make setup): %v", err)
	}
	return path
}

// statusFollower reads a workflow's status queue, reconnecting when the
// broker goes away, until COMPLETE or FAILURE.
type statusFollower struct {
	statuses chan protocol.ResultMeta
	ready    chan struct{}
}

func followStatuses(t *testing.T, ctx context.Context, taskID string) *statusFollower {
	return followStatusesAt(t, ctx, testBrokerURL, taskID)
}

// followStatusesAt follows the status queue on the broker at brokerURL.
func followStatusesAt(t *testing.T, ctx context.Context, brokerURL, taskID string) *statusFollower {
	f := &statusFollower{statuses: make(chan protocol.ResultMeta, 1000), ready: make(chan struct{})}
	go func() {
		defer close(f.statuses)
		first := true
		for ctx.Err() == nil {
			conn, deliveries, err := consumeStatus(brokerURL, taskID)
			if err != nil {
				time.Sleep(300 * time.Millisecond)
				continue
			}
			if first {
				close(f.ready)
				first = false
			}
			for d := range deliveries {
				meta, err := protocol.ParseResultMeta(d.Body)
				if err != nil {
					continue
				}
				f.statuses <- meta
				if meta.Status == tasks.StateComplete || meta.Status == protocol.StateFailure {
					conn.Close()
					return
				}
			}
			conn.Close()
		}
	}()
	select {
	case <-f.ready:
	case <-time.After(30 * time.Second):
		t.Fatal("cannot consume the status queue: run make setup")
	}
	return f
}

// submitWorkflow sends encode_workflow(input) to queue and returns its id
// and a follower of its status queue.
func submitWorkflow(t *testing.T, ctx context.Context, queue, input string) (string, *statusFollower) {
	t.Helper()
	id := worker.NewTaskID()
	f := followStatuses(t, ctx, id)
	broker, err := rabbitmq.Dial(rabbitmq.Config{URL: testBrokerURL, ConnectionName: "faults submit"})
	if err != nil {
		t.Fatalf("RabbitMQ: %v (run make setup)", err)
	}
	defer broker.Close()
	client := worker.NewClient(broker, worker.ClientConfig{DefaultQueue: queue})
	sig := protocol.Signature{Task: tasks.NameEncodeWorkflow, Args: []any{input}, Kwargs: map[string]any{}, Options: protocol.Options{TaskID: id}}
	if _, err := client.Apply(ctx, sig); err != nil {
		t.Fatal(err)
	}
	return id, f
}

// waitStatus returns the statuses up to the first one cond accepts.
func (f *statusFollower) waitStatus(t *testing.T, what string, limit time.Duration, cond func(protocol.ResultMeta) bool) []protocol.ResultMeta {
	t.Helper()
	var seen []protocol.ResultMeta
	timeout := time.After(limit)
	for {
		select {
		case m, ok := <-f.statuses:
			if !ok {
				t.Fatalf("status queue ended before %s; statuses: %v", what, states(seen))
			}
			seen = append(seen, m)
			if cond(m) {
				return seen
			}
			if m.Status == protocol.StateFailure {
				t.Fatalf("workflow FAILURE before %s: %v", what, m.Result)
			}
		case <-timeout:
			t.Fatalf("no %s within %s; statuses: %v", what, limit, states(seen))
		}
	}
}

func states(s []protocol.ResultMeta) []string {
	var out []string
	for _, m := range s {
		out = append(out, string(m.Status))
	}
	return out
}

func isStatus(s protocol.State) func(protocol.ResultMeta) bool {
	return func(m protocol.ResultMeta) bool { return m.Status == s }
}

// checkWorkflowOutputs checks what a COMPLETE status points to: a master
// playlist with each variant exactly once, every variant playable at its
// size, an MPD; and that no temporary file is left behind where a player
// reads.
func checkWorkflowOutputs(t *testing.T, complete protocol.ResultMeta, sizes []string) {
	t.Helper()
	r, _ := complete.Result.(map[string]any)
	master, _ := r["hls"].(string)
	data, err := os.ReadFile(master)
	if err != nil {
		t.Fatalf("master playlist: %v", err)
	}
	var uris []string
	for _, line := range strings.Split(string(data), "\n") {
		if line != "" && !strings.HasPrefix(line, "#") {
			uris = append(uris, line)
		}
	}
	want := make([]string, len(sizes))
	for i, s := range sizes {
		want[i] = s + "/playlist.m3u8"
	}
	if strings.Join(uris, ",") != strings.Join(want, ",") || strings.Count(string(data), "#EXT-X-STREAM-INF") != len(sizes) {
		t.Errorf("master playlist lists %v, want each of %v once:\n%s", uris, want, data)
	}
	for _, s := range sizes {
		variant := filepath.Join(filepath.Dir(master), s, "playlist.m3u8")
		probe, err := ffmpeg.ProbeFormats(t.Context(), variant, []string{"hls", "mpegts"})
		if err != nil {
			t.Errorf("variant %s does not play: %v", s, err)
			continue
		}
		if v, ok := probe.Video(); !ok || fmt.Sprintf("%dx%d", v.Width, v.Height) != s {
			t.Errorf("variant %s: video %+v", s, v)
		}
	}
	if mpd, _ := r["dash"].(string); !fileExists(mpd) {
		t.Errorf("MPD %q missing", mpd)
	}
	root := filepath.Dir(filepath.Dir(master))
	filepath.Walk(root, func(path string, info os.FileInfo, err error) error {
		if err == nil && strings.Contains(filepath.Base(path), ".tmp-") {
			t.Errorf("temporary file left behind: %s", path)
		}
		return nil
	})
}

// ffmpegChildren lists the ffmpeg processes whose command line mentions dir.
func ffmpegChildren(dir string) []string {
	var found []string
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		args := strings.Split(string(cmdline), "\x00")
		if len(args) > 0 && filepath.Base(args[0]) == "ffmpeg" && strings.Contains(string(cmdline), dir) {
			found = append(found, e.Name())
		}
	}
	return found
}

// TestFaultKillWorkerMidTranscode kills the worker binary with SIGKILL
// while it transcodes, checks that no ffmpeg outlives it, starts a fresh
// worker, and checks that the workflow completes with the outputs of a
// clean run.
func TestFaultKillWorkerMidTranscode(t *testing.T) {
	requireServices(t)
	inputs, out := t.TempDir(), t.TempDir()
	src := faultClip(t, inputs, 40*time.Second)
	queue := uniqueQueue(t)
	args := func(n int) []string {
		return []string{"worker", "-b", testBrokerURL, "-Q", queue, "-c", "2", "-n", fmt.Sprintf("kill%d@%%h", n),
			"--output-dir", out, "--input-roots", inputs, "--renditions", "180:300,360:800"}
	}
	first := startBinary(t, args(1)...)
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	_, f := submitWorkflow(t, ctx, queue, src)
	f.waitStatus(t, "transcode PROGRESS", 2*time.Minute, func(m protocol.ResultMeta) bool {
		r, _ := m.Result.(map[string]any)
		p, _ := r["percent"].(int64)
		return m.Status == tasks.StateProgress && r["step"] == "transcode" && p > 0 && p < 100
	})
	first.kill9(t)
	t.Log("worker killed with SIGKILL mid-transcode")
	deadline := time.Now().Add(5 * time.Second)
	for len(ffmpegChildren(out)) > 0 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	if left := ffmpegChildren(out); len(left) > 0 {
		t.Errorf("ffmpeg processes %v outlived the killed worker", left)
	}
	second := startBinary(t, args(2)...)
	seen := f.waitStatus(t, "COMPLETE", 4*time.Minute, isStatus(tasks.StateComplete))
	checkWorkflowOutputs(t, seen[len(seen)-1], []string{"320x180", "640x360"})
	if !strings.Contains(second.logs.String(), "adaptation.commons.transcode") {
		t.Errorf("the fresh worker did not run the interrupted transcode; log:\n%s", second.logs.String())
	}
	t.Logf("FIGURE kill-9: 1 worker killed mid-transcode, workflow completed, %d statuses, ffmpeg orphans 0, messages lost 0", len(seen))
}

// rabbitmqctl runs rabbitmqctl with args.
// rabbitmqctl runs a rabbitmqctl command, failing the test if it has not
// finished within two minutes: start_app can hang while RabbitMQ recovers
// more durable queues than it has file handles for (its log says so).
func rabbitmqctl(t *testing.T, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "rabbitmqctl", args...)
	cmd.WaitDelay = 5 * time.Second // its children may hold the output open
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("rabbitmqctl %v: %v\n%s (see /var/log/rabbitmq; run make setup)", args, err, out)
	}
	return strings.TrimSpace(string(out))
}

// waitPort waits for a TCP port to open.
func waitPort(t *testing.T, addr string, limit time.Duration) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("%s did not open within %s", addr, limit)
}

// TestFaultBrokerRestart stops and starts the RabbitMQ application while a
// workflow transcodes: the worker reconnects, consumes again, republishes
// what it could not publish, and the workflow completes with the outputs
// of a clean run.
func TestFaultBrokerRestart(t *testing.T) {
	requireServices(t)
	inputs, out := t.TempDir(), t.TempDir()
	src := faultClip(t, inputs, 30*time.Second)
	queue := uniqueQueue(t)
	w := startBinary(t, "worker", "-b", testBrokerURL, "-Q", queue, "-c", "2", "-n", "restart@%h", "--metrics-addr", "127.0.0.1:0",
		"--output-dir", out, "--input-roots", inputs, "--renditions", "180:300,360:800")
	t.Cleanup(func() { // whatever happens
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, "rabbitmqctl", "start_app")
		cmd.WaitDelay = 5 * time.Second
		cmd.Run()
	})
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	_, f := submitWorkflow(t, ctx, queue, src)
	f.waitStatus(t, "transcode PROGRESS", 2*time.Minute, func(m protocol.ResultMeta) bool {
		r, _ := m.Result.(map[string]any)
		return m.Status == tasks.StateProgress && r["step"] == "transcode"
	})
	rabbitmqctl(t, "stop_app")
	t.Log("RabbitMQ stopped mid-transcode")
	time.Sleep(3 * time.Second)
	rabbitmqctl(t, "start_app")
	waitPort(t, "127.0.0.1:5672", time.Minute)
	t.Log("RabbitMQ started again")
	seen := f.waitStatus(t, "COMPLETE", 4*time.Minute, isStatus(tasks.StateComplete))
	checkWorkflowOutputs(t, seen[len(seen)-1], []string{"320x180", "640x360"})
	logs := w.logs.String()
	if !strings.Contains(logs, "broker connection restored") {
		t.Errorf("the worker did not report reconnecting; log:\n%s", logs)
	}
	select {
	case <-w.done:
		t.Fatalf("the worker exited after the broker restart; log:\n%s", logs)
	default:
	}
	t.Logf("FIGURE broker-restart: RabbitMQ stopped 3 s mid-transcode, worker reconnected, workflow completed, messages lost 0")
}

// TestFaultRedisRestart shuts Redis down while tasks finish: their results
// wait for Redis to come back instead of being dropped.
func TestFaultRedisRestart(t *testing.T) {
	requireServices(t)
	queue := uniqueQueue(t)
	srv, broker, backend := startGoWorker(t, queue, goWorkerOptions{backend: "redis", concurrency: 4})
	rb := backend.(*redis.Backend)
	client := worker.NewClient(broker, worker.ClientConfig{DefaultQueue: queue})
	t.Cleanup(func() { startRedis(t) })

	if out, err := exec.Command("redis-cli", "-h", "127.0.0.1", "shutdown", "nosave").CombinedOutput(); err != nil && !strings.Contains(string(out), "closed") {
		t.Logf("redis-cli shutdown: %v %s", err, out)
	}
	waitPortClosed(t, "127.0.0.1:6379", 30*time.Second)
	t.Log("Redis shut down: port 6379 closed")
	const n = 20
	ids := make([]string, n)
	for i := range n {
		id, err := client.SendTask(t.Context(), "interop.add", []any{int64(i), int64(1)}, nil)
		if err != nil {
			t.Fatal(err)
		}
		ids[i] = id
	}
	time.Sleep(3 * time.Second) // the tasks run; their results wait
	// The outage was real: tasks started while Redis was still down.
	started := srv.Stats().Processed
	if c, err := net.DialTimeout("tcp", "127.0.0.1:6379", time.Second); err == nil {
		c.Close()
		t.Fatal("Redis answered on 6379 during the outage: the fault did not happen")
	}
	if started == 0 {
		t.Fatal("no task started during the Redis outage: nothing was tested")
	}
	t.Logf("%d tasks started during the outage", started)
	startRedis(t)
	t.Log("Redis started again")
	deadline := time.Now().Add(time.Minute)
	stored := 0
	for _, id := range ids {
		for {
			meta, err := rb.Result(t.Context(), id)
			if err == nil && meta.Status == protocol.StateSuccess {
				stored++
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("result of %s not stored after Redis came back: %v %v", id, meta.Status, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	t.Logf("FIGURE redis-restart: Redis down 3 s, %d tasks started during it, %d/%d results stored after it came back, lost 0", started, stored, n)
}

// waitPortClosed waits until nothing accepts connections on addr.
func waitPortClosed(t *testing.T, addr string, limit time.Duration) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			return
		}
		c.Close()
		if time.Now().After(deadline) {
			t.Fatalf("%s still accepts connections %s after the shutdown", addr, limit)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// startRedis starts Redis as .ci/setup does, if it is not running.
func startRedis(t *testing.T) {
	if c, err := net.DialTimeout("tcp", "127.0.0.1:6379", time.Second); err == nil {
		c.Close()
		return
	}
	out, err := exec.Command("redis-server", "--daemonize", "yes", "--bind", "127.0.0.1", "--port", "6379", "--save", "", "--appendonly", "no").CombinedOutput()
	if err != nil {
		t.Fatalf("redis-server: %v %s (run make setup)", err, out)
	}
	waitPort(t, "127.0.0.1:6379", 30*time.Second)
}

// setConsumerTimeout sets RabbitMQ's consumer_timeout at run time (it
// applies to channels opened afterwards), with the channel tick that checks
// it every second instead of every minute, and restores both at cleanup.
func setConsumerTimeout(t *testing.T, ms int) {
	t.Helper()
	// Never unset them: RabbitMQ 3.10 cannot open a channel without a
	// channel_tick_interval (badmatch in rabbit_channel:init_tick_timer).
	restore := func(key, fallback string) string {
		old := rabbitmqctl(t, "eval", fmt.Sprintf("application:get_env(rabbit, %s).", key))
		v, ok := strings.CutPrefix(old, "{ok,")
		if !ok {
			v = fallback
		}
		return fmt.Sprintf("application:set_env(rabbit, %s, %s).", key, strings.TrimSuffix(v, "}"))
	}
	undo := []string{restore("consumer_timeout", "1800000"), restore("channel_tick_interval", "60000")}
	t.Cleanup(func() {
		for _, expr := range undo {
			rabbitmqctl(t, "eval", expr)
		}
	})
	rabbitmqctl(t, "eval", fmt.Sprintf("application:set_env(rabbit, consumer_timeout, %d).", ms))
	rabbitmqctl(t, "eval", "application:set_env(rabbit, channel_tick_interval, 1000).")
}

// countingMux has fault.long (acks_late, sleeps the seconds given unless
// it already ran once, counting runs per id) and fault.quick.
func countingMux(runs *sync.Map) *worker.ServeMux {
	mux := worker.NewServeMux()
	count := func(id string) int64 {
		v, _ := runs.LoadOrStore(id, new(atomic.Int64))
		return v.(*atomic.Int64).Add(1)
	}
	mux.HandleFunc("fault.long", func(ctx context.Context, t *worker.Task) (any, error) {
		secs, _ := t.Args()[0].(int64)
		if count(t.ID()) > 1 {
			return "second run", nil
		}
		select {
		case <-time.After(time.Duration(secs) * time.Second):
			return "slept", nil
		case <-ctx.Done():
			return nil, context.Cause(ctx)
		}
	}, worker.AcksLate())
	mux.HandleFunc("fault.quick", func(_ context.Context, t *worker.Task) (any, error) {
		count(t.ID())
		return "ok", nil
	})
	return mux
}

// inProcessWorker runs a Server with its own connection and consumer
// timeout; stop ends it.
type inProcessWorker struct {
	broker *rabbitmq.Broker
	srv    *worker.Server
	logs   *syncBuffer
	stop   func()
}

func startInProcess(t *testing.T, queue string, mux *worker.ServeMux, consumerTimeout time.Duration, concurrency int) *inProcessWorker {
	t.Helper()
	logs := &syncBuffer{}
	log := logrus.New()
	log.SetOutput(io.MultiWriter(logs, testWriter{t}))
	log.SetLevel(logrus.InfoLevel)
	broker, err := rabbitmq.Dial(rabbitmq.Config{URL: testBrokerURL, ConsumerTimeout: consumerTimeout, Log: log})
	if err != nil {
		t.Fatalf("RabbitMQ: %v (run make setup)", err)
	}
	backend, err := redis.New(context.Background(), redis.Config{URL: testRedisURL})
	if err != nil {
		t.Fatalf("Redis: %v (run make setup)", err)
	}
	srv := worker.NewServer(worker.Config{Queues: []string{queue}, Concurrency: concurrency, NodeName: "faults-" + worker.NewTaskID()[:6] + "@test",
		ShutdownTimeout: 2 * time.Second}, broker, backend, mux, log)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { srv.Run(ctx); close(done) }()
	var once sync.Once
	w := &inProcessWorker{broker: broker, srv: srv, logs: logs, stop: func() {
		once.Do(func() {
			srv.StopNow()
			cancel()
			<-done
			broker.Close()
			backend.Close()
		})
	}}
	t.Cleanup(w.stop)
	return w
}

func runsOf(runs *sync.Map, id string) int64 {
	v, ok := runs.Load(id)
	if !ok {
		return 0
	}
	return v.(*atomic.Int64).Load()
}

// TestFaultConsumerTimeout shortens RabbitMQ's consumer_timeout to 5 s:
// a plain consumer holding a message longer has its channel closed (the
// test is real), while the worker runs a 14 s acks_late task, messages
// waiting for a slot behind it and an ETA 12 s away, each exactly once,
// without its channel being closed. Then a worker leasing a long task
// dies, and another takes the task over from its guard.
func TestFaultConsumerTimeout(t *testing.T) {
	requireServices(t)
	setConsumerTimeout(t, 5000)
	rb, err := redis.New(context.Background(), redis.Config{URL: testRedisURL})
	if err != nil {
		t.Fatalf("Redis: %v (run make setup)", err)
	}
	t.Cleanup(func() { rb.Close() })

	t.Run("the timeout is in force", func(t *testing.T) {
		queue := uniqueQueue(t)
		conn, err := amqp.Dial(testBrokerURL)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		ch, _ := conn.Channel()
		ch.QueueDeclare(queue, true, false, false, false, nil)
		ch.Publish("", queue, false, false, amqp.Publishing{Body: []byte("x")})
		closed := ch.NotifyClose(make(chan *amqp.Error, 1))
		msgs, err := ch.Consume(queue, "", false, false, false, false, nil)
		if err != nil {
			t.Fatal(err)
		}
		<-msgs
		select {
		case err := <-closed:
			if err == nil || err.Code != amqp.PreconditionFailed {
				t.Fatalf("channel closed with %v, want PRECONDITION_FAILED", err)
			}
			t.Logf("a plain consumer holding a message: %v", err)
		case <-time.After(30 * time.Second):
			t.Fatal("consumer_timeout of 5 s did not close a channel holding a message for 30 s")
		}
	})

	t.Run("long task, waiting messages and a far ETA run once", func(t *testing.T) {
		queue := uniqueQueue(t)
		var runs sync.Map
		w := startInProcess(t, queue, countingMux(&runs), 5*time.Second, 1)
		client := worker.NewClient(w.broker, worker.ClientConfig{DefaultQueue: queue})
		ctx := t.Context()
		long, err := client.SendTask(ctx, "fault.long", []any{int64(14)}, nil)
		if err != nil {
			t.Fatal(err)
		}
		var quick []string
		for range 3 {
			id, _ := client.SendTask(ctx, "fault.quick", nil, nil)
			quick = append(quick, id)
		}
		eta := worker.NewTaskID()
		if _, err := client.Apply(ctx, protocol.Signature{Task: "fault.quick", Options: protocol.Options{TaskID: eta, ETA: time.Now().Add(12 * time.Second)}}); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		for _, id := range append([]string{long, eta}, quick...) {
			if meta := waitResult(t, rb, id, 90*time.Second); meta.Status != protocol.StateSuccess {
				t.Errorf("%s: %s %v", id, meta.Status, meta.Result)
			}
		}
		if time.Since(start) < 11*time.Second {
			t.Errorf("the ETA task ran after %s, before its countdown", time.Since(start))
		}
		time.Sleep(6 * time.Second) // anything run twice would show by now
		for _, id := range append([]string{long, eta}, quick...) {
			if n := runsOf(&runs, id); n != 1 {
				t.Errorf("task %s ran %d times, want 1", id, n)
			}
		}
		logs := w.logs.String()
		for _, bad := range []string{"PRECONDITION_FAILED", "consumer stopped by the broker", "connection lost"} {
			if strings.Contains(logs, bad) {
				t.Errorf("worker log mentions %q", bad)
			}
		}
		if !strings.Contains(logs, "guarded by a lease") {
			t.Error("the long task was not leased")
		}
	})

	t.Run("a dead worker's leased task is taken over", func(t *testing.T) {
		queue := uniqueQueue(t)
		var runs sync.Map
		first := startInProcess(t, queue, countingMux(&runs), 5*time.Second, 1)
		client := worker.NewClient(first.broker, worker.ClientConfig{DefaultQueue: queue})
		id, err := client.SendTask(t.Context(), "fault.long", []any{int64(60)}, nil)
		if err != nil {
			t.Fatal(err)
		}
		waitFor(t, "the lease", func() bool { return strings.Contains(first.logs.String(), "guarded by a lease") })
		// The worker "dies": its connection goes, and its lease queue with it.
		first.broker.Close()
		second := startInProcess(t, queue, countingMux(&runs), 5*time.Second, 1)
		if meta := waitResult(t, rb, id, 60*time.Second); meta.Status != protocol.StateSuccess || meta.Result != "second run" {
			t.Errorf("result %s %v, want SUCCESS from the second run", meta.Status, meta.Result)
		}
		if !strings.Contains(second.logs.String(), "taking it over") {
			t.Error("the second worker did not report taking the task over")
		}
		time.Sleep(6 * time.Second) // a guard of the finished lease comes back and is dropped
		if n := runsOf(&runs, id); n != 2 {
			t.Errorf("task ran %d times, want 2 (the dead worker, the one that took over)", n)
		}
	})
	t.Logf("FIGURE consumer-timeout: 5 s timeout, 14 s acks_late task + 3 waiting + 1 ETA (12 s) each ran once, 0 channel closes; dead lease taken over once")
}

// amqpHeaders converts Encode's headers to what amqp091 writes.
func amqpHeaders(h map[string]any) amqp.Table {
	t := amqp.Table{}
	for k, v := range h {
		t[k] = amqpValue(v)
	}
	return t
}

func amqpValue(v any) any {
	switch x := v.(type) {
	case map[string]any:
		return amqpHeaders(x)
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = amqpValue(e)
		}
		return out
	case int:
		return int64(x)
	}
	return v
}

// rssKiB reads a process's resident set size.
func rssKiB(pid int) int64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return n
		}
	}
	return 0
}

// TestFaultSoak queues SOAK_MESSAGES (default 100000) no-op tasks
// (celery.accumulate, ignore_result) before the worker binary starts, and
// checks that every one runs and that memory, goroutines and held
// messages stay bounded while the worker drains the queue.
func TestFaultSoak(t *testing.T) {
	requireServices(t)
	n := 100000
	if s := os.Getenv("SOAK_MESSAGES"); s != "" {
		var err error
		if n, err = strconv.Atoi(s); err != nil {
			t.Fatalf("SOAK_MESSAGES: %v", err)
		}
	}
	queue := uniqueQueue(t)
	conn, err := amqp.Dial(testBrokerURL)
	if err != nil {
		t.Fatalf("RabbitMQ: %v (run make setup)", err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	if err := ch.ExchangeDeclare(queue, amqp.ExchangeDirect, true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := ch.QueueDeclare(queue, true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	ch.QueueBind(queue, queue, queue, false, nil)
	if err := ch.Confirm(false); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	var last *amqp.DeferredConfirmation
	for i := range n {
		env, err := protocol.Encode(&protocol.Message{ID: worker.NewTaskID(), Task: "celery.accumulate", Args: []any{int64(i)}, IgnoreResult: true})
		if err != nil {
			t.Fatal(err)
		}
		last, err = ch.PublishWithDeferredConfirm("", queue, false, false, amqp.Publishing{
			Headers: amqpHeaders(env.Headers), ContentType: env.ContentType, ContentEncoding: env.ContentEncoding,
			DeliveryMode: amqp.Persistent, Body: env.Body,
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if ok, err := last.WaitContext(t.Context()); !ok || err != nil {
		t.Fatalf("confirms: %v %v", ok, err)
	}
	published := time.Since(start)

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	const concurrency, multiplier = 8, 4
	w := startBinary(t, "worker", "-b", testBrokerURL, "-Q", queue, "-c", strconv.Itoa(concurrency), "--prefetch-multiplier", strconv.Itoa(multiplier),
		"--result-backend", "disabled", "-l", "warning", "-n", "soak@%h", "--metrics-addr", addr, "--output-dir", t.TempDir())
	metricsURL := "http://" + addr + "/metrics"
	waitFor(t, "the metrics listener", func() bool {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	baseRSS := rssKiB(w.cmd.Process.Pid)
	start = time.Now()
	var maxRSS, maxGoroutines, maxHeld float64
	deadline := time.Now().Add(10 * time.Minute)
	for {
		families := scrape(t, metricsURL)
		maxRSS = max(maxRSS, float64(rssKiB(w.cmd.Process.Pid)))
		maxGoroutines = max(maxGoroutines, metricValue(families, "go_goroutines", ""))
		maxHeld = max(maxHeld, metricValue(families, "vhg_worker_tasks_held", ""))
		if metricValue(families, "vhg_worker_tasks_succeeded_total", "celery.accumulate") >= float64(n) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("only %v of %d tasks done after 10 minutes", metricValue(families, "vhg_worker_tasks_succeeded_total", "celery.accumulate"), n)
		}
		time.Sleep(100 * time.Millisecond)
	}
	drained := time.Since(start)
	q, err := ch.QueueDeclarePassive(queue, true, false, false, false, nil)
	if err != nil || q.Messages != 0 {
		t.Errorf("queue after the soak: %d messages (%v), want 0", q.Messages, err)
	}
	t.Logf("FIGURE soak: %d messages published in %s, drained in %s (%.0f/s); RSS %d KiB at start, max %.0f KiB; max goroutines %.0f; max held %.0f (prefetch %d); lost 0",
		n, published.Round(time.Millisecond), drained.Round(time.Millisecond), float64(n)/drained.Seconds(), baseRSS, maxRSS, maxGoroutines, maxHeld, concurrency*multiplier)
	if maxHeld > concurrency*multiplier {
		t.Errorf("held %v messages, more than the prefetch count %d", maxHeld, concurrency*multiplier)
	}
	if maxRSS > 200*1024 {
		t.Errorf("RSS reached %.0f KiB, want under 200 MiB", maxRSS)
	}
	if maxGoroutines > 500 {
		t.Errorf("%v goroutines, want a bounded number", maxGoroutines)
	}
}
