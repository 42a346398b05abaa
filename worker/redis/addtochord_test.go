//go:build integration

package redis_test

import (
	"context"
	"testing"
	"time"

	redigo "github.com/gomodule/redigo/redis"
	"github.com/vhg/vhg-worker/protocol"
	"github.com/vhg/vhg-worker/worker"
)

// TestAddToChord checks that AddToChord makes the chord wait for one more
// result (INCR .t), and that a chord completed with a failed member keeps
// its results in .j, as Celery's does, without completing twice.
func TestAddToChord(t *testing.T) {
	t.Parallel()
	b, prefix := newBackend(t, time.Minute)
	ctx := context.Background()
	gid := worker.NewTaskID()
	base := prefix + "celery-taskset-meta-" + gid
	if err := b.SetChordSize(ctx, gid, 1); err != nil {
		t.Fatal(err)
	}
	if err := b.AddToChord(ctx, gid); err != nil {
		t.Fatal(err)
	}
	c := conn(t)
	if n, err := redigo.Int(c.Do("GET", base+".t")); err != nil || n != 1 {
		t.Errorf("GET .t = %d, %v; want 1", n, err)
	}
	zero := 0
	join := func(state protocol.State) bool {
		t.Helper()
		_, done, err := b.JoinChordPart(ctx, gid, worker.ChordPart{TaskID: worker.NewTaskID(), Index: &zero, State: state, Result: "r"}, 0)
		if err != nil {
			t.Fatal(err)
		}
		return done
	}
	if join(protocol.StateSuccess) {
		t.Fatal("the chord completed with 1 of 1+1 results")
	}
	if !join(protocol.StateFailure) {
		t.Fatal("the chord did not complete with 2 of 1+1 results")
	}
	if n, _ := redigo.Int(c.Do("ZCARD", base+".j")); n != 2 {
		t.Errorf(".j holds %d results after a failed chord, want 2 (kept for inspection)", n)
	}
	if join(protocol.StateSuccess) {
		t.Error("a failed chord completed a second time")
	}
}
