//go:build integration

package main

// The bad-input matrix: hostile or broken messages and task inputs sent
// through the real RabbitMQ to an in-process worker running the real tasks
// with the Redis backend. Each one must end settled (never requeued
// forever), with a FAILURE stored when the message names a task id, the
// worker still serving afterwards, and nothing written outside the output
// directory. These need RabbitMQ, Redis and ffmpeg (make setup) and fail
// without them.

import (
	"bytes"
	"compress/zlib"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/sirupsen/logrus"
	vhgctx "github.com/vhg/vhg-worker/context"
	"github.com/vhg/vhg-worker/ffmpeg"
	"github.com/vhg/vhg-worker/protocol"
	"github.com/vhg/vhg-worker/tasks"
	"github.com/vhg/vhg-worker/worker"
	"github.com/vhg/vhg-worker/worker/rabbitmq"
	"github.com/vhg/vhg-worker/worker/redis"
)

// rawMessage is one AMQP message of the matrix.
type rawMessage struct {
	name        string
	headers     amqp.Table
	contentType string
	encoding    string
	body        []byte
	// wantExc is the exception type stored as FAILURE under the id
	// header; empty means nothing can be stored (no id).
	wantExc string
	// wantSuccess says the message is an ordinary one after all: SUCCESS
	// is stored under the id header.
	wantSuccess bool
}

// v2 returns protocol v2 headers for task with id.
func v2(task, id string, extra ...any) amqp.Table {
	h := amqp.Table{"lang": "py", "task": task, "id": id, "root_id": id, "parent_id": nil, "group": nil,
		"retries": int64(0), "timelimit": []any{nil, nil}, "eta": nil, "expires": nil, "argsrepr": "", "kwargsrepr": ""}
	for i := 0; i+1 < len(extra); i += 2 {
		h[extra[i].(string)] = extra[i+1]
	}
	return h
}

func zlibBytes(t *testing.T, data []byte) []byte {
	var b bytes.Buffer
	w, _ := zlib.NewWriterLevel(&b, zlib.BestCompression)
	w.Write(data)
	w.Close()
	return b.Bytes()
}

