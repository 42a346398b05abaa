package worker_test

// Canvas tests: a worker.Client applies chains, groups and chords on the
// memory broker, a Server runs them with small arithmetic tasks, and the
// tests check both the outcome and the messages on the wire (reference §3).

import (
	"context"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/vhg/vhg-worker/protocol"
	"github.com/vhg/vhg-worker/worker"
)

// canvasMux registers the tasks the canvas tests use:
//
//	t.add(a, b, ...)      sum of the args
//	t.mul(a, b, ...)      product of the args
//	t.tsum(list)          sum of a list
//	t.collect(*args)      its args, as a list
//	t.fail()              ValueError("boom")
//	t.errback(id, *args)  its args
func canvasMux() *worker.ServeMux {
	mux := worker.NewServeMux()
	fold := func(start int64, op func(a, b int64) int64) worker.HandlerFunc {
		return func(_ context.Context, task *worker.Task) (any, error) {
			acc := start
			for _, a := range task.Args() {
				n, err := toInt(task, a)
				if err != nil {
					return nil, err
				}
				acc = op(acc, n)
			}
			return acc, nil
		}
	}
	mux.HandleFunc("t.add", fold(0, func(a, b int64) int64 { return a + b }))
	mux.HandleFunc("t.mul", fold(1, func(a, b int64) int64 { return a * b }))
	mux.HandleFunc("t.tsum", func(_ context.Context, task *worker.Task) (any, error) {
		list, ok := task.Args()[0].([]any)
		if !ok {
			return nil, worker.NewTaskError("TypeError", "tsum wants a list, got %#v", task.Args()[0])
		}
		var sum int64
		for _, v := range list {
			n, err := toInt(task, v)
			if err != nil {
				return nil, err
			}
			sum += n
		}
		return sum, nil
	})
	mux.HandleFunc("t.collect", func(_ context.Context, task *worker.Task) (any, error) { return task.Args(), nil })
	mux.HandleFunc("t.fail", failHandler)
	mux.HandleFunc("t.errback", func(_ context.Context, task *worker.Task) (any, error) { return task.Args(), nil })
	return mux
}

// sig and si build task signatures like Python's task.s() and task.si().
func sig(task string, args ...any) protocol.Signature {
	if args == nil {
		args = []any{}
	}
	return protocol.Signature{Task: task, Args: args, Kwargs: map[string]any{}}
}

func si(task string, args ...any) protocol.Signature {
	s := sig(task, args...)
	s.Immutable = true
	return s
}

// withID freezes a signature's task id.
func withID(s protocol.Signature, id string) protocol.Signature {
	s.Options.TaskID = id
	return s
}

// startCanvasWorker runs a worker with canvasMux and returns it with a
// Client that publishes to its broker and sets chords up in its backend.
func startCanvasWorker(t *testing.T) (*testWorker, *worker.Client) {
	t.Helper()
	w := startWorker(t, canvasMux(), worker.Config{})
	return w, worker.NewClient(w.broker, worker.ClientConfig{Backend: w.backend})
}

func apply(t *testing.T, c *worker.Client, s protocol.Signature) string {
	t.Helper()
	id, err := c.Apply(context.Background(), s)
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}
	if id == "" {
		t.Fatal("Apply returned no id")
	}
	return id
}

// published decodes every message published so far.
func (w *testWorker) published(t *testing.T) []*protocol.Message {
	t.Helper()
	var out []*protocol.Message
	for _, p := range w.broker.Published() {
		m, err := protocol.Decode(p.Envelope)
		if err != nil {
			t.Fatalf("a published message does not decode: %v", err)
		}
		out = append(out, m)
	}
	return out
}

// publishedTask returns the published messages of one task name.
func (w *testWorker) publishedTask(t *testing.T, name string) []*protocol.Message {
	t.Helper()
	var out []*protocol.Message
	for _, m := range w.published(t) {
		if m.Task == name {
			out = append(out, m)
		}
	}
	return out
}

