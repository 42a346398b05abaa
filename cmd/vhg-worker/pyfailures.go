package main

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/sirupsen/logrus"
	"github.com/vhg/vhg-worker/protocol"
	"github.com/vhg/vhg-worker/tasks"
	"github.com/vhg/vhg-worker/worker"
	"github.com/vhg/vhg-worker/worker/rabbitmq"
)

// PythonFailureEvents is the queue where Go workers receive the Celery
// events they turn into the FAILURE statuses of workflows built by the
// original encode_workflow (see tasks.PythonFailures). Only Go workers
// consume it, one at a time (single active consumer); it disappears an
// hour after the last one has gone.
const PythonFailureEvents = "vhg.python-failures"

// pyFailuresConfig configures watchPythonFailures.
type pyFailuresConfig struct {
	URL    string                // broker URL, or a cluster's ";"-separated list
	TLS    worker.TLSFiles       // for amqps:// URLs
	Queue  string                // empty means PythonFailureEvents
	Status tasks.StatusPublisher // where FAILURE statuses go
	Log    logrus.FieldLogger
}

// watchPythonFailures subscribes to the Celery events of the original
// Python workers and publishes the FAILURE status of their workflows (see
// tasks.PythonFailures) until ctx is done. It returns once the first
// subscription is in place; a lost connection is repaired in the
// background.
func watchPythonFailures(ctx context.Context, cfg pyFailuresConfig) error {
	if cfg.Queue == "" {
		cfg.Queue = PythonFailureEvents
	}
	watcher := tasks.NewPythonFailures()
	conn, deliveries, err := subscribeEvents(cfg)
	if err != nil {
		return err
	}
	go func() {
		for {
			handleEvents(ctx, cfg, watcher, deliveries)
			conn.Close()
			for ctx.Err() == nil {
				select {
				case <-ctx.Done():
					return
				case <-time.After(2 * time.Second):
				}
				if conn, deliveries, err = subscribeEvents(cfg); err == nil {
					break
				}
				cfg.Log.WithError(err).Warn("subscribing to Celery events again failed; retrying")
			}
			if ctx.Err() != nil {
				return
			}
		}
	}()
	return nil
}

// subscribeEvents declares the event queue, binds it to celeryev and
// consumes it.
func subscribeEvents(cfg pyFailuresConfig) (*amqp.Connection, <-chan amqp.Delivery, error) {
	conn, err := rabbitmq.DialURLs(rabbitmq.Config{URL: cfg.URL, TLS: cfg.TLS, Heartbeat: 30 * time.Second, ConnectionName: "vhg-worker python failures"})
	if err != nil {
		return nil, nil, fmt.Errorf("celery events: cannot reach the broker at %s: %w", rabbitmq.Redact(cfg.URL), err)
	}
	ch, err := conn.Channel()
	if err == nil {
		err = ch.ExchangeDeclare(protocol.EventExchange, amqp.ExchangeTopic, true, false, false, false, nil)
	}
	if err == nil {
		_, err = ch.QueueDeclare(cfg.Queue, true, false, false, false, amqp.Table{
			"x-single-active-consumer": true,
			"x-expires":                int32(3600000), // an hour without consumer
			"x-message-ttl":            int32(3600000),
			"x-max-length":             int32(100000),
		})
	}
	// A prefork Celery worker buffers its task events and sends them as a
	// list under task.multi.
	for _, key := range []string{"task.received", "task.failed", "task.multi", "worker.#"} {
		if err == nil {
			err = ch.QueueBind(cfg.Queue, key, protocol.EventExchange, false, nil)
		}
	}
	var deliveries <-chan amqp.Delivery
	if err == nil {
		deliveries, err = ch.Consume(cfg.Queue, "", true, false, false, false, nil)
	}
	if err != nil {
		conn.Close()
		return nil, nil, fmt.Errorf("celery events: queue %s: %w", cfg.Queue, err)
	}
	return conn, deliveries, nil
}

// handleEvents feeds the watcher until the deliveries end or ctx is done.
func handleEvents(ctx context.Context, cfg pyFailuresConfig, watcher *tasks.PythonFailures, deliveries <-chan amqp.Delivery) {
	for {
		select {
		case <-ctx.Done():
			return
		case d, ok := <-deliveries:
			if !ok {
				return
			}
			for _, e := range decodeEvents(d.Body) {
				meta, correlationID, report := watcher.Observe(e)
				if !report {
					continue
				}
				log := cfg.Log.WithFields(logrus.Fields{"root": meta.TaskID, "failed_task": correlationID})
				if err := cfg.Status.Publish(context.WithoutCancel(ctx), meta, correlationID); err != nil {
					log.WithError(err).Error("publishing the FAILURE status of a workflow that failed on a Python worker failed")
					continue
				}
				log.Info("FAILURE reported for a workflow whose step failed on a Python worker")
			}
		}
	}
}

// decodeEvents reads an event message: one JSON event, or a list of them
// (task.multi); anything else holds no event.
func decodeEvents(body []byte) []map[string]any {
	var one map[string]any
	if json.Unmarshal(body, &one) == nil {
		return []map[string]any{one}
	}
	var many []map[string]any
	if json.Unmarshal(body, &many) == nil {
		return many
	}
	return nil
}
