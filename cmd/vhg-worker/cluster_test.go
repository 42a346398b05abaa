//go:build integration && faults

package main

// Cluster tests: a private three-node RabbitMQ cluster (clustertest) with
// quorum queues and TLS listeners, beside the system node, which they
// never touch. A worker given the three URLs fails over when its node is
// stopped; 10 000 no-op tasks survive a node's stop and start; the worker
// connects over TLS with the test's CA and refuses another. Run by
// `make cluster-test` (and `make test`, after the fault tests):
//
//	go test -race -count=1 -p 1 -tags 'integration faults' -run '^TestCluster' ./cmd/vhg-worker

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/vhg/vhg-worker/protocol"
	"github.com/vhg/vhg-worker/tasks"
	"github.com/vhg/vhg-worker/worker"
	"github.com/vhg/vhg-worker/worker/rabbitmq"
	"github.com/vhg/vhg-worker/worker/rabbitmq/clustertest"
	"github.com/vhg/vhg-worker/worker/redis"
	"github.com/vhg/vhg-worker/worker/tlstest"
)

// TestCluster starts one cluster for its parts, which run in turn.
func TestCluster(t *testing.T) {
	requireServices(t) // Redis stores the results; ffmpeg, Python as usual
	certs := tlstest.Make(t, t.TempDir())
	c := clustertest.Start(t, clustertest.Options{TLS: &certs})
	t.Run("workflow while the worker's node stops", func(t *testing.T) { clusterWorkflowFailover(t, c) })
	t.Run("10000 no-op tasks while a node stops and starts", func(t *testing.T) { clusterNoopTasks(t, c) })
	t.Run("TLS", func(t *testing.T) { clusterTLS(t, c, certs) })
	t.Logf("FIGURE cluster-memory: after the tests, %s", c.RSS())
	t.Run("start-up error masks every password", func(t *testing.T) {
		// Issue 15's report: the second password of a list was printed.
		// Nodes 1 and 2 are stopped for this.
		c.Stop(t, c.Nodes[0])
		c.Stop(t, c.Nodes[1])
		out, err := exec.Command(workerBinary(t), "worker", "-b",
			"amqp://guest:secret1@"+c.Nodes[0].Addr()+"//;amqp://guest:secret2@"+c.Nodes[1].Addr()+"//").CombinedOutput()
		if err == nil || strings.Contains(string(out), "secret") || strings.Count(string(out), "guest:xxxxx@") < 4 {
			t.Errorf("worker: %v\n%s\nwant a start-up error naming both URLs without their passwords", err, out)
		}
		t.Logf("start-up error: %s", out)
	})
}

// metricsAddr waits for the binary's "serving /metrics" line and returns
// the address.
func (w *binWorker) metricsAddr(t *testing.T) string {
	t.Helper()
	re := regexp.MustCompile(`serving /metrics and /healthz.*addr="?([0-9.]+:[0-9]+)`)
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		if m := re.FindStringSubmatch(w.logs.String()); m != nil {
			return m[1]
		}
		select {
		case <-w.done:
			t.Fatalf("the worker exited:\n%s", w.logs.String())
		case <-time.After(100 * time.Millisecond):
		}
	}
	t.Fatalf("the worker serves no metrics:\n%s", w.logs.String())
	return ""
}

