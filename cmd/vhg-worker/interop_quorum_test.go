//go:build integration

package main

// Interop on quorum queues (issue 12): the queue as a RabbitMQ 4
// deployment declares it, x-queue-type quorum, with Python Celery 5.2.6
// clients and workers configured with queue_arguments={'x-queue-type':
// 'quorum'} (testdata/python/interop.py, INTEROP_QUEUE_TYPE).

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/vhg/vhg-worker/worker/rabbitmq"
)

// quorumEnv configures the Python side for a quorum queue on an exchange
// of the given type.
func quorumEnv(exchangeType string) []string {
	return []string{"INTEROP_QUEUE_TYPE=quorum", "INTEROP_EXCHANGE_TYPE=" + exchangeType}
}

// TestInteropQuorumClient: a Python client sends to a Go worker started
// with queue type quorum, on a direct and on a topic exchange. Consuming
// the quorum queue at all shows the worker sent no global QoS (RabbitMQ
// refuses it on quorum queues); countdowns and retries wait in the native
// delayed delivery queues, not in the worker.
func TestInteropQuorumClient(t *testing.T) {
	requireServices(t)
	for _, exchangeType := range []string{rabbitmq.ExchangeDirect, rabbitmq.ExchangeTopic} {
		t.Run(exchangeType, func(t *testing.T) {
			queue := uniqueQueue(t)
			env := quorumEnv(exchangeType)
			startGoWorker(t, queue, goWorkerOptions{queueType: rabbitmq.QueueQuorum, exchangeType: exchangeType, concurrency: 1})
			wantJSON(t, "add", scenario(t, "add", queue, env...), `{"result": 5}`)
			got := scenario(t, "countdown", queue, env...)
			wantJSON(t, "countdown result", got["result"], `2`)
			if elapsed, _ := got["elapsed"].(float64); elapsed < 1.9 {
				t.Errorf("countdown=2 task finished after %.2fs, before its ETA", elapsed)
			}
			wantJSON(t, "retry", scenario(t, "retry", queue, env...), `{"result": "retried 1", "states": ["RETRY", "SUCCESS"]}`)
		})
	}
}

// TestInteropQuorumMixedWorkers: a Go worker and a Python worker share one
// quorum queue on a topic exchange, started in either order: each declares
// the queue and exchange the way the other does (RabbitMQ would refuse an
// inequivalent declaration with PRECONDITION_FAILED), and both run tasks.
func TestInteropQuorumMixedWorkers(t *testing.T) {
	requireServices(t)
	for _, order := range []string{"go-first", "python-first"} {
		t.Run(order, func(t *testing.T) {
			queue := uniqueQueue(t)
			env := quorumEnv(rabbitmq.ExchangeTopic)
			goOpts := goWorkerOptions{node: "go@quorum", queueType: rabbitmq.QueueQuorum, exchangeType: rabbitmq.ExchangeTopic}
			if order == "go-first" {
				startGoWorker(t, queue, goOpts)
				startPythonWorker(t, queue, "py@quorum", env...)
			} else {
				startPythonWorker(t, queue, "py@quorum", env...)
				startGoWorker(t, queue, goOpts)
			}
			got := scenario(t, "mixed", queue, env...)
			wantJSON(t, "chords", got["chords"], `[45, 55, 65, 75, 85]`)
			wantJSON(t, "workers", got["workers"], `["go@quorum", "py@quorum"]`)
			// Retries published by either worker come back through the
			// queue, whichever worker takes them.
			wantJSON(t, "retry", scenario(t, "retry", queue, env...), `{"result": "retried 1", "states": ["RETRY", "SUCCESS"]}`)
		})
	}
}

// TestBinaryOnDeploymentQuorumQueue is issue 12's report: a quorum queue
// declared by the deployment (here on a topic exchange), then
// `vhg-worker worker -Q <it> --exchange-type topic`. Without the queue
// type the worker exits at start on RabbitMQ's PRECONDITION_FAILED; with
// it (here from the environment) it serves a Python client.
func TestBinaryOnDeploymentQuorumQueue(t *testing.T) {
	requireServices(t)
	bin := buildBinary(t)
	queue := uniqueQueue(t)
	conn, err := amqp.Dial(testBrokerURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	if err := ch.ExchangeDeclare(queue, amqp.ExchangeTopic, true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := ch.QueueDeclare(queue, true, false, false, false, amqp.Table{"x-queue-type": "quorum"}); err != nil {
		t.Fatal(err)
	}
	if err := ch.QueueBind(queue, queue, queue, false, nil); err != nil {
		t.Fatal(err)
	}

	args := []string{"worker", "-b", testBrokerURL, "--result-backend", testRedisURL, "-Q", queue, "-c", "2", "-l", "warning", "--exchange-type", "topic"}
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), "CELERY_TASK_DEFAULT_QUEUE_TYPE=", "CELERY_TASK_DEFAULT_EXCHANGE_TYPE=")
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || !strings.Contains(string(out), "PRECONDITION_FAILED") || !strings.Contains(string(out), "x-queue-type") {
		t.Errorf("classic worker on a quorum queue: %v, want an exit on PRECONDITION_FAILED x-queue-type; output:\n%s", err, out)
	}

	cmd = exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), "CELERY_TASK_DEFAULT_QUEUE_TYPE=quorum")
	var logs bytes.Buffer
	cmd.Stderr = &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(os.Interrupt)
		err := cmd.Wait()
		// The log is read once the process is gone (it writes to logs).
		if err != nil || strings.Contains(logs.String(), "PRECONDITION_FAILED") {
			t.Errorf("worker exited with %v after SIGINT; log:\n%s", err, logs.String())
		}
	})
	got := scenario(t, "accumulate", queue, quorumEnv(rabbitmq.ExchangeTopic)...)
	wantJSON(t, "accumulate", got, `{"all": {"result": [1, 2, 3]}, "index": {"result": 2}}`)
}

// TestSubmitToQuorumQueue: submit declares the queue before sending, as a
// Celery client does, so on a deployment's quorum queue it needs the
// queue type; with it the message lands in the queue.
func TestSubmitToQuorumQueue(t *testing.T) {
	requireServices(t)
	queue := uniqueQueue(t)
	conn, err := amqp.Dial(testBrokerURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ch.QueueDeclare(queue, true, false, false, false, amqp.Table{"x-queue-type": "quorum"}); err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	var out bytes.Buffer
	if _, err := submit(ctx, submitConfig{BrokerURL: testBrokerURL, Queue: queue, Input: "http://example.invalid/in.mp4", Out: &out}); err == nil ||
		!strings.Contains(err.Error(), "x-queue-type") {
		t.Errorf("submit to a quorum queue as classic: err = %v, want PRECONDITION_FAILED on x-queue-type", err)
	}
	out.Reset()
	if _, err := submit(ctx, submitConfig{BrokerURL: testBrokerURL, Queue: queue, QueueType: rabbitmq.QueueQuorum,
		Input: "http://example.invalid/in.mp4", Out: &out}); err != nil {
		t.Fatalf("submit with QueueType quorum: %v", err)
	}
	id := strings.TrimSpace(out.String())
	msg, ok, err := ch.Get(queue, true)
	if err != nil || !ok {
		t.Fatalf("get from %s: %v %v", queue, ok, err)
	}
	if msg.Headers["id"] != id || msg.Headers["task"] != "adaptation.commons.encode_workflow" {
		t.Errorf("queued %v %v, want encode_workflow %s", msg.Headers["task"], msg.Headers["id"], id)
	}
}