// waitPublished waits until n messages of a task were published and
// returns them. Errbacks are published after the FAILURE is stored, as in
// Celery, so a test that saw the FAILURE must wait for them.
func (w *testWorker) waitPublished(t *testing.T, name string, n int) []*protocol.Message {
	t.Helper()
	w.events.waitUntil(t, fmt.Sprintf("%d %s messages", n, name), func() bool {
		return len(w.publishedTask(t, name)) >= n
	})
	return w.publishedTask(t, name)
}

// message returns the published message with the given id.
func (w *testWorker) message(t *testing.T, id string) *protocol.Message {
	t.Helper()
	for _, m := range w.published(t) {
		if m.ID == id {
			return m
		}
	}
	t.Fatalf("no message %s was published", id)
	return nil
}

// success waits for id and checks it succeeded with want.
func (w *testWorker) success(t *testing.T, id string, want any) protocol.ResultMeta {
	t.Helper()
	meta := w.result(t, id)
	if meta.Status != protocol.StateSuccess {
		t.Fatalf("%s: state %s (%v), want SUCCESS", id, meta.Status, meta.Result)
	}
	assertJSONEqual(t, "result of "+id, meta.Result, want)
	return meta
}

func checkLineage(t *testing.T, m *protocol.Message, parent, root string) {
	t.Helper()
	if m.ParentID != parent || m.RootID != root {
		t.Errorf("%s[%s]: parent_id %q root_id %q, want %q and %q", m.Task, m.ID, m.ParentID, m.RootID, parent, root)
	}
}

func TestChain(t *testing.T) {
	t.Parallel()
	w, c := startCanvasWorker(t)
	id := apply(t, c, protocol.NewChain(sig("t.add", 2, 2), sig("t.add", 4), si("t.mul", 3, 3)))

	first := w.published(t)[0]
	if first.Task != "t.add" || len(first.Chain) != 2 {
		t.Fatalf("first message %s with %d chain steps, want t.add with 2", first.Task, len(first.Chain))
	}
	// The chain is reversed: the next step is last.
	next, last := first.Chain[1], first.Chain[0]
	if next.Task != "t.add" || last.Task != "t.mul" || !last.Immutable {
		t.Errorf("embed.chain = [%s, %s], want [t.mul (immutable), t.add]", last.Task, next.Task)
	}
	if next.Options.TaskID == "" || last.Options.TaskID != id {
		t.Errorf("chain ids %q, %q: want frozen ids, the last one returned by Apply (%s)", next.Options.TaskID, last.Options.TaskID, id)
	}
	checkLineage(t, first, "", first.ID)

	w.success(t, id, 9) // mul.si(3, 3) ignores the 8 it is given
	second := w.message(t, next.Options.TaskID)
	assertJSONEqual(t, "second step args", second.Args, []any{4, 4})
	checkLineage(t, second, first.ID, first.ID)
	third := w.message(t, id)
	assertJSONEqual(t, "immutable step args", third.Args, []any{3, 3})
	checkLineage(t, third, second.ID, first.ID)
	if len(third.Chain) != 0 {
		t.Errorf("last step carries chain %v", third.Chain)
	}

	meta := w.success(t, first.ID, 4)
	assertJSONEqual(t, "children of the first step", meta.Children, []any{[]any{[]any{second.ID, nil}, nil}})
}

func TestNestedChainsAreFlattened(t *testing.T) {
	t.Parallel()
	w, c := startCanvasWorker(t)
	inner := protocol.NewChain(sig("t.add", 2), sig("t.add", 3))
	id := apply(t, c, protocol.NewChain(sig("t.add", 1, 1), inner, sig("t.add", 4)))
	w.success(t, id, 11)
	first := w.published(t)[0]
	var tasks []string
	for _, s := range first.Chain {
		tasks = append(tasks, s.Task)
	}
	if want := []string{"t.add", "t.add", "t.add"}; !reflect.DeepEqual(tasks, want) {
		t.Errorf("embed.chain tasks = %v, want %v (no nested celery.chain)", tasks, want)
	}
}

