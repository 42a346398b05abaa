package tasks

// Helpers shared by the unit tests (memory broker and backend, no service)
// and the integration tests (real ffmpeg) of this package.

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	vhgctx "github.com/vhg/vhg-worker/context"
	"github.com/vhg/vhg-worker/protocol"
	"github.com/vhg/vhg-worker/worker"
	"github.com/vhg/vhg-worker/worker/memory"
)

// statusRecorder is a StatusPublisher that keeps what it is given.
type statusRecorder struct {
	mu    sync.Mutex
	metas []protocol.ResultMeta
	corrs []string
}

func (r *statusRecorder) Publish(_ context.Context, meta protocol.ResultMeta, correlationID string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.metas = append(r.metas, meta)
	r.corrs = append(r.corrs, correlationID)
	return nil
}

func (r *statusRecorder) statuses() []protocol.ResultMeta {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]protocol.ResultMeta(nil), r.metas...)
}

// waitFor polls until cond holds or 60 s pass.
func (r *statusRecorder) waitFor(t *testing.T, what string, cond func([]protocol.ResultMeta) bool) []protocol.ResultMeta {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		if s := r.statuses(); cond(s) {
			return s
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s; statuses: %v", what, r.statuses())
	return nil
}

func testLog(t *testing.T) logrus.FieldLogger {
	l := logrus.New()
	l.SetOutput(testWriter{t})
	l.SetLevel(logrus.DebugLevel)
	return l
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// newTask is a request for a handler called directly, outside a worker.
func newTask(t *testing.T, name string, args []any, kwargs map[string]any) *worker.Task {
	id := worker.NewTaskID()
	return &worker.Task{
		Msg: &protocol.Message{ID: id, Task: name, Args: args, Kwargs: kwargs, RootID: "root-" + id[:8]},
		Log: testLog(t).WithField("task", name),
	}
}

// call runs a handler and returns its context.
func call(t *testing.T, h worker.HandlerFunc, name string, args []any, kwargs map[string]any) vhgctx.Context {
	t.Helper()
	res, err := h(t.Context(), newTask(t, name, args, kwargs))
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	c, err := vhgctx.FromValue(res)
	if err != nil {
		t.Fatalf("%s returned %T: %v", name, res, err)
	}
	return c
}

// startWorker runs the tasks on an in-memory broker with a worker.Server
// and returns a client to send work and the status recorder.
func startWorker(t *testing.T, deps Deps) (*worker.Client, *memory.Broker, *statusRecorder) {
	client, broker, status, _ := startServer(t, deps)
	return client, broker, status
}

// startServer runs a worker with the pipeline (and its RevokedStatus
// observer) on the memory broker until the test ends.
func startServer(t *testing.T, deps Deps) (*worker.Client, *memory.Broker, *statusRecorder, *worker.Server) {
	t.Helper()
	status := &statusRecorder{}
	deps.Status = status
	broker, backend := memory.NewBroker(), memory.NewBackend()
	mux := worker.NewServeMux()
	p := Register(mux, deps)
	srv := worker.NewServer(worker.Config{Queues: WithFailureQueues([]string{"celery"}), Concurrency: 2, ShutdownTimeout: time.Second}, broker, backend, mux, testLog(t))
	srv.Observe(p.RevokedStatus(testLog(t)))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { srv.Run(ctx); close(done) }()
	t.Cleanup(func() { srv.StopNow(); cancel(); <-done })
	return worker.NewClient(broker, worker.ClientConfig{Backend: backend}), broker, status, srv
}

func countStatus(s []protocol.ResultMeta, state protocol.State) int {
	n := 0
	for _, m := range s {
		if m.Status == state {
			n++
		}
	}
	return n
}
