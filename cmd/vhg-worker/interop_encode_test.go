//go:build integration

package main

import (
	"context"
	"encoding/xml"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/vhg/vhg-worker/ffmpeg"
	"github.com/vhg/vhg-worker/protocol"
	"github.com/vhg/vhg-worker/tasks"
	"github.com/vhg/vhg-worker/worker"
	"github.com/vhg/vhg-worker/worker/rabbitmq"
	"github.com/vhg/vhg-worker/worker/redis"
)

// TestInteropPythonClientEncodes has a Python Celery client trigger
// adaptation.commons.encode_workflow, as the platform does, on a Go worker
// with the Redis result backend and with RabbitMQ alone (the legacy amqp
// backend of the original deployment), and follows the job as the Java
// consumer does: on the status queue named after the root task id.
func TestInteropPythonClientEncodes(t *testing.T) {
	requireServices(t)
	inputs := t.TempDir()
	src := encodeTestClip(t, filepath.Join(inputs, "clip.mp4"), 640, 360, true)
	for _, backend := range []string{"redis", "amqp"} {
		t.Run(backend, func(t *testing.T) {
			queue := uniqueQueue(t)
			out := t.TempDir()
			startPipelineWorker(t, queue, backend, tasks.Deps{OutputDir: out, InputRoots: []string{inputs},
				Renditions: testRenditions(t, "180:300,360:800"), Preset: "ultrafast"})

			env := []string{"INTEROP_INPUT=" + src}
			if backend == "redis" {
				env = append(env, "INTEROP_WAIT=1") // the client can wait on encode_workflow itself
			}
			got := scenario(t, "encode", queue, env...)
			rootID, _ := got["id"].(string)
			if id, _ := got["result"].(string); backend == "redis" && len(id) != 36 {
				// encode_workflow returns the id of the workflow's last step.
				t.Errorf("encode_workflow result = %v, want the final task id", got["result"])
			}
			statuses := followStatusQueue(t, rootID)

			partial := 0
			var complete protocol.ResultMeta
			for _, m := range statuses {
				if m.TaskID != rootID {
					t.Errorf("status for %s on the queue of %s", m.TaskID, rootID)
				}
				r, _ := m.Result.(map[string]any)
				switch m.Status {
				case tasks.StatePartial:
					partial++
					if hls, _ := r["hls"].(string); !fileExists(hls) {
						t.Errorf("PARTIAL names %v, which does not exist", r["hls"])
					}
				case tasks.StateComplete:
					complete = m
				case protocol.StateFailure:
					t.Fatalf("FAILURE: %v", m.Result)
				}
			}
			if partial != 2 || complete.Status != tasks.StateComplete {
				t.Fatalf("%d PARTIAL and final %q, want 2 PARTIAL then COMPLETE", partial, statuses[len(statuses)-1].Status)
			}
			r := complete.Result.(map[string]any)
			master, _ := r["hls"].(string)
			for _, dim := range []string{"320x180", "640x360"} {
				probe, err := ffmpeg.ProbeFormats(t.Context(), filepath.Join(filepath.Dir(master), dim, "playlist.m3u8"), []string{"hls", "mpegts"})
				if err != nil {
					t.Fatalf("probe variant %s: %v", dim, err)
				}
				if v, _ := probe.Video(); strconv.Itoa(v.Width)+"x"+strconv.Itoa(v.Height) != dim {
					t.Errorf("variant %s has video %dx%d", dim, v.Width, v.Height)
				}
			}
			data, err := os.ReadFile(r["dash"].(string))
			if err != nil {
				t.Fatal(err)
			}
			var m mpd
			if err := xml.Unmarshal(data, &m); err != nil {
				t.Fatalf("MPD: %v", err)
			}
			var reps []string
			for _, p := range m.Periods {
				for _, set := range p.AdaptationSets {
					for _, rep := range set.Representations {
						reps = append(reps, set.ContentType+":"+strconv.Itoa(rep.Width)+"x"+strconv.Itoa(rep.Height))
					}
				}
			}
			if strings.Join(reps, ",") != "video:320x180,video:640x360,audio:0x0" {
				t.Errorf("MPD representations %v", reps)
			}
		})
	}
}

// startPipelineWorker runs the adaptation tasks in-process on queue, with
// the status messages on the broker's legacy amqp backend.
func startPipelineWorker(t *testing.T, queue, backendName string, deps tasks.Deps) {
	t.Helper()
	log := logrus.New()
	log.SetLevel(logrus.WarnLevel)
	log.SetOutput(testWriter{t})
	broker, err := rabbitmq.Dial(rabbitmq.Config{URL: testBrokerURL, Log: log})
	if err != nil {
		t.Fatalf("connect to RabbitMQ: %v (run `make setup`)", err)
	}
	var backend worker.Backend = broker.AMQPBackend(0)
	if backendName == "redis" {
		rb, err := redis.New(context.Background(), redis.Config{URL: testRedisURL})
		if err != nil {
			t.Fatalf("connect to Redis: %v (run `make setup`)", err)
		}
		t.Cleanup(func() { rb.Close() })
		backend = rb
	}
	deps.Status = broker.AMQPBackend(0)
	deps.FailureQueue = tasks.FailureQueue(queue)
	mux := worker.NewServeMux()
	pipeline := registerTasks(mux, deps)
	srv := worker.NewServer(worker.Config{Queues: tasks.WithFailureQueues([]string{queue}), Concurrency: 2, ShutdownTimeout: 5 * time.Second},
		broker, backend, mux, log)
	srv.Observe(pipeline.RevokedStatus(log))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("worker: %v", err)
		}
		broker.Close()
	})
}

// followStatusQueue consumes the root task's status queue, as the Java
// consumer does, until COMPLETE or FAILURE.
func followStatusQueue(t *testing.T, rootID string) []protocol.ResultMeta {
	t.Helper()
	conn, deliveries, err := consumeStatus(testBrokerURL, rootID)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var statuses []protocol.ResultMeta
	timeout := time.After(2 * time.Minute)
	for {
		select {
		case d, ok := <-deliveries:
			if !ok {
				t.Fatal("status queue consumer closed")
			}
			if d.ContentType != "application/json" || d.DeliveryMode != 2 || d.Exchange != rabbitmq.ResultExchange {
				t.Errorf("status message: exchange %q content_type %q delivery_mode %d", d.Exchange, d.ContentType, d.DeliveryMode)
			}
			meta, err := protocol.ParseResultMeta(d.Body)
			if err != nil {
				t.Fatalf("status message %s: %v", d.Body, err)
			}
			statuses = append(statuses, meta)
			if meta.Status == tasks.StateComplete || meta.Status == protocol.StateFailure {
				return statuses
			}
		case <-timeout:
			t.Fatalf("no COMPLETE or FAILURE after 2 minutes; got %d statuses", len(statuses))
		}
	}
}