func TestLongChain(t *testing.T) {
	t.Parallel()
	w, c := startCanvasWorker(t)
	steps := []protocol.Signature{sig("t.add", 0, 0)}
	for range 99 {
		steps = append(steps, sig("t.add", 1))
	}
	id := apply(t, c, protocol.NewChain(steps...))
	w.success(t, id, 99)
	if n := len(w.publishedTask(t, "t.add")); n != 100 {
		t.Errorf("%d messages published, want 100", n)
	}
}

func TestImmutableSignature(t *testing.T) {
	t.Parallel()
	w, c := startCanvasWorker(t)
	id := apply(t, c, protocol.NewChain(sig("t.add", 1, 1), si("t.add", 5, 5)))
	w.success(t, id, 10)
	assertJSONEqual(t, "immutable args", w.message(t, id).Args, []any{5, 5})
}

func TestGroup(t *testing.T) {
	t.Parallel()
	w, c := startCanvasWorker(t)
	gid := apply(t, c, protocol.NewGroup(sig("t.add", 1, 1), sig("t.add", 2, 2), sig("t.mul", 3, 3)))
	msgs := w.published(t)
	if len(msgs) != 3 {
		t.Fatalf("%d messages, want 3", len(msgs))
	}
	for i, m := range msgs {
		if m.Group != gid || m.GroupIndex == nil || *m.GroupIndex != i {
			t.Errorf("member %d: group %q index %v, want %q %d", i, m.Group, m.GroupIndex, gid, i)
		}
		checkLineage(t, m, "", m.ID)
	}
	for i, want := range []int{2, 4, 9} {
		if meta := w.success(t, msgs[i].ID, want); meta.GroupID != gid {
			t.Errorf("member %d stored group_id %q, want %q", i, meta.GroupID, gid)
		}
	}
}

// TestChordOrderedResults checks the chord header (embed.chord, group,
// group_index), the chord size set before the last member is published,
// and a body that gets the results in header order although the members
// finished in the other order.
func TestChordOrderedResults(t *testing.T) {
	t.Parallel()
	mux := canvasMux()
	var w *testWorker
	// t.wait_join(x, other_id) returns x once other_id joined the chord.
	mux.HandleFunc("t.wait_join", func(ctx context.Context, task *worker.Task) (any, error) {
		other := task.Args()[1].(string)
		ctx, cancel := context.WithTimeout(ctx, waitTimeout)
		defer cancel()
		err := w.events.wait(ctx, func() bool { return slices.Contains(w.events.of(other), "join") })
		return task.Args()[0], err
	})
	w = startWorker(t, mux, worker.Config{})
	c := worker.NewClient(w.broker, worker.ClientConfig{Backend: w.backend})

	a, b := worker.NewTaskID(), worker.NewTaskID()
	header := []protocol.Signature{
		withID(sig("t.wait_join", "first", b), a),
		withID(sig("t.collect", "second"), b),
	}
	bodyID := apply(t, c, protocol.NewChord(header, sig("t.collect")))

	// The body may be published already: look at the header only.
	var msgs []*protocol.Message
	for _, m := range w.published(t) {
		if m.ID == a || m.ID == b {
			msgs = append(msgs, m)
		}
	}
	if len(msgs) != 2 || msgs[0].ID != a {
		t.Fatalf("%d header messages published, want the 2 members in order", len(msgs))
	}
	gid := msgs[0].Group
	for i, m := range msgs {
		if m.Group == "" || m.Group != gid || m.GroupIndex == nil || *m.GroupIndex != i {
			t.Errorf("member %d: group %q index %v, want one group id and index %d", i, m.Group, m.GroupIndex, i)
		}
		if m.Chord == nil || m.Chord.Task != "t.collect" || m.Chord.Options.TaskID != bodyID {
			t.Errorf("member %d: embed.chord = %+v, want t.collect with id %s", i, m.Chord, bodyID)
		}
	}
	if size, last := w.events.position(gid, "chord size 2"), w.events.position(b, "publish"); size < 0 || size > last {
		t.Errorf("chord size set at event %d, last member published at %d: want the size first", size, last)
	}

	w.success(t, bodyID, []any{[]any{"first", []any{"second"}}})
	body := w.message(t, bodyID)
	checkLineage(t, body, a, a) // the last member to finish is the parent
}

