//go:build integration

package redis_test

import (
	"testing"
	"time"

	redigo "github.com/gomodule/redigo/redis"
	"github.com/vhg/vhg-worker/protocol"
	"github.com/vhg/vhg-worker/worker"
)

// TestJoinCountsATaskOnce: a chord member that runs twice (its worker died
// after joining, its message came back) counts once, even when the second
// run's result differs, and the chord completes once, with the first
// result, when the other members arrive.
func TestJoinCountsATaskOnce(t *testing.T) {
	t.Parallel()
	idx := func(i int) *int { return &i }
	tests := []struct {
		name     string
		parts    []worker.ChordPart
		doneAt   int // index of the join that completes the chord; -1: never
		wantVals []any
	}{
		{
			name: "rerun with another result",
			parts: []worker.ChordPart{
				{TaskID: "a", Index: idx(0), State: protocol.StateSuccess, Result: map[string]any{"tmp": "/out/.x.tmp-1"}},
				{TaskID: "a", Index: idx(0), State: protocol.StateSuccess, Result: map[string]any{"tmp": "/out/.x.tmp-2"}},
				{TaskID: "b", Index: idx(1), State: protocol.StateSuccess, Result: int64(2)},
			},
			doneAt:   2,
			wantVals: []any{map[string]any{"tmp": "/out/.x.tmp-1"}, int64(2)},
		},
		{
			name: "ids that prefix each other are different members",
			parts: []worker.ChordPart{
				{TaskID: "ab", Index: idx(0), State: protocol.StateSuccess, Result: int64(1)},
				{TaskID: "a", Index: idx(1), State: protocol.StateSuccess, Result: int64(2)},
			},
			doneAt:   1,
			wantVals: []any{int64(1), int64(2)},
		},
		{
			name: "rerun after completion starts nothing",
			parts: []worker.ChordPart{
				{TaskID: "a", Index: idx(0), State: protocol.StateSuccess, Result: int64(1)},
				{TaskID: "b", Index: idx(1), State: protocol.StateSuccess, Result: int64(2)},
				{TaskID: "b", Index: idx(1), State: protocol.StateSuccess, Result: int64(3)},
			},
			doneAt:   1,
			wantVals: []any{int64(1), int64(2)},
		},
		{
			name: "quoted id",
			parts: []worker.ChordPart{
				{TaskID: `q"é`, Index: idx(0), State: protocol.StateSuccess, Result: int64(1)},
				{TaskID: `q"é`, Index: idx(0), State: protocol.StateFailure, Result: int64(9)},
				{TaskID: "z", Index: idx(1), State: protocol.StateSuccess, Result: int64(2)},
			},
			doneAt:   2,
			wantVals: []any{int64(1), int64(2)},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b, prefix := newBackend(t, time.Minute)
			ctx := t.Context()
			const gid = "g"
			if err := b.SetChordSize(ctx, gid, 2); err != nil {
				t.Fatal(err)
			}
			completions := 0
			for i, p := range tt.parts {
				parts, done, err := b.JoinChordPart(ctx, gid, p, 0)
				if err != nil {
					t.Fatalf("join %d: %v", i, err)
				}
				if done != (i == tt.doneAt) {
					t.Fatalf("join %d (%s): done = %v", i, p.TaskID, done)
				}
				if !done {
					continue
				}
				completions++
				if len(parts) != len(tt.wantVals) {
					t.Fatalf("parts = %+v", parts)
				}
				for j, want := range tt.wantVals {
					got, _ := protocol.MarshalJSON(parts[j].Result)
					wantJSON, _ := protocol.MarshalJSON(want)
					if string(got) != string(wantJSON) {
						t.Errorf("part %d result = %s, want %s", j, got, wantJSON)
					}
				}
			}
			if completions != 1 && tt.doneAt >= 0 {
				t.Errorf("completed %d times", completions)
			}
			// After completion the keys are gone, as Celery leaves them
			// (a late rerun may leave a lone member until it expires).
			n, err := redigo.Int(conn(t).Do("EXISTS", prefix+"celery-taskset-meta-"+gid+".s"))
			if err != nil || n != 0 {
				t.Errorf(".s still there (%d, %v)", n, err)
			}
		})
	}
}
