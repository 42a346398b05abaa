package protocol

import (
	"bufio"
	"bytes"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"
)

// loadCaptures returns every task message body in the shared captures
// (testdata/captures, real Python 5.2.6 traffic) and the golden messages,
// decoded with UnmarshalJSON.
func loadCaptureBodies(t testing.TB) map[string]any {
	t.Helper()
	bodies := map[string]any{}
	data, err := os.ReadFile("testdata/captures/py525-seed-canvas-first-message.json")
	if err != nil {
		t.Fatal(err)
	}
	// The file starts with one "applied <id>" line before the JSON.
	_, doc, _ := bytes.Cut(data, []byte("\n"))
	first, err := UnmarshalJSON(doc)
	if err != nil {
		t.Fatal(err)
	}
	bodies["first-message"] = first.(map[string]any)["body"]

	f, err := os.Open("../testdata/captures/py525-seed-workflow.trace.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for i := 0; sc.Scan(); i++ {
		line, err := UnmarshalJSON(sc.Bytes())
		if err != nil {
			t.Fatalf("trace line %d: %v", i, err)
		}
		body, err := UnmarshalJSON([]byte(line.(map[string]any)["body"].(string)))
		if err != nil {
			t.Fatalf("trace line %d body: %v", i, err)
		}
		bodies["trace-"+itoa(i)] = body
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	for _, g := range loadGoldenMessages(t) {
		if g.PythonBody != nil {
			bodies["golden-"+g.Name] = g.PythonBody
		}
	}
	return bodies
}

func itoa(i int) string { return string(rune('0'+i/10)) + string(rune('0'+i%10)) }

// collectSignatures walks v and returns every signature dict in it.
func collectSignatures(v any, out *[]map[string]any) {
	switch v := v.(type) {
	case map[string]any:
		_, hasTask := v["task"]
		_, hasOptions := v["options"]
		_, hasSubtask := v["subtask_type"]
		if hasTask && hasOptions && hasSubtask {
			*out = append(*out, v)
		}
		for _, x := range v {
			collectSignatures(x, out)
		}
	case []any:
		for _, x := range v {
			collectSignatures(x, out)
		}
	}
}

// TestSignatureRoundTripCaptures: ParseSignature(x).Map() equals x for every
// signature Python wrote in the captures.
func TestSignatureRoundTripCaptures(t *testing.T) {
	t.Parallel()
	var sigs []map[string]any
	for _, body := range loadCaptureBodies(t) {
		collectSignatures(body, &sigs)
	}
	if len(sigs) < 100 {
		t.Fatalf("found only %d signatures in the captures", len(sigs))
	}
	sawNullPriority := false
	for _, x := range sigs {
		s, err := ParseSignature(x)
		if err != nil {
			t.Fatalf("ParseSignature(%v): %v", x, err)
		}
		if got := s.Map(); !reflect.DeepEqual(got, x) {
			t.Errorf("ParseSignature(x).Map() differs:\n got %s\nwant %s", canonical(t, got), canonical(t, x))
		}
		if opts := x["options"].(map[string]any); opts["chain"] != nil {
			if _, ok := opts["priority"]; ok && opts["priority"] == nil {
				sawNullPriority = true
				if !s.Options.ChainSet || s.Options.Chain == nil {
					t.Errorf("options.chain [] not kept as set: %+v", s.Options)
				}
			}
		}
	}
	if !sawNullPriority {
		t.Error(`no signature with "chain": [] and "priority": null found; the capture changed?`)
	}
}

func TestCanvasFirstMessage(t *testing.T) {
	t.Parallel()
	body := loadCaptureBodies(t)["first-message"].([]any)
	chain, err := ParseSignatures(body[2].(map[string]any)["chain"])
	if err != nil {
		t.Fatal(err)
	}
	// Reversed: the next step (get_video_size) is last, the chord first.
	if len(chain) != 3 || chain[2].Task != "adaptation.commons.get_video_size" || chain[0].Task != TaskChord {
		t.Fatalf("chain = %v", chain)
	}
	chord := chain[0]
	header, chordBody, err := chord.ChordParts()
	if err != nil {
		t.Fatal(err)
	}
	if len(header) != 2 || header[0].SubtaskType != SubtaskChain {
		t.Fatalf("header = %+v", header)
	}
	steps, err := header[0].ChainTasks()
	if err != nil {
		t.Fatal(err)
	}
	if len(steps) != 5 || steps[0].Task != "adaptation.commons.compute_target_size" ||
		steps[4].Options.Chord == nil || *steps[4].Options.GroupIndex != 0 {
		t.Errorf("first header chain = %+v", steps)
	}
	bodySteps, err := chordBody.ChainTasks()
	if err != nil || len(bodySteps) != 3 || bodySteps[2].Kwargs["complete"] != true {
		t.Errorf("chord body steps = %+v, %v", bodySteps, err)
	}

	// The constructors rebuild Python's dicts from the parts.
	groupSig, err := ParseSignature(chord.Kwargs["header"])
	if err != nil {
		t.Fatal(err)
	}
	group := NewGroup(header...)
	group.Options = groupSig.Options
	if !reflect.DeepEqual(group.Map(), chord.Kwargs["header"]) {
		t.Errorf("NewGroup(...).Map() =\n%s\nwant\n%s", canonical(t, group.Map()), canonical(t, chord.Kwargs["header"]))
	}
	bodyChain := NewChain(bodySteps...)
	if !reflect.DeepEqual(bodyChain.Map(), chord.Kwargs["body"]) {
		t.Errorf("NewChain(...).Map() =\n%s\nwant\n%s", canonical(t, bodyChain.Map()), canonical(t, chord.Kwargs["body"]))
	}
	rebuilt := NewChord(header, chordBody)
	rebuilt.Kwargs["header"] = group.Map()
	rebuilt.Options = chord.Options
	if got, want := rebuilt.Map(), body[2].(map[string]any)["chain"].([]any)[0]; !reflect.DeepEqual(got, want) {
		t.Errorf("NewChord(...).Map() =\n%s\nwant\n%s", canonical(t, got), canonical(t, want))
	}
}

func TestChordPartsHeaderForms(t *testing.T) {
	t.Parallel()
	a := Signature{Task: "proj.a"}
	b := Signature{Task: "proj.b"}
	body := Signature{Task: "proj.sum"}
	tests := []struct {
		name   string
		header any
		want   []string
	}{
		{"group signature", NewGroup(a, b).Map(), []string{"proj.a", "proj.b"}},
		{"plain list", []any{a.Map(), b.Map()}, []string{"proj.a", "proj.b"}},
		{"single signature", a.Map(), []string{"proj.a"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := Signature{Task: TaskChord, SubtaskType: SubtaskChord,
				Kwargs: map[string]any{"header": tt.header, "body": body.Map(), "kwargs": map[string]any{}}}
			header, gotBody, err := c.ChordParts()
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, h := range header {
				names = append(names, h.Task)
			}
			if !reflect.DeepEqual(names, tt.want) || gotBody.Task != "proj.sum" {
				t.Errorf("ChordParts = %v, %v", names, gotBody.Task)
			}
		})
	}
	if _, _, err := (Signature{Task: TaskChord}).ChordParts(); err == nil {
		t.Error("ChordParts of a chord without kwargs: no error")
	}
	if _, err := (Signature{Task: TaskChain}).ChainTasks(); err == nil {
		t.Error("ChainTasks without kwargs.tasks: no error")
	}
}

func TestParseSignatureOptions(t *testing.T) {
	t.Parallel()
	link := map[string]any{"task": "proj.cb", "args": []any{}, "kwargs": map[string]any{},
		"options": map[string]any{}, "subtask_type": nil, "immutable": false}
	eta := "2026-11-27T12:26:13.421915+00:00"
	in := map[string]any{
		"task": "proj.add", "args": []any{int64(1)}, "kwargs": map[string]any{},
		"subtask_type": nil, "immutable": true, "chord_size": int64(3), "custom": "kept",
		"options": map[string]any{
			"task_id": "t", "reply_to": "r", "root_id": "root", "parent_id": "p",
			"group_id": "g", "group_index": int64(2), "chord": link, "link": link,
			"link_error": []any{link}, "chain": []any{}, "queue": "q", "exchange": "e",
			"routing_key": "rk", "priority": int64(5), "countdown": 1.5, "eta": eta,
			"expires": int64(60), "time_limit": int64(10), "soft_time_limit": 5.5,
			"headers": map[string]any{"x": int64(1)}, "shadow": "s", "immutable": true,
			"stamped_headers": nil, "unknown": "x",
		},
	}
	s, err := ParseSignature(in)
	if err != nil {
		t.Fatal(err)
	}
	o := s.Options
	etaTime, _ := parseISOTime(eta)
	if o.TaskID != "t" || *o.GroupIndex != 2 || o.Chord.Task != "proj.cb" || len(o.Link) != 1 ||
		len(o.LinkError) != 1 || !o.ChainSet || o.Chain == nil || *o.Priority != 5 ||
		*o.Countdown != 1.5 || !o.ETA.Equal(etaTime) || *o.ExpiresIn != 60 || *o.TimeLimit != 10 ||
		*o.SoftTimeLimit != 5.5 || o.Shadow != "s" || !*o.Immutable || o.Extra["unknown"] != "x" ||
		*s.ChordSize != 3 || s.Extra["custom"] != "kept" || !s.Immutable {
		t.Errorf("parsed = %+v", s)
	}
	if v, ok := o.Extra["stamped_headers"]; !ok || v != nil {
		t.Error("explicit null option not kept in Extra")
	}
	// Map writes a single link dict back as a list; otherwise the same dict.
	wantMap := cloneValue(in).(map[string]any)
	wantMap["options"].(map[string]any)["link"] = []any{link}
	if got, want := canonical(t, s.Map()), canonical(t, wantMap); got != want {
		t.Errorf("Map() =\n%s\nwant\n%s", got, want)
	}

	expiresAt, err := ParseSignature(map[string]any{"task": "x", "options": map[string]any{"expires": eta}})
	if err != nil || !expiresAt.Options.ExpiresAt.Equal(etaTime) || expiresAt.Options.ExpiresIn != nil {
		t.Errorf("expires string: %+v, %v", expiresAt.Options, err)
	}
}

func TestParseSignatureErrors(t *testing.T) {
	t.Parallel()
	for _, in := range []any{
		nil, "proj.add", []any{},
		map[string]any{"task": int64(1)},
		map[string]any{"task": "x", "args": "1, 2"},
		map[string]any{"task": "x", "kwargs": []any{}},
		map[string]any{"task": "x", "options": map[string]any{"priority": "high"}},
		map[string]any{"task": "x", "options": map[string]any{"eta": "tomorrow"}},
		map[string]any{"task": "x", "options": map[string]any{"chain": map[string]any{}}},
		map[string]any{"task": "x", "options": map[string]any{"link": []any{int64(1)}}},
		map[string]any{"task": "x", "immutable": "yes"},
	} {
		if _, err := ParseSignature(in); err == nil || !strings.HasPrefix(err.Error(), "protocol: ") {
			t.Errorf("ParseSignature(%v) error = %v, want a protocol error", in, err)
		}
	}
}

func TestParseSignatures(t *testing.T) {
	t.Parallel()
	one := Signature{Task: "a"}.Map()
	tests := []struct {
		in      any
		wantLen int
		wantNil bool
	}{
		{nil, 0, true},
		{[]any{}, 0, false},
		{one, 1, false},
		{[]any{one, one}, 2, false},
		{[]Signature{{Task: "a"}}, 1, false},
	}
	for _, tt := range tests {
		got, err := ParseSignatures(tt.in)
		if err != nil || len(got) != tt.wantLen || (got == nil) != tt.wantNil {
			t.Errorf("ParseSignatures(%v) = %v, %v", tt.in, got, err)
		}
	}
}

func TestSignatureClone(t *testing.T) {
	t.Parallel()
	prio := 3
	orig := Signature{
		Task: "proj.add", Args: []any{[]any{int64(1)}}, Kwargs: map[string]any{"k": map[string]any{"x": int64(1)}},
		Options: Options{Priority: &prio, Link: []Signature{{Task: "cb", Args: []any{int64(1)}}},
			Headers: map[string]any{"h": []any{int64(1)}}, ETA: time.Unix(0, 0)},
	}
	c := orig.Clone()
	if !reflect.DeepEqual(c, orig) {
		t.Fatalf("Clone() = %+v, want %+v", c, orig)
	}
	c.Args[0].([]any)[0] = int64(2)
	c.Kwargs["k"].(map[string]any)["x"] = int64(2)
	*c.Options.Priority = 9
	c.Options.Link[0].Args[0] = int64(2)
	c.Options.Headers["h"].([]any)[0] = int64(2)
	if orig.Args[0].([]any)[0] != int64(1) || orig.Kwargs["k"].(map[string]any)["x"] != int64(1) ||
		*orig.Options.Priority != 3 || orig.Options.Link[0].Args[0] != int64(1) ||
		orig.Options.Headers["h"].([]any)[0] != int64(1) {
		t.Errorf("changing the clone changed the original: %+v", orig)
	}
}