func TestChordFailure(t *testing.T) {
	t.Parallel()
	w, c := startCanvasWorker(t)
	failID := worker.NewTaskID()
	body := sig("t.collect")
	body.Options.LinkError = []protocol.Signature{sig("t.errback", "chord failed")}
	bodyID := apply(t, c, protocol.NewChord([]protocol.Signature{sig("t.add", 1, 1), withID(sig("t.fail"), failID)}, body))

	meta := w.result(t, bodyID)
	if meta.Status != protocol.StateFailure {
		t.Fatalf("body state %s, want FAILURE", meta.Status)
	}
	assertJSONEqual(t, "body failure", meta.Result,
		excDict("celery.exceptions", "ChordError", fmt.Sprintf("Dependency %s raised ValueError('boom')", failID)))
	if n := len(w.publishedTask(t, "t.collect")); n != 0 {
		t.Errorf("the body was published %d times, want never", n)
	}

	errbacks := w.waitPublished(t, "t.errback", 1)
	if len(errbacks) != 1 {
		t.Fatalf("%d errback messages, want 1", len(errbacks))
	}
	assertJSONEqual(t, "errback args", errbacks[0].Args, []any{bodyID, "chord failed"})
	w.success(t, errbacks[0].ID, []any{bodyID, "chord failed"})
}

func TestChainEndingInChord(t *testing.T) {
	t.Parallel()
	w, c := startCanvasWorker(t)
	id := apply(t, c, protocol.NewChain(sig("t.add", 1, 1),
		protocol.NewChord([]protocol.Signature{sig("t.add", 1), sig("t.add", 2)}, sig("t.tsum"))))
	w.success(t, id, 7) // (2+1) + (2+2)

	first := w.published(t)[0]
	members := w.publishedTask(t, "t.add")[1:]
	for i, m := range members {
		if m.Group == "" || m.Chord == nil || *m.GroupIndex != i {
			t.Errorf("header member %d: group %q chord %v index %v", i, m.Group, m.Chord, m.GroupIndex)
		}
		checkLineage(t, m, first.ID, first.ID)
	}
	// The body's parent is whichever member finished last.
	body := w.message(t, id)
	if body.ParentID != members[0].ID && body.ParentID != members[1].ID {
		t.Errorf("body parent_id %q, want one of the header members", body.ParentID)
	}
	if body.RootID != first.ID {
		t.Errorf("body root_id %q, want %q", body.RootID, first.ID)
	}
}

// TestChordFollowedByTasks checks reference §3.7: what follows a chord rides
// in the chord body, never in the header tasks.
func TestChordFollowedByTasks(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		chain protocol.Signature
		want  int
	}{
		{
			name: "chord then task",
			chain: protocol.NewChain(
				protocol.NewChord([]protocol.Signature{sig("t.add", 1, 1), sig("t.add", 2, 2)}, sig("t.tsum")),
				sig("t.mul", 10)),
			want: 60,
		},
		{
			name: "task, group, task, task (group | task becomes a chord)",
			chain: protocol.NewChain(sig("t.add", 1, 1),
				protocol.NewGroup(sig("t.add", 1), sig("t.add", 2)), sig("t.tsum"), sig("t.mul", 10)),
			want: 70,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			w, c := startCanvasWorker(t)
			id := apply(t, c, tt.chain)
			w.success(t, id, tt.want)
			for _, m := range w.publishedTask(t, "t.add") {
				if m.Group != "" && len(m.Chain) != 0 {
					t.Errorf("header member %s carries chain %v", m.ID, m.Chain)
				}
			}
			tsum := w.publishedTask(t, "t.tsum")
			if len(tsum) != 1 || len(tsum[0].Chain) != 1 || tsum[0].Chain[0].Task != "t.mul" {
				t.Fatalf("body messages %+v, want one t.tsum with chain [t.mul]", tsum)
			}
			if tsum[0].Chain[0].Options.TaskID != id {
				t.Errorf("Apply returned %s, the last step is %s", id, tsum[0].Chain[0].Options.TaskID)
			}
		})
	}
}