func badMessages(t *testing.T) []rawMessage {
	id := func() string { return worker.NewTaskID() }
	ok := []byte(`[[1, 2], {}, {"callbacks": null, "errbacks": null, "chain": null, "chord": null}]`)
	huge := []byte(`[["` + strings.Repeat("x", 8<<20) + `"], {}, {}]`)
	bomb := zlibBytes(t, append(append([]byte(`[["`), bytes.Repeat([]byte("0"), 80<<20)...), []byte(`"], {}, {}]`)...))
	return []rawMessage{
		{name: "bad JSON", headers: v2("interop.add", id()), body: []byte(`[[1, 2], {`), wantExc: "DecodeError"},
		{name: "body not an array", headers: v2("interop.add", id()), body: []byte(`"args"`), wantExc: "DecodeError"},
		{name: "args not a list", headers: v2("interop.add", id()), body: []byte(`[{"a": 1}, {}, {}]`), wantExc: "DecodeError"},
		{name: "kwargs not a dict", headers: v2("interop.add", id()), body: []byte(`[[1], [2], {}]`), wantExc: "DecodeError"},
		{name: "embed of the wrong type", headers: v2("interop.add", id()), body: []byte(`[[1, 2], {}, {"chain": "x"}]`), wantExc: "DecodeError"},
		{name: "not UTF-8", headers: v2("interop.add", id()), body: []byte("[[\"\xff\xfe\"], {}, {}]"), wantExc: "DecodeError"},
		{name: "empty body", headers: v2("interop.add", id()), body: nil, wantExc: "DecodeError"},
		{name: "pickle", headers: v2("interop.add", id()), contentType: "application/x-python-serialize", body: []byte("\x80\x04K\x01."), wantExc: "ContentDisallowed"},
		{name: "msgpack", headers: v2("interop.add", id()), contentType: "application/x-msgpack", body: []byte{0x93, 0x92, 1, 2, 0x80, 0x80}, wantExc: "ContentDisallowed"},
		{name: "yaml", headers: v2("interop.add", id()), contentType: "application/x-yaml", body: []byte("- [1, 2]"), wantExc: "ContentDisallowed"},
		{name: "unknown encoding", headers: v2("interop.add", id()), encoding: "utf-32", body: ok, wantExc: "ContentDisallowed"},
		{name: "no headers, no v1 body", headers: nil, body: ok},
		{name: "v1 body without task", headers: nil, body: []byte(`{"id": "x", "args": []}`)},
		{name: "task header without id", headers: amqp.Table{"task": "interop.add"}, body: ok},
		{name: "id of the wrong type", headers: v2("interop.add", "", "id", int64(7)), body: ok},
		{name: "bad ETA", headers: v2("interop.add", id(), "eta", "next tuesday"), body: ok, wantExc: "DecodeError"},
		{name: "ETA of the wrong type", headers: v2("interop.add", id(), "eta", []any{int64(1)}), body: ok, wantExc: "DecodeError"},
		{name: "bad expires", headers: v2("interop.add", id(), "expires", "soon"), body: ok, wantExc: "DecodeError"},
		{name: "bad timelimit", headers: v2("interop.add", id(), "timelimit", "abc"), body: ok, wantExc: "DecodeError"},
		{name: "retries not a number", headers: v2("interop.add", id(), "retries", "many"), body: ok, wantExc: "DecodeError"},
		{name: "unknown compression", headers: v2("interop.add", id(), "compression", "application/x-lzma"), body: ok, wantExc: "ContentDisallowed"},
		{name: "corrupt zlib", headers: v2("interop.add", id(), "compression", "application/x-gzip"), body: []byte("x\x9cnot zlib"), wantExc: "DecodeError"},
		{name: "compression bomb (80 MiB)", headers: v2("interop.add", id(), "compression", "application/x-gzip"), body: bomb, wantExc: "DecodeError"},
		{name: "huge body (8 MiB)", headers: v2("interop.add", id()), body: huge, wantExc: "TypeError"},
		{name: "unknown task", headers: v2("no.such.task", id()), body: ok, wantExc: "NotRegistered"},
		{name: "args the task cannot take", headers: v2("interop.add", id()), body: []byte(`[["a", {"b": 1}], {}, {}]`), wantExc: "TypeError"},
	}
}

// hostileContexts are pipeline requests that must fail as ValueError
// without writing anything outside the output directory.
func hostileContexts(out, outside string) []struct {
	name, task string
	args       []any
	kwargs     map[string]any
} {
	ctx := func(kv ...any) map[string]any {
		m := map[string]any{vhgctx.KeyFolderOut: filepath.Join(out, "w1"), vhgctx.KeyID: "w1"}
		for i := 0; i+1 < len(kv); i += 2 {
			m[kv[i].(string)] = kv[i+1]
		}
		return m
	}
	return []struct {
		name, task string
		args       []any
		kwargs     map[string]any
	}{
		{"shell metacharacters in the URL", tasks.NameDownloadFile, nil,
			map[string]any{"context": ctx(vhgctx.KeyURL, "http://127.0.0.1:1/$(touch "+outside+"/pwned);x.mp4")}},
		{"file URL outside the input roots", tasks.NameDownloadFile, nil,
			map[string]any{"context": ctx(vhgctx.KeyURL, "file:///etc/passwd")}},
		{"path traversal in folder_out", tasks.NameDownloadFile, nil,
			map[string]any{"context": ctx(vhgctx.KeyURL, "http://127.0.0.1:1/a.mp4", vhgctx.KeyFolderOut, out+"/../../"+filepath.Base(outside))}},
		{"path traversal in id", tasks.NameGetVideoSize, []any{ctx(vhgctx.KeyID, "../../x", vhgctx.KeyOriginalFile, outside+"/a.mp4")}, nil},
		{"original_file outside folder_out", tasks.NameGetVideoSize, []any{ctx(vhgctx.KeyOriginalFile, "/etc/passwd")}, nil},
		{"context not a dict", tasks.NameGetVideoSize, []any{"not a context"}, nil},
		{"no context at all", tasks.NameTranscode, nil, nil},
		{"bitrate of the wrong type", tasks.NameTranscode, []any{ctx(vhgctx.KeyOriginalFile, filepath.Join(out, "w1", "a.mp4"),
			vhgctx.KeyTargetWidth, int64(320), vhgctx.KeyTargetHeight, int64(180))}, map[string]any{"bitrate": "fast"}},
	}
}

