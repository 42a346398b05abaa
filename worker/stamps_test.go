package worker_test

import (
	"reflect"
	"testing"

	"github.com/vhg/vhg-worker/protocol"
)

// stamped returns s with the stamps Celery 5.3+'s Signature.stamp puts in a
// signature's options: "stamped_headers" and one option per stamp (as in
// protocol/testdata/captures/celery-5.6.3/stamped_chain.json:
// {"stamped_headers": ["mystamp"], "mystamp": "v1", ...}).
func stamped(s protocol.Signature, stamps map[string]any) protocol.Signature {
	s = s.Clone()
	names := make([]any, 0, len(stamps))
	for k, v := range stamps {
		names = append(names, k)
		s.Options.SetExtra(k, v)
	}
	s.Options.SetExtra("stamped_headers", names)
	return s
}

func checkStamps(t *testing.T, m *protocol.Message, want map[string]any) {
	t.Helper()
	if want == nil {
		if m.StampedHeaders != nil || m.Stamps != nil {
			t.Errorf("%s[%s]: stamped_headers %v stamps %v, want none", m.Task, m.ID, m.StampedHeaders, m.Stamps)
		}
		return
	}
	names := map[string]any{}
	for _, n := range m.StampedHeaders {
		names[n] = want[n]
	}
	if !reflect.DeepEqual(names, want) || !reflect.DeepEqual(m.Stamps, want) {
		t.Errorf("%s[%s]: stamped_headers %v stamps %v, want stamps %v", m.Task, m.ID, m.StampedHeaders, m.Stamps, want)
	}
}

// TestStampsCarriedThroughChain checks that every step of a stamped chain
// is published with its stamps as headers, the first by the client and the
// next ones by the worker, as Celery 5.6's trace (chain.pop().apply_async)
// does with the options each step carries.
func TestStampsCarriedThroughChain(t *testing.T) {
	t.Parallel()
	w, c := startCanvasWorker(t)
	stamps := map[string]any{"mystamp": "v1", "trace": []any{"a", "b"}}
	id := apply(t, c, protocol.NewChain(
		stamped(sig("t.add", 1, 1), stamps),
		stamped(sig("t.mul", 2), stamps),
		stamped(sig("t.add", 3), stamps),
	))
	w.success(t, id, 7)
	msgs := w.published(t)
	if len(msgs) != 3 {
		t.Fatalf("%d messages, want 3", len(msgs))
	}
	for _, m := range msgs {
		checkStamps(t, m, stamps)
		if m.ExtraHeaders["mystamp"] != nil {
			t.Errorf("%s: stamp sent as a header of its own too", m.Task)
		}
	}
}

// TestStampsFromCelery56Message runs the first message of a stamped chain
// as Celery 5.6.3 sends it (stamped_chain capture) and checks the next link
// the worker publishes.
func TestStampsFromCelery56Message(t *testing.T) {
	t.Parallel()
	w, _ := startCanvasWorker(t)
	first := newMsg("t.add", int64(1), int64(1))
	first.StampedHeaders, first.Stamps = []string{"mystamp"}, map[string]any{"mystamp": "v1"}
	next := sig("t.mul", int64(2))
	next.Options.TaskID = "00000000-0000-4000-8000-000000000003"
	next.Options.SetExtra("stamped_headers", []any{"mystamp"})
	next.Options.SetExtra("mystamp", "v1")
	first.Chain = []protocol.Signature{next}
	w.send(t, first)
	w.success(t, next.Options.TaskID, 4)
	m := w.message(t, next.Options.TaskID)
	checkStamps(t, m, map[string]any{"mystamp": "v1"})
	if m.ReplacedTaskNesting != 0 {
		t.Errorf("replaced_task_nesting %d, want 0", m.ReplacedTaskNesting)
	}
}

// TestStampsInGroupAndChord checks stamped group members (with group_index
// 0..n-1) and a stamped chord body the worker publishes, and that an
// unstamped member gets no stamp headers.
func TestStampsInGroupAndChord(t *testing.T) {
	t.Parallel()
	w, c := startCanvasWorker(t)
	stamps := map[string]any{"mystamp": "v2"}
	body := withID(stamped(sig("t.tsum"), stamps), "body-id")
	apply(t, c, protocol.NewChord([]protocol.Signature{
		stamped(sig("t.add", 1, 1), stamps),
		stamped(sig("t.add", 2, 2), stamps),
		sig("t.add", 3, 3),
	}, body))
	w.success(t, "body-id", 12)
	members := w.publishedTask(t, "t.add")
	if len(members) != 3 {
		t.Fatalf("%d header messages, want 3", len(members))
	}
	for i, m := range members {
		if m.GroupIndex == nil || *m.GroupIndex != i {
			t.Errorf("member %d: group_index %v", i, m.GroupIndex)
		}
		if i < 2 {
			checkStamps(t, m, stamps)
		} else {
			checkStamps(t, m, nil)
		}
	}
	checkStamps(t, w.message(t, "body-id"), stamps)
}

// TestReplaceMarksChainSteps checks Celery 5.3+'s Task.replace: the
// replacement chain's steps carry replaced_task_nesting one higher than
// the replaced task's, so each step is published with it.
func TestReplaceMarksChainSteps(t *testing.T) {
	t.Parallel()
	w, _ := startReplaceWorker(t)
	msg := newMsg("t.replace_chain", int64(3))
	msg.ReplacedTaskNesting = 1
	w.send(t, msg)
	if got := w.result(t, msg.ID); got.Result != int64(8) {
		t.Fatalf("result %v, want 8", got.Result)
	}
	for _, name := range []string{"t.add", "t.mul"} {
		for _, m := range w.publishedTask(t, name) {
			if m.ReplacedTaskNesting != 2 {
				t.Errorf("%s: replaced_task_nesting %d, want 2", name, m.ReplacedTaskNesting)
			}
		}
	}
}

// TestIgnoreResultOption checks that a signature's ignore_result option
// becomes the message's ignore_result header, as send_task does.
func TestIgnoreResultOption(t *testing.T) {
	t.Parallel()
	w, c := startCanvasWorker(t)
	s := sig("t.add", 1, 2)
	s.Options.SetExtra("ignore_result", true)
	id := apply(t, c, s)
	if m := w.message(t, id); !m.IgnoreResult {
		t.Errorf("ignore_result %v, want true", m.IgnoreResult)
	}
}

// TestChordBodyGroupID checks Celery 5.6's chord: the body is frozen with
// the header's group id, so the body task is published with header group
// set to it (chord_body_dispatch_by_worker capture), also when the header
// is empty.
func TestChordBodyGroupID(t *testing.T) {
	t.Parallel()
	w, c := startCanvasWorker(t)
	apply(t, c, protocol.NewChord([]protocol.Signature{sig("t.add", 1, 1), sig("t.add", 2, 2)}, withID(sig("t.tsum"), "body-1")))
	w.success(t, "body-1", 6)
	members := w.publishedTask(t, "t.add")
	if len(members) != 2 || members[0].Group == "" {
		t.Fatalf("header messages %v", members)
	}
	if body := w.message(t, "body-1"); body.Group != members[0].Group || body.GroupIndex != nil {
		t.Errorf("body group %q index %v, want the header's group %q and no index", body.Group, body.GroupIndex, members[0].Group)
	}

	apply(t, c, protocol.NewChord(nil, withID(sig("t.tsum"), "body-2")))
	w.success(t, "body-2", 0)
	if body := w.message(t, "body-2"); body.Group == "" {
		t.Error("body of an empty chord published without a group id")
	}
}