func TestEmptyChordHeader(t *testing.T) {
	t.Parallel()
	w, c := startCanvasWorker(t)
	id := apply(t, c, protocol.NewChord(nil, sig("t.collect")))
	w.success(t, id, []any{[]any{}})
}

func TestLink(t *testing.T) {
	t.Parallel()
	t.Run("one callback", func(t *testing.T) {
		t.Parallel()
		w, c := startCanvasWorker(t)
		s := sig("t.add", 2, 2)
		s.Options.Link = []protocol.Signature{sig("t.mul", 10)}
		id := apply(t, c, s)
		meta := w.success(t, id, 4)

		muls := w.publishedTask(t, "t.mul")
		if len(muls) != 1 {
			t.Fatalf("%d callbacks published, want 1", len(muls))
		}
		cb := muls[0]
		assertJSONEqual(t, "callback args", cb.Args, []any{4, 10})
		checkLineage(t, cb, id, id)
		if cb.Group != "" {
			t.Errorf("a single callback got group %q", cb.Group)
		}
		assertJSONEqual(t, "children", meta.Children, []any{[]any{[]any{cb.ID, nil}, nil}})
		w.success(t, cb.ID, 40)
	})
	t.Run("several callbacks form a group", func(t *testing.T) {
		t.Parallel()
		w, c := startCanvasWorker(t)
		s := sig("t.add", 2, 2)
		s.Options.Link = []protocol.Signature{sig("t.mul", 10), sig("t.mul", 100)}
		id := apply(t, c, s)
		meta := w.success(t, id, 4)

		muls := w.publishedTask(t, "t.mul")
		if len(muls) != 2 {
			t.Fatalf("%d callbacks published, want 2", len(muls))
		}
		gid := muls[0].Group
		for i, cb := range muls {
			if gid == "" || cb.Group != gid || cb.GroupIndex == nil || *cb.GroupIndex != i {
				t.Errorf("callback %d: group %q index %v, want a fresh group and index %d", i, cb.Group, cb.GroupIndex, i)
			}
			checkLineage(t, cb, id, id)
		}
		assertJSONEqual(t, "children", meta.Children, []any{[]any{[]any{gid, nil}, nil}})
		w.success(t, muls[0].ID, 40)
		w.success(t, muls[1].ID, 400)
	})
	t.Run("link_error", func(t *testing.T) {
		t.Parallel()
		w, c := startCanvasWorker(t)
		s := sig("t.fail")
		s.Options.LinkError = []protocol.Signature{sig("t.errback", "extra")}
		s.Options.Link = []protocol.Signature{sig("t.mul", 10)}
		id := apply(t, c, s)
		if meta := w.result(t, id); meta.Status != protocol.StateFailure {
			t.Fatalf("state %s, want FAILURE", meta.Status)
		}
		ebs := w.waitPublished(t, "t.errback", 1)
		if len(ebs) != 1 {
			t.Fatalf("%d errbacks published, want 1", len(ebs))
		}
		eb := ebs[0]
		assertJSONEqual(t, "errback args", eb.Args, []any{id, "extra"})
		if eb.Group == "" || eb.GroupIndex == nil || *eb.GroupIndex != 0 {
			t.Errorf("errback group %q index %v, want a group of one", eb.Group, eb.GroupIndex)
		}
		checkLineage(t, eb, id, id)
		w.success(t, eb.ID, []any{id, "extra"})
		if n := len(w.publishedTask(t, "t.mul")); n != 0 {
			t.Errorf("the success callback was published %d times after a failure", n)
		}
	})
}

