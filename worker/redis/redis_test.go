//go:build integration

package redis_test

// These tests need the real Redis that `make setup` starts on
// 127.0.0.1:6379; VHG_TEST_REDIS_URL points them elsewhere. They fail, not
// skip, when it cannot be reached. Every test writes under its own key
// prefix and deletes its keys at cleanup.

import (
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"

	redigo "github.com/gomodule/redigo/redis"
	"github.com/vhg/vhg-worker/protocol"
	"github.com/vhg/vhg-worker/worker"
	"github.com/vhg/vhg-worker/worker/backendtest"
	"github.com/vhg/vhg-worker/worker/redis"
)

func redisURL() string {
	if u := os.Getenv("VHG_TEST_REDIS_URL"); u != "" {
		return u
	}
	return "redis://127.0.0.1:6379/0"
}

func unreachable(t *testing.T, err error) {
	t.Helper()
	t.Fatalf("Redis is not reachable at %s: %v\nStart it with `make setup` (or set VHG_TEST_REDIS_URL).", redisURL(), err)
}

// conn opens a plain connection, independent of the code under test.
func conn(t *testing.T) redigo.Conn {
	t.Helper()
	c, err := redigo.DialURL(redisURL(), redigo.DialConnectTimeout(5*time.Second))
	if err != nil {
		unreachable(t, err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// newBackend returns a Backend writing under a key prefix unique to t,
// whose keys are deleted at cleanup.
func newBackend(t *testing.T, expires time.Duration) (*redis.Backend, string) {
	t.Helper()
	var r [6]byte
	if _, err := rand.Read(r[:]); err != nil {
		t.Fatal(err)
	}
	prefix := fmt.Sprintf("test-%x:", r)
	b, err := redis.New(context.Background(), redis.Config{URL: redisURL(), KeyPrefix: prefix, Expires: expires})
	if err != nil {
		unreachable(t, err)
	}
	t.Cleanup(func() {
		_ = b.Close()
		c := conn(t)
		keys, err := redigo.Strings(c.Do("KEYS", prefix+"*"))
		if err != nil {
			t.Errorf("list test keys: %v", err)
			return
		}
		for _, k := range keys {
			if _, err := c.Do("DEL", k); err != nil {
				t.Errorf("delete %s: %v", k, err)
			}
		}
	})
	return b, prefix
}

func TestBackendSuite(t *testing.T) {
	t.Parallel()
	backendtest.RunBackendSuite(t, func(t *testing.T) worker.Backend {
		b, _ := newBackend(t, time.Minute)
		return b
	})
}

// TestStoreWire checks what Celery's Redis backend readers depend on: the
// key celery-task-meta-<id> (after the global key prefix), SETEX with
// result_expires, and a PUBLISH of the same value on a channel named like
// the key (reference §4.3).
func TestStoreWire(t *testing.T) {
	t.Parallel()
	b, prefix := newBackend(t, 90*time.Second)
	id := worker.NewTaskID()
	key := prefix + "celery-task-meta-" + id
	if got := b.TaskKey(id); got != key {
		t.Fatalf("TaskKey = %q, want %q", got, key)
	}

	sub := redigo.PubSubConn{Conn: conn(t)}
	if err := sub.Subscribe(key); err != nil {
		t.Fatal(err)
	}
	if msg, ok := sub.Receive().(redigo.Subscription); !ok || msg.Count != 1 {
		t.Fatalf("subscribe: %v", msg)
	}

	meta := protocol.ResultMeta{TaskID: id, Status: protocol.StateSuccess, Result: int64(3),
		DateDone: time.Date(2026, 11, 27, 12, 29, 5, 192058000, time.UTC), GroupID: "0830", Children: []any{}}
	if err := b.Store(context.Background(), meta, worker.ReplyRoute{}); err != nil {
		t.Fatalf("Store: %v", err)
	}
	want := `{"status": "SUCCESS", "result": 3, "traceback": null, "children": [], "date_done": "2026-11-27T12:29:05.192058+00:00", "group_id": "0830", "task_id": "` + id + `"}`

	c := conn(t)
	value, err := redigo.String(c.Do("GET", key))
	if err != nil {
		t.Fatalf("GET %s: %v", key, err)
	}
	if value != want {
		t.Errorf("stored\n %s\nwant\n %s", value, want)
	}
	ttl, err := redigo.Int(c.Do("TTL", key))
	if err != nil || ttl <= 0 || ttl > 90 {
		t.Errorf("TTL = %d (%v), want up to 90 s", ttl, err)
	}

	done := make(chan any, 1)
	go func() { done <- sub.Receive() }()
	select {
	case m := <-done:
		msg, ok := m.(redigo.Message)
		if !ok || msg.Channel != key || string(msg.Data) != want {
			t.Errorf("published %v, want %s on %s", m, want, key)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("nothing published")
	}

	// A later state is neither stored nor published once SUCCESS is there.
	if err := b.Store(context.Background(), protocol.ResultMeta{TaskID: id, Status: protocol.StateFailure}, worker.ReplyRoute{}); err != nil {
		t.Fatal(err)
	}
	if v, _ := redigo.String(c.Do("GET", key)); v != want {
		t.Errorf("SUCCESS overwritten with %s", v)
	}
}

// TestChordKeys checks the chord join keys Python workers share with Go:
// .s holds the size, .j is a sorted set of [1, id, state, result] scored by
// group index (reference §3.6), and all of them go once the chord is done.
func TestChordKeys(t *testing.T) {
	t.Parallel()
	b, prefix := newBackend(t, time.Minute)
	ctx := context.Background()
	gid := worker.NewTaskID()
	base := prefix + "celery-taskset-meta-" + gid
	if err := b.SetChordSize(ctx, gid, 2); err != nil {
		t.Fatal(err)
	}
	c := conn(t)
	if size, err := redigo.String(c.Do("GET", base+".s")); err != nil || size != "2" {
		t.Errorf("GET .s = %q, %v; want \"2\"", size, err)
	}

	first, second := worker.NewTaskID(), worker.NewTaskID()
	one := 1
	if _, done, err := b.JoinChordPart(ctx, gid, worker.ChordPart{TaskID: second, Index: &one, State: protocol.StateSuccess, Result: "b"}, 0); err != nil || done {
		t.Fatalf("first join: done=%t err=%v", done, err)
	}
	members, err := redigo.Strings(c.Do("ZRANGE", base+".j", 0, -1, "WITHSCORES"))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{`[1, "` + second + `", "SUCCESS", "b"]`, strconv.Itoa(one)}
	if fmt.Sprint(members) != fmt.Sprint(want) {
		t.Errorf(".j = %q, want %q", members, want)
	}
	if ttl, _ := redigo.Int(c.Do("TTL", base+".j")); ttl <= 0 {
		t.Errorf(".j TTL %d, want an expiry", ttl)
	}

	zero := 0
	if _, done, err := b.JoinChordPart(ctx, gid, worker.ChordPart{TaskID: first, Index: &zero, State: protocol.StateSuccess, Result: "a"}, 0); err != nil || !done {
		t.Fatalf("last join: done=%t err=%v", done, err)
	}
	for _, suffix := range []string{".j", ".s", ".t"} {
		if n, _ := redigo.Int(c.Do("EXISTS", base+suffix)); n != 0 {
			t.Errorf("%s still exists after the chord completed", suffix)
		}
	}
}

// TestUnreachable checks that New reports a Redis that does not answer.
func TestUnreachable(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := redis.New(ctx, redis.Config{URL: "redis://127.0.0.1:1/0"}); err == nil {
		t.Error("New succeeded against a closed port")
	}
}