// TestBadInputMatrix sends every bad message and hostile request of the
// matrix, then checks the outcome of each, that the queue is empty (no
// message loops) and that a good task still runs.
func TestBadInputMatrix(t *testing.T) {
	t.Parallel()
	requireServices(t)
	out, outside := t.TempDir(), t.TempDir()
	queue := uniqueQueue(t)
	log := logrus.New()
	log.SetLevel(logrus.ErrorLevel)
	log.SetOutput(testWriter{t})
	broker, err := rabbitmq.Dial(rabbitmq.Config{URL: testBrokerURL, Log: log})
	if err != nil {
		t.Fatalf("RabbitMQ: %v (run make setup)", err)
	}
	t.Cleanup(func() { broker.Close() })
	backend, err := redis.New(context.Background(), redis.Config{URL: testRedisURL})
	if err != nil {
		t.Fatalf("Redis: %v (run make setup)", err)
	}
	t.Cleanup(func() { backend.Close() })
	mux := interopMux()
	tasks.Register(mux, tasks.Deps{OutputDir: out, Preset: "ultrafast"})
	srv := worker.NewServer(worker.Config{Queues: []string{queue}, Concurrency: 4, ShutdownTimeout: 5 * time.Second}, broker, backend, mux, log)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("worker: %v", err)
		}
	})

	conn, err := amqp.Dial(testBrokerURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	messages := badMessages(t)
	for _, m := range messages {
		ct := m.contentType
		if ct == "" {
			ct = "application/json"
		}
		enc := m.encoding
		if enc == "" {
			enc = "utf-8"
		}
		if err := ch.Publish("", queue, false, false, amqp.Publishing{Headers: m.headers, ContentType: ct, ContentEncoding: enc, Body: m.body, DeliveryMode: 2}); err != nil {
			t.Fatalf("%s: publish: %v", m.name, err)
		}
	}
	client := worker.NewClient(broker, worker.ClientConfig{DefaultQueue: queue})
	hostile := hostileContexts(out, outside)
	hostileIDs := make([]string, len(hostile))
	for i, h := range hostile {
		id, err := client.SendTask(t.Context(), h.task, h.args, h.kwargs)
		if err != nil {
			t.Fatal(err)
		}
		hostileIDs[i] = id
	}

	for _, m := range messages {
		id, _ := m.headers["id"].(string)
		if m.wantExc == "" || id == "" {
			continue
		}
		meta := waitReady(t, backend, id)
		exc, _ := protocol.ParseExceptionInfo(meta.Result)
		if meta.Status != protocol.StateFailure || exc.Type != m.wantExc {
			t.Errorf("%s: stored %s %v, want FAILURE %s", m.name, meta.Status, meta.Result, m.wantExc)
		}
	}
	for i, h := range hostile {
		meta := waitReady(t, backend, hostileIDs[i])
		exc, _ := protocol.ParseExceptionInfo(meta.Result)
		want := "ValueError"
		if strings.HasPrefix(h.name, "shell") {
			want = "RuntimeError" // fetched as a plain (escaped) URL, which does not exist
		}
		if meta.Status != protocol.StateFailure || exc.Type != want {
			t.Errorf("%s: stored %s %v, want FAILURE %s", h.name, meta.Status, meta.Result, want)
		}
	}

	// The worker still serves, and nothing is left in (or loops through)
	// the queue.
	good, err := client.SendTask(t.Context(), "interop.add", []any{int64(2), int64(3)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if meta := waitReady(t, backend, good); meta.Status != protocol.StateSuccess {
		t.Errorf("a good task after the matrix: %s %v", meta.Status, meta.Result)
	}
	// Nothing ready, and nothing stuck unacknowledged either (the count of
	// ready messages alone misses a message held or looping).
	waitFor(t, "no message ready or unacknowledged", func() bool {
		ready, unacked := queueCounts(t, queue)
		return ready == 0 && unacked == 0
	})
	if entries, _ := os.ReadDir(outside); len(entries) != 0 {
		t.Errorf("hostile inputs wrote outside the output directory: %v", entries)
	}
	t.Logf("FIGURE bad-input matrix: %d malformed messages + %d hostile task inputs, all settled, worker up, 0 writes outside the output directory",
		len(messages), len(hostile))
}

func waitReady(t *testing.T, b *redis.Backend, id string) protocol.ResultMeta {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		meta, err := b.Result(t.Context(), id)
		if err == nil && meta.Status.Ready() {
			return meta
		}
		if time.Now().After(deadline) {
			t.Fatalf("no result for %s after 60 s (%s, %v)", id, meta.Status, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestDiskFull runs a transcode into an output directory on a 256 KiB
// tmpfs: ffmpeg fails with ENOSPC, the task ends as FAILURE saying so, and
// no partial rendition is left under its final name.
func TestDiskFull(t *testing.T) {
	t.Parallel()
	if os.Geteuid() != 0 {
		t.Skip("mounting a tmpfs needs root (CI runs as root)")
	}
	out := t.TempDir()
	if b, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", out).CombinedOutput(); err != nil {
		t.Fatalf("mount tmpfs: %v %s", err, b)
	}
	t.Cleanup(func() { exec.Command("umount", "-l", out).Run() })
	folder := filepath.Join(out, "w1")
	os.MkdirAll(filepath.Join(folder, "source"), 0o755)
	src := filepath.Join(folder, "source", "clip.mp4")
	err := ffmpeg.Run(t.Context(), ffmpeg.TestPatternArgs(ffmpeg.TestPatternOptions{Output: src, Duration: 2 * time.Second, Width: 320, Height: 180, Preset: "ultrafast"}), ffmpeg.RunOptions{})
	if err != nil {
		t.Fatalf("test clip on the tmpfs: %v", err)
	}
	mux := worker.NewServeMux()
	tasks.Register(mux, tasks.Deps{OutputDir: out, Preset: "ultrafast"})
	c := map[string]any{vhgctx.KeyFolderOut: folder, vhgctx.KeyID: "w1", vhgctx.KeyOriginalFile: src,
		vhgctx.KeyTrackWidth: int64(320), vhgctx.KeyTrackHeight: int64(180), vhgctx.KeyTargetWidth: int64(320), vhgctx.KeyTargetHeight: int64(180)}
	_, err = runTask(t, mux, tasks.NameTranscode, []any{c}, map[string]any{"bitrate": int64(20000)})
	if err == nil || !strings.Contains(err.Error(), "No space left on device") {
		t.Fatalf("transcode on a full disk: %v, want an error saying No space left on device", err)
	}
	if _, err := os.Stat(filepath.Join(folder, "encoding", "320x180.mp4")); err == nil {
		t.Error("a partial rendition is in place under its final name")
	}
	t.Logf("FIGURE disk full: transcode on a 256 KiB tmpfs failed with %q", err)
}

// runTask runs one task through a memory-free path: a Server is not needed
// to call a handler, only a Task, which the worker package builds; so this
// goes through a real in-process worker on its own RabbitMQ queue.
func runTask(t *testing.T, mux *worker.ServeMux, name string, args []any, kwargs map[string]any) (protocol.ResultMeta, error) {
	t.Helper()
	queue := uniqueQueue(t)
	broker, err := rabbitmq.Dial(rabbitmq.Config{URL: testBrokerURL})
	if err != nil {
		t.Fatalf("RabbitMQ: %v (run make setup)", err)
	}
	t.Cleanup(func() { broker.Close() })
	backend, err := redis.New(context.Background(), redis.Config{URL: testRedisURL})
	if err != nil {
		t.Fatalf("Redis: %v (run make setup)", err)
	}
	t.Cleanup(func() { backend.Close() })
	log := logrus.New()
	log.SetOutput(testWriter{t})
	srv := worker.NewServer(worker.Config{Queues: []string{queue}, Concurrency: 1}, broker, backend, mux, log)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { srv.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	id, err := worker.NewClient(broker, worker.ClientConfig{DefaultQueue: queue}).SendTask(t.Context(), name, args, kwargs)
	if err != nil {
		t.Fatal(err)
	}
	meta := waitReady(t, backend, id)
	if meta.Status == protocol.StateSuccess {
		return meta, nil
	}
	return meta, fmt.Errorf("%s: %v", meta.Status, meta.Result)
}

// TestPoisonMessageGivesUp: a task whose worker dies every time it runs it
// (here the worker's connection is cut while the task runs) comes back
// MaxRedeliveries times, then ends as FAILURE WorkerLostError instead of
// looping forever. On a classic queue the worker counts the returns
// itself; on a quorum queue the broker does (x-delivery-count), and with
// an x-delivery-limit the worker gives up at the last delivery the broker
// allows, so that the client reads a FAILURE instead of waiting for a
// message the broker dropped.
func TestPoisonMessageGivesUp(t *testing.T) {
	t.Parallel()
	requireServices(t)
	for _, tt := range []struct {
		name            string
		queueType       string
		maxRedeliveries int
		deliveryLimit   int
	}{
		{"classic", rabbitmq.QueueClassic, 2, 0},
		{"quorum", rabbitmq.QueueQuorum, 2, 0},
		{"quorum-delivery-limit", rabbitmq.QueueQuorum, -1, 3},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			testPoisonMessage(t, tt.queueType, tt.maxRedeliveries, tt.deliveryLimit)
		})
	}
}

func testPoisonMessage(t *testing.T, queueType string, maxRedeliveries, deliveryLimit int) {
	queue := uniqueQueue(t)
	backend, err := redis.New(context.Background(), redis.Config{URL: testRedisURL})
	if err != nil {
		t.Fatalf("Redis: %v (run make setup)", err)
	}
	t.Cleanup(func() { backend.Close() })
	var runs atomicCounter
	mux := worker.NewServeMux()
	mux.HandleFunc("poison.kill", func(ctx context.Context, _ *worker.Task) (any, error) {
		runs.add()
		<-ctx.Done()
		return nil, context.Cause(ctx)
	}, worker.AcksLate())
	// Both settings allow 2 redeliveries: 3 runs.
	const limit = 2
	var id string
	for life := 0; ; life++ {
		broker, err := rabbitmq.Dial(rabbitmq.Config{URL: testBrokerURL, QueueType: queueType, DeliveryLimit: deliveryLimit})
		if err != nil {
			t.Fatalf("RabbitMQ: %v (run make setup)", err)
		}
		log := logrus.New()
		log.SetLevel(logrus.ErrorLevel)
		log.SetOutput(testWriter{t})
		srv := worker.NewServer(worker.Config{Queues: []string{queue}, Concurrency: 1, MaxRedeliveries: maxRedeliveries, ShutdownTimeout: time.Second}, broker, backend, mux, log)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { srv.Run(ctx); close(done) }()
		if life == 0 {
			id, err = worker.NewClient(broker, worker.ClientConfig{DefaultQueue: queue}).SendTask(t.Context(), "poison.kill", nil, nil)
			if err != nil {
				t.Fatal(err)
			}
		}
		if life > limit {
			meta := waitReady(t, backend, id)
			exc, _ := protocol.ParseExceptionInfo(meta.Result)
			if meta.Status != protocol.StateFailure || exc.Type != "WorkerLostError" {
				t.Errorf("after %d deaths: %s %v, want FAILURE WorkerLostError", life, meta.Status, meta.Result)
			}
			cancel()
			<-done
			broker.Close()
			break
		}
		waitFor(t, fmt.Sprintf("run %d", life+1), func() bool { return runs.get() == life+1 })
		broker.Close() // the worker "dies" mid-task: its connection goes
		srv.StopNow()
		cancel()
		<-done
	}
	if n := runs.get(); n != limit+1 {
		t.Errorf("the task ran %d times, want %d (the first run and %d redeliveries)", n, limit+1, limit)
	}
	t.Logf("FIGURE poison message (%s): %d runs, then FAILURE WorkerLostError; no loop", queueType, runs.get())
}

type atomicCounter struct {
	mu sync.Mutex
	n  int
}

func (c *atomicCounter) add() { c.mu.Lock(); c.n++; c.mu.Unlock() }
func (c *atomicCounter) get() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n
}
