package main

import (
	"strings"
	"testing"

	"github.com/vhg/vhg-worker/worker"
)

func TestWorkerFlagsQueueAndExchangeType(t *testing.T) {
	t.Setenv("CELERY_TASK_DEFAULT_QUEUE_TYPE", "")
	t.Setenv("CELERY_TASK_DEFAULT_EXCHANGE_TYPE", "")
	t.Setenv("CELERY_BROKER_NATIVE_DELAYED_DELIVERY_QUEUE_TYPE", "")
	f, err := parseWorkerFlags(nil)
	if err != nil {
		t.Fatal(err)
	}
	if f.queueType != "classic" || f.exchangeType != "direct" || f.delayedQueueType != "quorum" || f.deliveryLimit != 0 {
		t.Errorf("defaults: %q %q %q %d, want classic direct quorum 0 (Celery's)", f.queueType, f.exchangeType, f.delayedQueueType, f.deliveryLimit)
	}
	f, err = parseWorkerFlags([]string{"--queue-type", "quorum", "--exchange-type", "topic", "--delivery-limit", "5"})
	if err != nil {
		t.Fatal(err)
	}
	if f.queueType != "quorum" || f.exchangeType != "topic" || f.deliveryLimit != 5 {
		t.Errorf("flags: %q %q %d", f.queueType, f.exchangeType, f.deliveryLimit)
	}
	t.Setenv("CELERY_TASK_DEFAULT_QUEUE_TYPE", "quorum")
	t.Setenv("CELERY_TASK_DEFAULT_EXCHANGE_TYPE", "topic")
	t.Setenv("CELERY_BROKER_NATIVE_DELAYED_DELIVERY_QUEUE_TYPE", "classic")
	f, err = parseWorkerFlags(nil)
	if err != nil {
		t.Fatal(err)
	}
	if f.queueType != "quorum" || f.exchangeType != "topic" || f.delayedQueueType != "classic" {
		t.Errorf("environment: %q %q %q", f.queueType, f.exchangeType, f.delayedQueueType)
	}
	for _, args := range [][]string{
		{"--queue-type", "stream"},
		{"--exchange-type", "fanout"},
		{"--delayed-delivery-queue-type", "stream"},
		{"--delivery-limit", "-1"},
	} {
		if _, err := parseWorkerFlags(args); err == nil || !strings.Contains(err.Error(), args[0]) {
			t.Errorf("%v: err = %v, want one naming %s", args, err, args[0])
		}
	}
}

func TestWorkerFlagsResultBackendKeyPrefix(t *testing.T) {
	t.Setenv("CELERY_RESULT_BACKEND_KEY_PREFIX", "")
	f, err := parseWorkerFlags([]string{"--result-backend-key-prefix", "tenant1"})
	if err != nil {
		t.Fatal(err)
	}
	if f.resultKeyPrefix != "tenant1" {
		t.Errorf("flag: %q", f.resultKeyPrefix)
	}
	t.Setenv("CELERY_RESULT_BACKEND_KEY_PREFIX", "tenant2:")
	if f, err = parseWorkerFlags(nil); err != nil || f.resultKeyPrefix != "tenant2:" {
		t.Errorf("environment: %q, %v", f.resultKeyPrefix, err)
	}
	// Only the Redis backend has keys to prefix; no connection is tried.
	for _, url := range []string{"rpc://", "amqp://", "disabled"} {
		if _, _, err := openBackend(url, "tenant1", worker.TLSFiles{}, nil); err == nil || !strings.Contains(err.Error(), "--result-backend-key-prefix") {
			t.Errorf("%s with a key prefix: err = %v, want a refusal naming the flag", url, err)
		}
	}
}