func getBody(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// clusterWorkflowFailover runs a workflow on a worker given the three
// nodes' URLs (node 1 first); mid-transcode node 1 is stopped. The worker
// moves to node 2, consumes again, and the workflow reaches COMPLETE with
// each variant once. Statuses are read on node 3, which stays up.
func clusterWorkflowFailover(t *testing.T, c *clustertest.Cluster) {
	inputs, out := t.TempDir(), t.TempDir()
	src := faultClip(t, inputs, 20*time.Second)
	queue := "cluster-" + worker.NewTaskID()[:8]
	n1, n2, n3 := c.Nodes[0], c.Nodes[1], c.Nodes[2]
	w := startBinary(t, "worker", "-b", c.URL(), "--queue-type", "quorum", "--result-backend", testRedisURL,
		"-Q", queue, "-c", "2", "-n", "cluster@%h", "--metrics-addr", "127.0.0.1:0",
		"--output-dir", out, "--input-roots", inputs, "--renditions", "180:300,360:800")
	addr := w.metricsAddr(t)
	waitForBody(t, "http://"+addr+"/healthz", "ok broker amqp://guest:xxxxx@"+n1.Addr())

	ctx, cancel := context.WithTimeout(t.Context(), 6*time.Minute)
	defer cancel()
	id := worker.NewTaskID()
	f := followStatusesAt(t, ctx, n3.URL(), id)
	client, err := rabbitmq.Dial(rabbitmq.Config{URL: n3.URL(), QueueType: rabbitmq.QueueQuorum, ConnectionName: "cluster submit"})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	sig := protocol.Signature{Task: tasks.NameEncodeWorkflow, Args: []any{src}, Kwargs: map[string]any{}, Options: protocol.Options{TaskID: id}}
	if _, err := worker.NewClient(client, worker.ClientConfig{DefaultQueue: queue}).Apply(ctx, sig); err != nil {
		t.Fatal(err)
	}
	f.waitStatus(t, "transcode PROGRESS", 3*time.Minute, func(m protocol.ResultMeta) bool {
		r, _ := m.Result.(map[string]any)
		return m.Status == tasks.StateProgress && r["step"] == "transcode"
	})
	stopped := time.Now()
	c.Stop(t, n1)
	t.Logf("node 1 (%s) stopped mid-transcode in %s", n1.Name, time.Since(stopped).Round(time.Millisecond))
	seen := f.waitStatus(t, "COMPLETE", 5*time.Minute, isStatus(tasks.StateComplete))
	checkWorkflowOutputs(t, seen[len(seen)-1], []string{"320x180", "640x360"})
	code, body := getBody(t, "http://"+addr+"/healthz")
	if code != http.StatusOK || !strings.Contains(body, n2.Addr()) {
		t.Errorf("/healthz after the failover: %d %q, want ok on node 2 %s", code, body, n2.Addr())
	}
	if _, m := getBody(t, "http://"+addr+"/metrics"); !strings.Contains(m, `vhg_worker_broker_node_info{node="amqp://guest:xxxxx@`+n2.Addr()+`//"} 1`) {
		t.Errorf("metrics do not name node 2:\n%s", grepLines(m, "broker"))
	}
	logs := w.logs.String()
	restored := regexp.MustCompile(`broker connection restored.*node="?amqp://guest:xxxxx@` + regexp.QuoteMeta(n2.Addr()))
	if !restored.MatchString(logs) {
		t.Errorf("the log does not say the worker moved to node 2:\n%s", grepLines(logs, "broker"))
	}
	if strings.Contains(logs, "guest:guest@") {
		t.Error("a password is in the log")
	}
	down := regexp.MustCompile(`broker connection restored.*down=([0-9.]+m?s)`).FindStringSubmatch(logs)
	var downFor string
	if down != nil {
		downFor = down[1]
	}
	t.Logf("FIGURE cluster-workflow: node 1 stopped mid-transcode; the worker was on node 2 %s after it lost node 1 (its log); "+
		"workflow COMPLETE, each variant once", downFor)
	// Node 1 back for the next part.
	c.Restart(t, n1)
}

func waitForBody(t *testing.T, url, want string) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		code, body := getBody(t, url)
		if code == http.StatusOK && strings.Contains(body, want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %d %q, want 200 with %q", url, code, body, want)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func grepLines(s, word string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, word) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// countingBackend counts the SUCCESS results stored per task id.
type countingBackend struct {
	worker.Backend
	stored sync.Map // id -> *atomic.Int64
}

func (b *countingBackend) Store(ctx context.Context, meta protocol.ResultMeta, to worker.ReplyRoute) error {
	err := b.Backend.Store(ctx, meta, to)
	if err == nil && meta.Status == protocol.StateSuccess {
		v, _ := b.stored.LoadOrStore(meta.TaskID, new(atomic.Int64))
		v.(*atomic.Int64).Add(1)
	}
	return err
}

// clusterNoopTasks publishes 10 000 no-op tasks to a quorum queue and runs
// them on an in-process worker given the three URLs (node 1 first); node 1
// is stopped after about a third and started again after about two
// thirds. Every task's result is stored, each exactly once: the figures
// are the tasks lost, the tasks run twice, and the time from the stop to
// the first task run after it.
func clusterNoopTasks(t *testing.T, c *clustertest.Cluster) {
	const total = 10000
	queue := "cluster-noop-" + worker.NewTaskID()[:8]
	n1, n3 := c.Nodes[0], c.Nodes[2]
	var runs sync.Map
	var done atomic.Int64
	var mu sync.Mutex
	var runTimes []time.Time
	mux := worker.NewServeMux()
	mux.HandleFunc("cluster.noop", func(ctx context.Context, task *worker.Task) (any, error) {
		v, _ := runs.LoadOrStore(task.ID(), new(atomic.Int64))
		if v.(*atomic.Int64).Add(1) == 1 {
			done.Add(1)
		}
		mu.Lock()
		runTimes = append(runTimes, time.Now())
		mu.Unlock()
		return nil, nil
	})

	log := logrus.New()
	logs := &syncBuffer{}
	log.SetOutput(logs)
	log.SetLevel(logrus.WarnLevel)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("worker log:\n%s", logs.String())
		}
	})
	var lostAt, backAt atomic.Pointer[time.Time]
	broker, err := rabbitmq.Dial(rabbitmq.Config{URL: c.URL(), QueueType: rabbitmq.QueueQuorum, Log: log, MaxBackoff: 2 * time.Second,
		OnConnectionLost: func(error) { now := time.Now(); lostAt.CompareAndSwap(nil, &now) },
		OnReconnect:      func() { now := time.Now(); backAt.CompareAndSwap(nil, &now) }})
	if err != nil {
		t.Fatal(err)
	}
	defer broker.Close()
	rb, err := redis.New(context.Background(), redis.Config{URL: testRedisURL, Expires: time.Hour})
	if err != nil {
		t.Fatalf("Redis: %v (run make setup)", err)
	}
	defer rb.Close()
	backend := &countingBackend{Backend: rb}

	srv := worker.NewServer(worker.Config{Queues: []string{queue}, Concurrency: 4, NodeName: "cluster-noop@test",
		ShutdownTimeout: 5 * time.Second}, broker, backend, mux, log)
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan struct{})
	go func() { srv.Run(ctx); close(stopped) }()
	defer func() { cancel(); <-stopped }()

	// A client publishes on node 3, with confirms, all along: tasks
	// arrive before, during and after node 1's absence.
	client, err := rabbitmq.Dial(rabbitmq.Config{URL: n3.URL(), QueueType: rabbitmq.QueueQuorum, ConnectionName: "cluster noop client"})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	cl := worker.NewClient(client, worker.ClientConfig{DefaultQueue: queue})
	ids := make([]string, total)
	for i := range ids {
		ids[i] = worker.NewTaskID()
	}
	var published atomic.Int64
	pubErr := make(chan error, 1)
	go func() {
		start := time.Now()
		for i, id := range ids {
			if _, err := cl.Apply(ctx, protocol.Signature{Task: "cluster.noop", Kwargs: map[string]any{},
				Options: protocol.Options{TaskID: id}}); err != nil {
				pubErr <- fmt.Errorf("publish %d: %w", i, err)
				return
			}
			published.Add(1)
		}
		t.Logf("%d tasks published with confirms in %s", total, time.Since(start).Round(time.Millisecond))
		pubErr <- nil
	}()

	waitCount := func(what string, n int64) {
		t.Helper()
		for done.Load() < n {
			select {
			case err := <-pubErr:
				if err != nil {
					t.Fatal(err)
				}
				pubErr = nil
			case <-t.Context().Done():
				t.Fatalf("%s: %d of %d done", what, done.Load(), n)
			case <-time.After(20 * time.Millisecond):
			}
		}
	}
	waitCount("before the stop", total/10)
	if broker.NodeAddr() != n1.Addr() {
		t.Fatalf("the worker is on %s, want node 1 %s", broker.NodeAddr(), n1.Addr())
	}
	stopAt := time.Now()
	c.Stop(t, n1)
	t.Logf("node 1 stopped at %d done, %d published (the stop took %s)", done.Load(), published.Load(), time.Since(stopAt).Round(time.Millisecond))
	c.Restart(t, n1)
	t.Logf("node 1 started again at %d done, %d published", done.Load(), published.Load())
	waitCount("all", total)
	// Let redeliveries of tasks already run show up before counting.
	time.Sleep(3 * time.Second)
	cancel()
	<-stopped

	lostTasks, dupRuns, dupStores := 0, 0, 0
	for _, id := range ids {
		if runsOf(&runs, id) == 0 {
			lostTasks++
		}
		if runsOf(&runs, id) > 1 {
			dupRuns++
		}
		v, ok := backend.stored.Load(id)
		switch {
		case !ok:
			if runsOf(&runs, id) > 0 {
				t.Errorf("task %s ran but its result was not stored", id)
			}
		case v.(*atomic.Int64).Load() > 1:
			dupStores++
		}
		meta, err := rb.Result(context.Background(), id)
		if err != nil || meta.Status != protocol.StateSuccess {
			t.Errorf("result of %s in Redis: %v %v", id, meta.Status, err)
		}
	}
	mu.Lock()
	// Failover: the stop command, the worker seeing its connection go
	// (the node closes it while it shuts down), the connection to the
	// next node, the first task run after that.
	var toLost, toBack, toFirst time.Duration
	lost, back := lostAt.Load(), backAt.Load()
	if lost == nil || back == nil {
		t.Fatal("the worker never lost or never restored its connection")
	}
	toLost, toBack = lost.Sub(stopAt), back.Sub(stopAt)
	if i := slices.IndexFunc(runTimes, func(at time.Time) bool { return at.After(*back) }); i >= 0 {
		toFirst = runTimes[i].Sub(stopAt)
	}
	mu.Unlock()
	if lostTasks > 0 {
		t.Errorf("%d tasks lost", lostTasks)
	}
	if dupStores > 0 {
		t.Errorf("%d results stored more than once", dupStores)
	}
	t.Logf("FIGURE cluster-noop: %d tasks, node stopped and started again: lost %d, run twice %d, stored twice %d, "+
		"from the stop command: connection lost after %s, on the next node after %s, first task run there after %s "+
		"(%s from the loss); worker now on %s",
		total, lostTasks, dupRuns, dupStores, toLost.Round(time.Millisecond), toBack.Round(time.Millisecond), toFirst.Round(time.Millisecond),
		(toFirst - toLost).Round(time.Millisecond), broker.NodeAddr())
	client.DeleteQueue(queue)
}

