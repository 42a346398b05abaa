//go:build integration

package main

// These tests need RabbitMQ at 127.0.0.1:5672 (make setup starts it) and
// ffmpeg; they fail, not skip, without them.

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/sirupsen/logrus"
	"github.com/vhg/vhg-worker/protocol"
	"github.com/vhg/vhg-worker/tasks"
	"github.com/vhg/vhg-worker/worker"
	"github.com/vhg/vhg-worker/worker/rabbitmq"
)

// startSubmitWorker runs the tasks on RabbitMQ, consuming a queue of its
// own (so no other worker takes its tasks), with the legacy amqp result
// backend, as the original deployment did.
func startSubmitWorker(t *testing.T, deps tasks.Deps) string {
	t.Helper()
	broker, err := rabbitmq.Dial(rabbitmq.Config{})
	if err != nil {
		t.Fatalf("RabbitMQ is required at %s (make setup starts it): %v", rabbitmq.DefaultURL, err)
	}
	queue := "vhg-submit-test-" + strings.ReplaceAll(worker.NewTaskID(), "-", "")[:12]
	deps.Status = broker.AMQPBackend(0)
	mux := worker.NewServeMux()
	registerTasks(mux, deps)
	log := logrus.New()
	log.SetOutput(bytes.NewBuffer(nil))
	srv := worker.NewServer(worker.Config{Queues: []string{queue}, Concurrency: 2, ShutdownTimeout: 2 * time.Second},
		broker, broker.AMQPBackend(0), mux, log)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { srv.Run(ctx); close(done) }()
	t.Cleanup(func() {
		srv.StopNow()
		cancel()
		<-done
		if conn, err := amqp.Dial("amqp://guest:guest@127.0.0.1:5672/"); err == nil {
			if ch, err := conn.Channel(); err == nil {
				ch.QueueDelete(queue, false, false, false)
				ch.QueueDelete(rabbitmq.GuardQueue(queue), false, false, false)
			}
			conn.Close()
		}
		broker.Close()
	})
	return queue
}

func TestSubmitFollow(t *testing.T) {
	t.Parallel()
	inputs := t.TempDir()
	src := encodeTestClip(t, filepath.Join(inputs, "clip.mp4"), 640, 360, true)
	notVideo := filepath.Join(inputs, "notes.mp4")
	os.WriteFile(notVideo, []byte("no video here\n"), 0o644)
	queue := startSubmitWorker(t, tasks.Deps{OutputDir: t.TempDir(), InputRoots: []string{inputs},
		Renditions: testRenditions(t, "180:300,360:800"), Preset: "ultrafast"})

	t.Run("complete", func(t *testing.T) {
		t.Parallel()
		ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
		defer cancel()
		var out bytes.Buffer
		final, err := submit(ctx, submitConfig{Queue: queue, Input: src, Follow: true, Out: &out})
		if err != nil {
			t.Fatalf("submit: %v\n%s", err, out.String())
		}
		lines := readLines(t, &out)
		id := lines[0]
		var states []string
		for _, line := range lines[1:] {
			meta, err := protocol.ParseResultMeta([]byte(line))
			if err != nil {
				t.Fatalf("status line %q: %v", line, err)
			}
			if meta.TaskID != id {
				t.Errorf("status for %s, want %s", meta.TaskID, id)
			}
			if meta.Status != tasks.StateProgress {
				states = append(states, string(meta.Status))
			}
		}
		// The legacy backend also stores encode_workflow's own SUCCESS in
		// the same queue, as Celery did.
		got := strings.Join(states, " ")
		if final.Status != tasks.StateComplete || strings.Count(got, "PARTIAL") != 2 || !strings.HasSuffix(got, "COMPLETE") {
			t.Fatalf("statuses %q, final %s; want 2 PARTIAL then COMPLETE", got, final.Status)
		}
		if hls, _ := final.Result.(map[string]any)["hls"].(string); !fileExists(hls) {
			t.Errorf("COMPLETE hls %q does not exist", hls)
		}
	})
	t.Run("failure", func(t *testing.T) {
		t.Parallel()
		ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
		defer cancel()
		var out bytes.Buffer
		final, err := submit(ctx, submitConfig{Queue: queue, Input: notVideo, Follow: true, Out: &out})
		if err != nil {
			t.Fatalf("submit: %v\n%s", err, out.String())
		}
		r, _ := final.Result.(map[string]any)
		if final.Status != protocol.StateFailure || !strings.Contains(fmt.Sprint(r["error"]), "not a media file") {
			t.Fatalf("final status %s %v, want FAILURE saying the file is not a media file", final.Status, final.Result)
		}
	})
}

func readLines(t *testing.T, b *bytes.Buffer) []string {
	t.Helper()
	var lines []string
	sc := bufio.NewScanner(b)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	if len(lines) == 0 {
		t.Fatal("submit printed nothing")
	}
	return lines
}
