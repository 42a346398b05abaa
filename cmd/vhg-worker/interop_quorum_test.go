package main

// Interop on quorum queues (issue 12): the queue as a RabbitMQ 4
// deployment declares it, x-queue-type quorum, with Python Celery 5.2.6
// clients and workers configured with queue_arguments={'x-queue-type':
// 'quorum'} (testdata/python/interop.py, INTEROP_QUEUE_TYPE).

import (
	"testing"

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
