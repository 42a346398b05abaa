package worker_test

// The golden test replays a real Python Celery 5.2.6 run of the VHG
// workflow (../testdata/captures/py525-seed-workflow.trace.jsonl: every message
// published on RabbitMQ, captured with the firehose tracer). For every task
// message a worker published after running a task, it feeds the message
// that task consumed (its parent) to the Go worker, with a stub handler
// that returns what the Python task returned (read off the child message),
// and compares what Go publishes with what Python published. The tasks
// themselves are stubs: this is about canvas mechanics only.

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/vhg/vhg-worker/protocol"
	"github.com/vhg/vhg-worker/worker"
)

const traceFile = "../testdata/captures/py525-seed-workflow.trace.jsonl"

// traced is one task message of the trace.
type traced struct {
	line int
	env  protocol.Envelope
	msg  *protocol.Message
	body []any // [args, kwargs, embed] as decoded JSON
}

// readTrace returns the task messages of the trace, in publish order.
func readTrace(t *testing.T) []traced {
	t.Helper()
	f, err := os.Open(traceFile)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []traced
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<24)
	for line := 1; sc.Scan(); line++ {
		var rec struct {
			Properties struct {
				ContentType     string `json:"content_type"`
				ContentEncoding string `json:"content_encoding"`
				CorrelationID   string `json:"correlation_id"`
				ReplyTo         string `json:"reply_to"`
				Priority        uint8  `json:"priority"`
				DeliveryMode    uint8  `json:"delivery_mode"`
				Headers         json.RawMessage
			}
			Body string
		}
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
			t.Fatalf("%s:%d: %v", traceFile, line, err)
		}
		headers, err := protocol.UnmarshalJSON(rec.Properties.Headers)
		if err != nil {
			t.Fatalf("%s:%d: headers: %v", traceFile, line, err)
		}
		h, _ := headers.(map[string]any)
		if _, isTask := h["task"]; !isTask {
			continue // events and pidbox
		}
		env := protocol.Envelope{
			ContentType: rec.Properties.ContentType, ContentEncoding: rec.Properties.ContentEncoding,
			Headers: h, Body: []byte(rec.Body), CorrelationID: rec.Properties.CorrelationID,
			ReplyTo: rec.Properties.ReplyTo, Priority: rec.Properties.Priority, DeliveryMode: rec.Properties.DeliveryMode,
		}
		out = append(out, decodeTraced(t, line, env))
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func decodeTraced(t *testing.T, line int, env protocol.Envelope) traced {
	t.Helper()
	msg, err := protocol.Decode(env)
	if err != nil {
		t.Fatalf("line %d: %v", line, err)
	}
	body, err := protocol.UnmarshalJSON(env.Body)
	if err != nil {
		t.Fatalf("line %d: body: %v", line, err)
	}
	return traced{line: line, env: env, msg: msg, body: body.([]any)}
}

func TestGoldenPythonWorkflow(t *testing.T) {
	t.Parallel()
	trace := readTrace(t)
	byID := map[string]traced{}
	for _, m := range trace {
		byID[m.msg.ID] = m
	}

	// Python's children, grouped by the message whose task published them.
	children := map[string][]traced{}
	var parents []string
	for _, m := range trace {
		p := m.msg.ParentID
		if p == "" {
			continue
		}
		if _, ok := byID[p]; !ok {
			t.Fatalf("line %d: parent %s is not in the trace", m.line, p)
		}
		if children[p] == nil {
			parents = append(parents, p)
		}
		children[p] = append(children[p], m)
	}
	if len(parents) < 10 {
		t.Fatalf("only %d parents found in the trace", len(parents))
	}

	for _, parentID := range parents {
		parent := byID[parentID]
		kids := children[parentID]
		t.Run(fmt.Sprintf("line%02d_%s", parent.line, strings.TrimPrefix(parent.msg.Task, "adaptation.commons.")), func(t *testing.T) {
			t.Parallel()
			replayParent(t, trace, parent, kids)
		})
	}
}

