//go:build integration

package main

import (
	"context"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/vhg/vhg-worker/protocol"
	"github.com/vhg/vhg-worker/worker"
	"github.com/vhg/vhg-worker/worker/rabbitmq"
	"github.com/vhg/vhg-worker/worker/redis"
)

// TestOpsControlLimitsMatchPython sends the same `celery control` commands
// (Python Celery 5.2.6's command line) to a Go worker and a Python worker
// and compares the replies, then checks that the new limits act the same
// on both: a rate limit spaces the tasks out, a time limit stops them.
func TestOpsControlLimitsMatchPython(t *testing.T) {
	t.Parallel()
	requireServices(t)
	w := startOpsWorker(t, 2, opsConfig{}, nil)
	pyQueue := uniqueQueue(t)
	pyNode := "py-" + pyQueue + "@ops"
	startPythonWorker(t, pyQueue, pyNode)

	for _, args := range [][]string{
		{"rate_limit", "interop.add", "10/s"},
		{"rate_limit", "interop.add", "100/m"},
		{"rate_limit", "interop.add", "0"},
		{"rate_limit", "interop.add", "abc"},
		{"rate_limit", "interop.add", "10/x"},
		{"rate_limit", "no.such.task", "10/s"},
		{"time_limit", "interop.sleep", "30", "60"},
		{"time_limit", "interop.sleep", "30"},
		{"time_limit", "no.such.task", "1", "2"},
		{"autoscale", "4", "2"},
		{"pool_grow", "1"},
		{"pool_shrink", "1"},
	} {
		replies := controlReplies(t, w.queue, args, w.node, pyNode)
		if !reflect.DeepEqual(replies[w.node], replies[pyNode]) {
			t.Errorf("celery control %s: Go replied %v, Python %v", strings.Join(args, " "), replies[w.node], replies[pyNode])
		}
	}

	// add_consumer and cancel_consumer: the same replies, and both workers
	// consume the queue in between, as inspect active_queues shows.
	extra := uniqueQueue(t)
	consumes := func() map[string]bool {
		out := celery(t, w.queue, "inspect", "active_queues", "-d", w.node+","+pyNode, "-j", "--timeout", "5")
		var replies map[string][]map[string]any
		if err := json.Unmarshal([]byte(out), &replies); err != nil {
			t.Fatalf("inspect active_queues printed %q: %v", out, err)
		}
		got := map[string]bool{}
		for node, queues := range replies {
			for _, q := range queues {
				if q["name"] == extra {
					got[node] = true
				}
			}
		}
		return got
	}
	for _, args := range [][]string{{"add_consumer", extra}, {"cancel_consumer", extra}} {
		replies := controlReplies(t, w.queue, args, w.node, pyNode)
		if !reflect.DeepEqual(replies[w.node], replies[pyNode]) {
			t.Errorf("celery control %s: Go replied %v, Python %v", strings.Join(args, " "), replies[w.node], replies[pyNode])
		}
		want := args[0] == "add_consumer"
		deadline := time.Now().Add(20 * time.Second)
		for got := consumes(); got[w.node] != want || got[pyNode] != want; got = consumes() {
			if time.Now().After(deadline) {
				t.Fatalf("after %s: consuming %s = %v, want %v on both", args[0], extra, got, want)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}

	rb, err := redis.New(context.Background(), redis.Config{URL: testRedisURL})
	if err != nil {
		t.Fatalf("Redis: %v (run make setup)", err)
	}
	t.Cleanup(func() { rb.Close() })
	for _, side := range []struct{ name, queue, node string }{{"Go", w.queue, w.node}, {"Python", pyQueue, pyNode}} {
		client := worker.NewClient(w.broker, worker.ClientConfig{DefaultQueue: side.queue})

		// 2/s: four tasks take at least 1 s. Go's bucket lets the first run
		// at once and the others one turn (0.5 s) apart: 1.5 s. Python's
		// (kombu's TokenBucket) lets two run at once when the bucket was
		// made more than a turn before them, since it stamps its refill
		// time only once a token is taken: 1 s.
		controlReplies(t, side.queue, []string{"rate_limit", "interop.add", "2/s"}, side.node)
		start := time.Now()
		var ids []string
		for i := range 4 {
			id, err := client.SendTask(t.Context(), "interop.add", []any{int64(i), int64(1)}, nil)
			if err != nil {
				t.Fatal(err)
			}
			ids = append(ids, id)
		}
		for _, id := range ids {
			if meta := waitResult(t, rb, id, time.Minute); meta.Status != "SUCCESS" {
				t.Errorf("%s: rate-limited add ended %s %v", side.name, meta.Status, meta.Result)
			}
		}
		want := time.Second
		if side.name == "Go" {
			want = 1500 * time.Millisecond
		}
		if took := time.Since(start); took < want {
			t.Errorf("%s: four tasks at 2/s took %s, want at least %s", side.name, took, want)
		}

	}

	// A soft time limit of 1 s stops a 30 s sleep on the Go worker. (Python
	// 5.2.6's prefork worker answers the same but keeps the limits it read
	// at start for tasks whose message names none: its request class
	// captures task.time_limit when the worker starts, in
	// celery/worker/request.py create_request_cls.)
	controlReplies(t, w.queue, []string{"time_limit", "interop.sleep", "1", "20"}, w.node)
	id, err := w.client.SendTask(t.Context(), "interop.sleep", []any{int64(30)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	wantJSON(t, "sleep past its soft time limit", opsResult(t, w.queue, id),
		`{"state": "FAILURE", "exc_type": "SoftTimeLimitExceeded", "exc_args": ["'SoftTimeLimitExceeded()'"]}`)
}

// controlReplies runs `celery control ARGS -d NODES -j` and returns each
// node's reply.
func controlReplies(t *testing.T, queue string, args []string, nodes ...string) map[string]any {
	t.Helper()
	out := celery(t, queue, append(append([]string{"control"}, args...), "-d", strings.Join(nodes, ","), "-j", "--timeout", "5")...)
	replies := map[string]any{}
	// -j prints one JSON document: a list of {node: reply}, or a dict.
	var list []map[string]any
	if err := json.Unmarshal([]byte(out), &list); err == nil {
		for _, m := range list {
			for node, reply := range m {
				replies[node] = reply
			}
		}
	} else if err := json.Unmarshal([]byte(out), &replies); err != nil {
		t.Fatalf("celery control %s printed %q", strings.Join(args, " "), out)
	}
	for _, node := range nodes {
		if _, ok := replies[node]; !ok {
			t.Fatalf("celery control %s: no reply from %s in %s", strings.Join(args, " "), node, out)
		}
	}
	return replies
}

// waitResult waits for a ready state of id in Redis.
func waitResult(t *testing.T, b *redis.Backend, id string, limit time.Duration) protocol.ResultMeta {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		meta, err := b.Result(t.Context(), id)
		if err == nil && meta.Status.Ready() {
			return meta
		}
		if time.Now().After(deadline) {
			t.Fatalf("no result for %s within %s (%v, %v)", id, limit, meta.Status, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestOpsAutoscaleMatchesPython starts a Go worker and a Python worker
// with --autoscale=4,2 and compares their replies to autoscale, pool_grow
// and pool_shrink, and the autoscaler in stats.
func TestOpsAutoscaleMatchesPython(t *testing.T) {
	t.Parallel()
	requireServices(t)
	goQueue, pyQueue := uniqueQueue(t), uniqueQueue(t)
	goNode, pyNode := "go-"+goQueue+"@ops", "py-"+pyQueue+"@ops"
	startGoWorker(t, goQueue, goWorkerOptions{node: goNode, autoscale: worker.Autoscale{Max: 4, Min: 2},
		setup: func(ctx context.Context, srv *worker.Server, broker *rabbitmq.Broker) {
			o, err := newOps(srv, broker, opsConfig{log: testLogger(t)})
			if err != nil {
				t.Fatalf("set up ops: %v", err)
			}
			o.start(ctx)
			t.Cleanup(o.stop)
		}})
	startPythonWorkerArgs(t, pyQueue, pyNode, []string{"--autoscale=4,2"})

	for _, args := range [][]string{
		{"autoscale", "6", "3"},
		{"pool_grow", "1"},
		{"pool_shrink", "1"},
	} {
		replies := controlReplies(t, goQueue, args, goNode, pyNode)
		if !reflect.DeepEqual(replies[goNode], replies[pyNode]) {
			t.Errorf("celery control %s: Go replied %v, Python %v", strings.Join(args, " "), replies[goNode], replies[pyNode])
		}
	}
	out := celery(t, goQueue, "inspect", "stats", "-d", goNode+","+pyNode, "-j", "--timeout", "5")
	var stats map[string]map[string]any
	if err := json.Unmarshal([]byte(out), &stats); err != nil {
		t.Fatalf("inspect stats printed %q: %v", out, err)
	}
	for _, node := range []string{goNode, pyNode} {
		a, _ := stats[node]["autoscaler"].(map[string]any)
		if a["max"] != 6.0 || a["min"] != 3.0 {
			t.Errorf("%s stats autoscaler = %v, want max 6 and min 3", node, stats[node]["autoscaler"])
		}
	}
}