// clusterTLS starts the worker binary against a node's TLS listener: with
// the test's CA (and a client certificate) it runs; with another CA, or
// a host name the certificate does not carry, it refuses to start with
// an error that says so.
func clusterTLS(t *testing.T, c *clustertest.Cluster, certs tlstest.Files) {
	n := c.Nodes[1]
	tlsURL := fmt.Sprintf("amqps://guest:guest@localhost:%d//", n.TLSPort)
	queue := "cluster-tls-" + worker.NewTaskID()[:8]
	for _, ok := range []struct {
		name string
		args []string
	}{
		{"flags", []string{"-b", tlsURL, "--broker-ssl-ca", certs.CA, "--broker-ssl-cert", certs.ClientCert, "--broker-ssl-key", certs.ClientKey}},
		{"URL options", []string{"-b", tlsURL + "?ssl_ca_certs=" + certs.CA + "&ssl_certfile=" + certs.ClientCert + "&ssl_keyfile=" + certs.ClientKey}},
	} {
		t.Run(ok.name, func(t *testing.T) {
			w := startBinary(t, append([]string{"worker", "--queue-type", "quorum", "--result-backend", testRedisURL,
				"-Q", queue, "-c", "1", "--metrics-addr", "127.0.0.1:0", "--output-dir", t.TempDir()}, ok.args...)...)
			waitForBody(t, "http://"+w.metricsAddr(t)+"/healthz", fmt.Sprintf("ok broker amqps://guest:xxxxx@localhost:%d//", n.TLSPort))
		})
	}
	for _, bad := range []struct {
		name string
		args []string
		want string
	}{
		{"other CA", []string{"-b", tlsURL, "--broker-ssl-ca", certs.OtherCA}, "not signed by a trusted CA"},
		{"wrong host name", []string{"-b", fmt.Sprintf("amqps://guest:guest@localhost:%d//?ssl_server_hostname=rabbit.example", n.TLSPort),
			"--broker-ssl-ca", certs.CA}, "not valid for this host name"},
	} {
		t.Run(bad.name, func(t *testing.T) {
			cmd := exec.Command(workerBinary(t), append([]string{"worker", "--queue-type", "quorum", "-Q", queue}, bad.args...)...)
			out, err := cmd.CombinedOutput()
			if err == nil || !strings.Contains(string(out), bad.want) || strings.Contains(string(out), "guest:guest") {
				t.Errorf("worker: %v\n%s\nwant a start-up error saying %q, without the password", err, out, bad.want)
			}
			t.Logf("start-up error: %s", strings.SplitN(string(out), "\n", 2)[0])
		})
	}
}