// replayParent runs parent (and, for a chord join, the other header
// members first) on a Go worker and compares what it publishes with kids.
func replayParent(t *testing.T, trace []traced, parent traced, kids []traced) {
	// What each stub returns, by task id.
	returns := map[string]any{}
	feed := []traced{parent}
	returns[parent.msg.ID] = kids[0].msg.Args // replaced below when not a plain step
	if len(kids[0].msg.Args) > 0 {
		returns[parent.msg.ID] = kids[0].msg.Args[0]
	}

	var chordGroup string
	var chordSize int
	if parent.msg.Chord != nil && parent.msg.Group != "" {
		// The last header member to finish applies the body with every
		// member's result, in group_index order: the child's args[0].
		chordGroup = parent.msg.Group
		results, ok := kids[0].msg.Args[0].([]any)
		if !ok {
			t.Fatalf("chord body args[0] is %T, want the list of header results", kids[0].msg.Args[0])
		}
		var others []traced
		for _, m := range trace {
			if m.msg.Group == chordGroup && m.msg.Chord != nil {
				chordSize++
				returns[m.msg.ID] = results[*m.msg.GroupIndex]
				if m.msg.ID != parent.msg.ID {
					others = append(others, m)
				}
			}
		}
		feed = append(others, parent)
	}

	mux := worker.NewServeMux()
	names := map[string]bool{}
	for _, m := range trace {
		names[m.msg.Task] = true
	}
	for name := range names {
		mux.HandleFunc(name, func(ctx context.Context, task *worker.Task) (any, error) {
			if name == "adaptation.commons.encode_workflow" {
				return nil, applyWorkflowCanvas(ctx, task, kids[0].msg)
			}
			return returns[task.ID()], nil
		})
	}
	// One task at a time, so the chord members join in feed order. What
	// the worker publishes goes to a queue it does not consume, so that the
	// children are compared, not run.
	w := startWorker(t, mux, worker.Config{Concurrency: 1, Queues: []string{"celery"}, DefaultQueue: "golden-out"})
	if chordGroup != "" {
		// Python's client stored the chord size before publishing the
		// header (celery-taskset-meta-<gid>.s); do the same.
		if err := w.backend.SetChordSize(context.Background(), chordGroup, chordSize); err != nil {
			t.Fatal(err)
		}
	}
	fed := map[string]bool{}
	for _, m := range feed {
		fed[m.msg.ID] = true
		w.sendEnvelope(t, m.env)
		w.result(t, m.msg.ID)
	}
	w.events.waitUntil(t, fmt.Sprintf("%d messages published", len(kids)), func() bool {
		return len(w.broker.Published())-len(feed) >= len(kids)
	})

	var got []traced
	for i, p := range w.broker.Published() {
		id, _ := p.Envelope.Headers["id"].(string)
		if !fed[id] {
			got = append(got, decodeTraced(t, -i, p.Envelope))
		}
	}
	for _, p := range w.broker.Published() {
		if id, _ := p.Envelope.Headers["id"].(string); !fed[id] && p.Route != worker.QueueRoute("golden-out") {
			t.Errorf("%s published to %+v, want the default queue", id, p.Route)
		}
	}
	if len(got) != len(kids) {
		t.Fatalf("Go published %d messages, Python %d", len(got), len(kids))
	}
	ids := newIDMatcher(feed, kids)
	for i, py := range kids {
		t.Logf("comparing with Python's line %d: %s[%s]", py.line, py.msg.Task, py.msg.ID)
		for _, d := range compareChild(py, got[i], ids) {
			t.Errorf("line %d %s: %s", py.line, py.msg.Task, d)
		}
	}
}

// applyWorkflowCanvas stands for encode_workflow, whose body (not the
// worker) applies the workflow canvas: it rebuilds that canvas from the
// first step's message (the step with the rest of the chain reversed in
// its embed) and applies it as a chain from inside the task, as the Python
// task does with canvas.apply_async().
func applyWorkflowCanvas(ctx context.Context, task *worker.Task, first *protocol.Message) error {
	steps := []protocol.Signature{{
		Task: first.Task, Args: first.Args, Kwargs: first.Kwargs,
		Options: protocol.Options{TaskID: first.ID, ReplyTo: first.ReplyTo},
	}}
	for i := len(first.Chain) - 1; i >= 0; i-- {
		steps = append(steps, first.Chain[i])
	}
	_, err := task.Client().Apply(ctx, protocol.NewChain(steps...))
	return err
}

// compareChild compares one message Go published with Python's.
//
// Not compared, on purpose: argsrepr and kwargsrepr (for logs only; Go maps
// have no insertion order, so Go's repr sorts dict keys), origin (the
// sender's node name), and the key order of JSON objects (Go writes sorted
// keys; every reader decodes to a dict).
func compareChild(py, goMsg traced, ids *idMatcher) []string {
	var diffs []string
	check := func(what string, p, g any) {
		diffs = append(diffs, compareJSON(what, p, g, ids)...)
	}
	check("task", py.msg.Task, goMsg.msg.Task)
	check("id", py.msg.ID, goMsg.msg.ID)
	check("args", py.body[0], goMsg.body[0])
	check("kwargs", py.body[1], goMsg.body[1])
	embedPy, embedGo := py.body[2].(map[string]any), goMsg.body[2].(map[string]any)
	for _, k := range []string{"callbacks", "errbacks", "chain", "chord"} {
		check("embed."+k, normalizeEmbed(embedPy[k]), normalizeEmbed(embedGo[k]))
	}
	for _, h := range []string{"group", "group_index", "parent_id", "root_id", "retries", "eta", "expires", "timelimit", "shadow", "ignore_result"} {
		check("header "+h, py.env.Headers[h], goMsg.env.Headers[h])
	}
	check("reply_to", py.env.ReplyTo, goMsg.env.ReplyTo)
	check("correlation_id", py.env.CorrelationID, goMsg.env.CorrelationID)
	return diffs
}

// normalizeEmbed removes the differences between Python's and Go's
// signature dicts that no Celery code reads. Each is explained where it is
// removed.
func normalizeEmbed(v any) any {
	switch v := v.(type) {
	case []any:
		out := make([]any, len(v))
		for i, x := range v {
			out[i] = normalizeEmbed(x)
		}
		return out
	case map[string]any:
		out := make(map[string]any, len(v))
		for k, x := range v {
			out[k] = normalizeEmbed(x)
		}
		return out
	}
	return v
}

