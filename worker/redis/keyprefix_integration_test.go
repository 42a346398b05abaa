//go:build integration

package redis_test

import (
	"context"
	"crypto/rand"
	"fmt"
	"slices"
	"testing"
	"time"

	redigo "github.com/gomodule/redigo/redis"
	"github.com/vhg/vhg-worker/protocol"
	"github.com/vhg/vhg-worker/worker"
	"github.com/vhg/vhg-worker/worker/redis"
)

// TestKeyPrefixOnEveryKey runs every operation of the backend with a
// global_keyprefix that Celery completes with "_" and checks that each key
// and the PUBLISH channel carry it, and that no key of these ids exists
// without it.
func TestKeyPrefixOnEveryKey(t *testing.T) {
	t.Parallel()
	var r [6]byte
	if _, err := rand.Read(r[:]); err != nil {
		t.Fatal(err)
	}
	given := fmt.Sprintf("kp%x", r)
	prefix := given + "_"
	ctx := context.Background()
	b, err := redis.New(ctx, redis.Config{URL: redisURL(), KeyPrefix: given, Expires: time.Minute})
	if err != nil {
		unreachable(t, err)
	}
	c := conn(t)
	t.Cleanup(func() {
		_ = b.Close()
		keys, _ := redigo.Strings(c.Do("KEYS", prefix+"*"))
		for _, k := range keys {
			_, _ = c.Do("DEL", k)
		}
	})

	id, gid := worker.NewTaskID(), worker.NewTaskID()
	sub := redigo.PubSubConn{Conn: conn(t)}
	if err := sub.Subscribe(prefix + "celery-task-meta-" + id); err != nil {
		t.Fatal(err)
	}
	if msg, ok := sub.Receive().(redigo.Subscription); !ok || msg.Count != 1 {
		t.Fatalf("subscribe: %v", msg)
	}
	if err := b.Store(ctx, protocol.ResultMeta{TaskID: id, Status: protocol.StateSuccess, Result: int64(1), Children: []any{}}, worker.ReplyRoute{}); err != nil {
		t.Fatal(err)
	}
	if msg, ok := sub.Receive().(redigo.Message); !ok || msg.Channel != prefix+"celery-task-meta-"+id {
		t.Errorf("published %v, want a message on %s", msg, prefix+"celery-task-meta-"+id)
	}
	if meta, err := b.Result(ctx, id); err != nil || meta.Status != protocol.StateSuccess {
		t.Errorf("Result = %v, %v", meta.Status, err)
	}
	if err := b.SetChordSize(ctx, gid, 2); err != nil {
		t.Fatal(err)
	}
	if err := b.AddToChord(ctx, gid); err != nil {
		t.Fatal(err)
	}
	zero := 0
	if _, done, err := b.JoinChordPart(ctx, gid, worker.ChordPart{TaskID: id, Index: &zero, State: protocol.StateSuccess, Result: "a"}, 0); err != nil || done {
		t.Fatalf("join: done=%t err=%v", done, err)
	}
	if _, err := c.Do("SET", prefix+"celery-taskset-meta-"+gid, `{"result": [["`+id+`", null], null]}`); err != nil {
		t.Fatal(err)
	}
	if _, found, err := b.SavedGroup(ctx, gid); err != nil || !found {
		t.Errorf("SavedGroup under the prefix: found=%t err=%v", found, err)
	}

	keys, err := redigo.Strings(c.Do("KEYS", prefix+"*"))
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(keys)
	want := []string{
		prefix + "celery-task-meta-" + id,
		prefix + "celery-taskset-meta-" + gid,
		prefix + "celery-taskset-meta-" + gid + ".j",
		prefix + "celery-taskset-meta-" + gid + ".s",
		prefix + "celery-taskset-meta-" + gid + ".t",
	}
	if !slices.Equal(keys, want) {
		t.Errorf("keys\n %q\nwant\n %q", keys, want)
	}
	for _, pattern := range []string{"celery-task-meta-" + id, "celery-taskset-meta-" + gid + "*"} {
		if bare, _ := redigo.Strings(c.Do("KEYS", pattern)); len(bare) != 0 {
			t.Errorf("keys without the prefix: %q", bare)
		}
	}
}
