package worker_test

import (
	"context"
	"testing"

	"github.com/vhg/vhg-worker/protocol"
	"github.com/vhg/vhg-worker/worker"
)

// TestChainOptionAfterChainBody checks a chord body that is a chain and
// carries a chain option of its own, as a Python client encodes
// group(...) | tsum.s() | add.s(1) | group(add.s(1), add.s(1)): the body's
// steps run first, then the steps of its chain option (Celery's
// _prepare_chain_from_options puts options['chain'] before the body's
// remaining steps in the reversed list).
func TestChainOptionAfterChainBody(t *testing.T) {
	t.Parallel()
	w, c := startCanvasWorker(t)
	body := protocol.NewChain(sig("t.tsum"), sig("t.add", int64(1)))
	body.Options.Chain = []protocol.Signature{protocol.NewGroup(withID(sig("t.add", int64(1)), "m1"), withID(sig("t.add", int64(2)), "m2"))}
	body.Options.ChainSet = true
	apply(t, c, protocol.NewChord([]protocol.Signature{sig("t.add", int64(1), int64(1)), sig("t.add", int64(1), int64(1))}, body))
	// tsum([2, 2]) = 4, add(4, 1) = 5, then the group: 6 and 7.
	for id, want := range map[string]int64{"m1": 6, "m2": 7} {
		if got := w.result(t, id); got.Result != want {
			t.Errorf("%s = %v (%s), want %d", id, got.Result, got.Status, want)
		}
	}
}

// TestNestedChainFirstGetsArgsOnce checks that a chain whose first step is
// itself a chain passes the partial args to that inner first step once, as
// in chord(header, chain(collect_ids.s(i=50) | ids.si(i=51))).
func TestNestedChainFirstGetsArgsOnce(t *testing.T) {
	t.Parallel()
	w, c := startCanvasWorker(t)
	body := protocol.NewChain(protocol.NewChain(withID(sig("t.collect", int64(50)), "collected"), si("t.add", int64(51))))
	apply(t, c, protocol.NewChord([]protocol.Signature{sig("t.add", int64(1)), sig("t.add", int64(2))}, body))
	got := w.result(t, "collected")
	assertJSONEqual(t, "collect's args", got.Result, []any{[]any{int64(1), int64(2)}, int64(50)})
}

// TestGroupLastInHeaderChain checks a chord header member that is a chain
// ending in a group (Celery's test_nested_group_chain): the group, applied
// when the chain gets there, carries the chord body and is sized as a chord
// of its own, so the body runs once its members are done.
func TestGroupLastInHeaderChain(t *testing.T) {
	t.Parallel()
	w, c := startCanvasWorker(t)
	apply(t, c, protocol.NewChain(
		si("t.add", int64(1), int64(0)),
		protocol.NewGroup(
			si("t.add", int64(1), int64(100)),
			protocol.NewChain(si("t.add", int64(1), int64(200)), protocol.NewGroup(si("t.add", int64(1), int64(1000)), si("t.add", int64(1), int64(2000)))),
		),
		withID(si("t.add", int64(1), int64(10)), "body"),
	))
	if got := w.result(t, "body"); got.Result != int64(11) {
		t.Errorf("body = %v (%s), want 11", got.Result, got.Status)
	}
}

// savedGroupBackend is the test backend with a group result saved by a
// client (worker.GroupReader).
type savedGroupBackend struct {
	*recordingBackend
	saved map[string]any
}

func (b savedGroupBackend) SavedGroup(_ context.Context, gid string) (any, bool, error) {
	tuple, ok := b.saved[gid]
	return tuple, ok, nil
}

// TestChordSavedGroupShapesResults checks that a chord whose header group
// result was saved (a Python client does so when header members are groups)
// gives its body the results nested as saved, not flat.
func TestChordSavedGroupShapesResults(t *testing.T) {
	t.Parallel()
	tuple := func(id string) any { return []any{[]any{id, nil}, nil} }
	saved := map[string]any{"g": []any{[]any{"g", nil}, []any{tuple("a"), []any{[]any{"inner", nil}, []any{tuple("b")}}}}}
	w := newTestWorkerWith(t, canvasMux(), worker.Config{}, func(b *recordingBackend) worker.Backend {
		return savedGroupBackend{b, saved}
	})
	w.run(t)
	c := worker.NewClient(w.broker, worker.ClientConfig{Backend: w.backend})
	header := protocol.NewGroup(withID(sig("t.add", int64(1), int64(1)), "a"), withID(sig("t.add", int64(2), int64(2)), "b"))
	header.Options.TaskID = "g"
	chord := protocol.NewChord(nil, withID(sig("t.collect"), "body"))
	chord.Kwargs["header"] = header.Map()
	apply(t, c, chord)
	got := w.result(t, "body")
	assertJSONEqual(t, "body result", got.Result, []any{[]any{int64(2), []any{int64(4)}}})
}

// TestChordInChainInChordHeader checks Celery's test_chain_chord_chain_chord:
// a chord that is the last step of a chain in another chord's header
// passes the outer group and chord on to its body, whose result then
// completes the outer chord.
func TestChordInChainInChordHeader(t *testing.T) {
	t.Parallel()
	w, c := startCanvasWorker(t)
	inner := protocol.NewChord([]protocol.Signature{si("t.add", int64(4)), si("t.add", int64(5))}, si("t.add", int64(6)))
	outer := protocol.NewChord([]protocol.Signature{si("t.add", int64(2)), protocol.NewChain(si("t.add", int64(3)), inner)}, withID(sig("t.collect"), "body"))
	apply(t, c, protocol.NewChain(si("t.add", int64(1)), outer))
	got := w.result(t, "body")
	assertJSONEqual(t, "body result", got.Result, []any{[]any{int64(2), int64(6)}})
}