var uuidPattern = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)

// idMatcher pairs Python's ids with Go's. An id that was in the messages
// fed to the Go worker (frozen by the client) must come out unchanged where
// Python kept it; an id that Python generated while running may be any id
// Go generated, as long as the pairing is the same everywhere.
//
// One legitimate difference: Celery 5.2.6 drops the id the client froze
// for a chord's header group (_maybe_group unwraps the group signature and
// its options) and makes a new one; Go keeps the client's. The chord join
// only needs every member, the chord size and the join to agree on one id,
// which they do in both. So a known Go id may pair with a new Python id,
// provided Python itself never used that known id.
type idMatcher struct {
	known  map[string]bool // ids in the fed messages
	pyUsed map[string]bool // ids in Python's output
	pyToGo map[string]string
	goToPy map[string]string
	rootID string
}

func newIDMatcher(fed, pyOut []traced) *idMatcher {
	m := &idMatcher{known: uuids(fed), pyUsed: uuids(pyOut), pyToGo: map[string]string{}, goToPy: map[string]string{}}
	m.rootID = pyOut[0].msg.RootID
	return m
}

// uuids returns every id-looking string in the messages.
func uuids(msgs []traced) map[string]bool {
	ids := map[string]bool{}
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case string:
			if uuidPattern.MatchString(v) {
				ids[v] = true
			}
		case []any:
			for _, x := range v {
				walk(x)
			}
		case map[string]any:
			for _, x := range v {
				walk(x)
			}
		}
	}
	for _, f := range msgs {
		walk(f.body)
		walk(f.env.Headers)
		walk(f.env.ReplyTo)
	}
	return ids
}

func (m *idMatcher) match(py, goID string) bool {
	if m.known[py] || (m.known[goID] && m.pyUsed[goID]) {
		return py == goID
	}
	if g, ok := m.pyToGo[py]; ok {
		return g == goID
	}
	if p, ok := m.goToPy[goID]; ok {
		return p == py
	}
	m.pyToGo[py], m.goToPy[goID] = goID, py
	return true
}

// compareJSON compares decoded JSON values, pairing ids with m.
func compareJSON(path string, py, goV any, m *idMatcher) []string {
	switch p := py.(type) {
	case map[string]any:
		g, ok := goV.(map[string]any)
		if !ok {
			return []string{fmt.Sprintf("%s: Python %s, Go %s", path, short(py), short(goV))}
		}
		keys := map[string]bool{}
		for k := range p {
			keys[k] = true
		}
		for k := range g {
			keys[k] = true
		}
		sorted := make([]string, 0, len(keys))
		for k := range keys {
			sorted = append(sorted, k)
		}
		sort.Strings(sorted)
		var diffs []string
		for _, k := range sorted {
			pv, pok := p[k]
			gv, gok := g[k]
			switch {
			case !pok && k == "root_id" && strings.HasSuffix(path, ".options") && gv == m.rootID:
				// Go freezes root_id into the steps of a chain applied from
				// inside a task; Python 5.2.6 leaves it out and the worker
				// running each step passes the root explicitly, which
				// overrides options.root_id. Same root either way.
			case !pok:
				diffs = append(diffs, fmt.Sprintf("%s.%s: only Go has it: %s", path, k, short(gv)))
			case !gok && pv == nil && strings.HasSuffix(path, ".options"):
				// Python writes some unset apply_async options as null
				// ("priority": null, from chord.run); Go leaves them out.
				// Celery reads both with options.get.
			case !gok:
				diffs = append(diffs, fmt.Sprintf("%s.%s: only Python has it: %s", path, k, short(pv)))
			default:
				diffs = append(diffs, compareJSON(path+"."+k, pv, gv, m)...)
			}
		}
		return diffs
	case []any:
		g, ok := goV.([]any)
		if !ok || len(g) != len(p) {
			return []string{fmt.Sprintf("%s: Python %s, Go %s", path, short(py), short(goV))}
		}
		var diffs []string
		for i := range p {
			diffs = append(diffs, compareJSON(fmt.Sprintf("%s[%d]", path, i), p[i], g[i], m)...)
		}
		return diffs
	case string:
		if g, ok := goV.(string); ok && uuidPattern.MatchString(p) && uuidPattern.MatchString(g) {
			if !m.match(p, g) {
				return []string{fmt.Sprintf("%s: Python id %s, Go id %s", path, p, g)}
			}
			return nil
		}
	}
	pj, _ := protocol.MarshalJSON(py)
	gj, _ := protocol.MarshalJSON(goV)
	if string(pj) != string(gj) {
		return []string{fmt.Sprintf("%s: Python %s, Go %s", path, pj, gj)}
	}
	return nil
}

func short(v any) string {
	data, _ := protocol.MarshalJSON(v)
	if len(data) > 300 {
		return string(data[:300]) + "..."
	}
	return string(data)
}