// TestFailureInChain checks that a failed step stores FAILURE under every
// remaining step's id (Celery 5.1+) and does not run them.
func TestFailureInChain(t *testing.T) {
	t.Parallel()
	w, c := startCanvasWorker(t)
	id := apply(t, c, protocol.NewChain(sig("t.add", 1, 1), sig("t.fail"), sig("t.add", 1), sig("t.add", 2)))
	meta := w.result(t, id)
	if meta.Status != protocol.StateFailure {
		t.Fatalf("last step state %s, want FAILURE", meta.Status)
	}
	assertJSONEqual(t, "last step failure", meta.Result, excDict("builtins", "ValueError", "boom"))
	if n := len(w.publishedTask(t, "t.add")); n != 1 {
		t.Errorf("%d t.add messages, want only the first step", n)
	}
}

// noJoinBackend hides the memory backend's chord join, like the legacy amqp
// backend: chords then go through celery.chord_unlock.
type noJoinBackend struct{ b *recordingBackend }

func (n noJoinBackend) Store(ctx context.Context, meta protocol.ResultMeta, to worker.ReplyRoute) error {
	return n.b.Store(ctx, meta, to)
}

func (n noJoinBackend) Result(ctx context.Context, id string) (protocol.ResultMeta, error) {
	return n.b.Result(ctx, id)
}

func TestChordUnlock(t *testing.T) {
	t.Parallel()
	hide := func(b *recordingBackend) worker.Backend { return noJoinBackend{b} }
	w := newTestWorkerWith(t, canvasMux(), worker.Config{}, hide)
	w.run(t)
	c := worker.NewClient(w.broker, worker.ClientConfig{Backend: hide(w.backend)})

	bodyID := apply(t, c, protocol.NewChord([]protocol.Signature{sig("t.add", 1, 1), sig("t.add", 2, 2)}, sig("t.tsum")))
	w.success(t, bodyID, 6)

	unlocks := w.publishedTask(t, "celery.chord_unlock")
	if len(unlocks) == 0 {
		t.Fatal("no celery.chord_unlock published")
	}
	u := unlocks[0]
	members := w.publishedTask(t, "t.add")
	if len(u.Args) != 2 || u.Args[0] != members[0].Group || u.ETA.IsZero() {
		t.Errorf("chord_unlock args %v eta %v, want [group id, body] and a countdown", u.Args, u.ETA)
	}
	want := []any{
		[]any{[]any{members[0].ID, nil}, nil},
		[]any{[]any{members[1].ID, nil}, nil},
	}
	assertJSONEqual(t, "chord_unlock result kwarg", u.Kwargs["result"], want)
	for _, m := range members {
		if slices.Contains(w.events.of(m.ID), "join") {
			t.Errorf("member %s joined natively", m.ID)
		}
	}
}

// TestChordNeedsBackend checks that a chord without a result backend is
// refused before anything is published.
func TestChordNeedsBackend(t *testing.T) {
	t.Parallel()
	w := newTestWorker(t, canvasMux(), worker.Config{})
	c := worker.NewClient(w.broker, worker.ClientConfig{})
	_, err := c.Apply(context.Background(), protocol.NewChord([]protocol.Signature{sig("t.add", 1, 1)}, sig("t.tsum")))
	if err == nil || !strings.Contains(err.Error(), "result backend") {
		t.Errorf("Apply = %v, want an error about the result backend", err)
	}
	if n := len(w.broker.Published()); n != 0 {
		t.Errorf("%d messages published", n)
	}
}
