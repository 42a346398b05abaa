package protocol

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"flag"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// The golden messages and results in testdata/golden were produced by real
// Python Celery 5.2.6 / kombu 5.2.4 with testdata/protocol/capture.py (in the
// repository root). testdata/golden/go holds what Encode makes of each
// message; refresh it with
//
//	go test ./protocol -run TestGoldenMessages -update
var update = flag.Bool("update", false, "rewrite the Go-side golden files in testdata/golden/go")

// testNow is the clock every test runs with (see TestMain): a fixed instant a
// few seconds after the golden messages were captured.
var testNow = time.Date(2026, 11, 27, 14, 47, 0, 0, time.UTC)

func TestMain(m *testing.M) {
	// Set once, before any test runs, so that parallel tests never race on it.
	now = func() time.Time { return testNow }
	os.Exit(m.Run())
}

// goldenMessage is one file testdata/golden/message_*.json.
type goldenMessage struct {
	Name        string         `json:"name"`
	Description string         `json:"description"`
	Properties  map[string]any `json:"properties"`
	Headers     map[string]any `json:"-"`
	RawHeaders  json.RawMessage
	Body        string `json:"body"`
	BodyBase64  string `json:"body_base64"`
	Envelope    Envelope
	// PythonBody is the decoded Python body (nil when compressed).
	PythonBody any
}

// readGoldenFile decodes a golden file with UnmarshalJSON, so that numbers
// keep Python's int/float distinction.
func readGoldenFile(t testing.TB, path string) map[string]any {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	v, err := UnmarshalJSON(data)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return v.(map[string]any)
}

func loadGoldenMessages(t testing.TB) []goldenMessage {
	t.Helper()
	paths, err := filepath.Glob("testdata/golden/message_*.json")
	if err != nil || len(paths) == 0 {
		t.Fatalf("no golden messages (run testdata/protocol/capture.py): %v", err)
	}
	var out []goldenMessage
	for _, p := range paths {
		f := readGoldenFile(t, p)
		g := goldenMessage{
			Name:        f["name"].(string),
			Description: f["description"].(string),
			Properties:  f["properties"].(map[string]any),
			Headers:     f["headers"].(map[string]any),
		}
		var body []byte
		if s, ok := f["body"].(string); ok {
			body = []byte(s)
			if g.PythonBody, err = UnmarshalJSON(body); err != nil {
				t.Fatalf("%s: python body: %v", p, err)
			}
		} else if body, err = base64.StdEncoding.DecodeString(f["body_base64"].(string)); err != nil {
			t.Fatal(err)
		}
		g.Envelope = envelopeFromPython(g.Properties, g.Headers, body)
		out = append(out, g)
	}
	return out
}

// envelopeFromPython builds an Envelope from captured AMQP properties.
func envelopeFromPython(props, headers map[string]any, body []byte) Envelope {
	str := func(k string) string { s, _ := props[k].(string); return s }
	num := func(k string) uint8 { n, _ := intValue(props[k]); return uint8(n) }
	return Envelope{
		ContentType:     str("content_type"),
		ContentEncoding: str("content_encoding"),
		Headers:         headers,
		Body:            body,
		CorrelationID:   str("correlation_id"),
		ReplyTo:         str("reply_to"),
		Priority:        num("priority"),
		DeliveryMode:    num("delivery_mode"),
		Expiration:      str("expiration"),
	}
}

// canonical renders any value as JSON after one normalizing round trip
// (MarshalJSON, UnmarshalJSON, MarshalJSON), so that values that mean the
// same to Python compare equal: json.Number("1E+2") and 100.0, time.Time and
// its ISO string, NaN and NaN.
func canonical(t testing.TB, v any) string {
	t.Helper()
	b, err := MarshalJSON(v)
	if err != nil {
		t.Fatalf("canonical: marshal: %v", err)
	}
	d, err := UnmarshalJSON(b)
	if err != nil {
		t.Fatalf("canonical: unmarshal %s: %v", b, err)
	}
	if b, err = MarshalJSON(d); err != nil {
		t.Fatalf("canonical: marshal again: %v", err)
	}
	return string(b)
}

// canonicalMessage renders every field of m except Version, one line each,
// for comparisons and readable diffs.
func canonicalMessage(t testing.TB, m *Message) string {
	t.Helper()
	sigs := func(s []Signature) any {
		if s == nil {
			return nil
		}
		return signatureMaps(s)
	}
	var chord any
	if m.Chord != nil {
		chord = m.Chord.Map()
	}
	var groupIndex any
	if m.GroupIndex != nil {
		groupIndex = *m.GroupIndex
	}
	fields := []struct {
		name  string
		value any
	}{
		{"id", m.ID}, {"task", m.Task}, {"args", m.Args}, {"kwargs", m.Kwargs},
		{"callbacks", sigs(m.Callbacks)}, {"errbacks", sigs(m.Errbacks)},
		{"chain", sigs(m.Chain)}, {"chord", chord},
		{"lang", m.Lang}, {"shadow", m.Shadow}, {"eta", nullIfZeroTime(m.ETA)},
		{"expires", nullIfZeroTime(m.Expires)}, {"group", m.Group},
		{"group_index", groupIndex}, {"retries", m.Retries},
		{"timelimit", []any{int64(m.TimeLimit.Hard), int64(m.TimeLimit.Soft)}},
		{"root_id", m.RootID}, {"parent_id", m.ParentID},
		{"argsrepr", m.ArgsRepr}, {"kwargsrepr", m.KwargsRepr},
		{"origin", m.Origin}, {"ignore_result", m.IgnoreResult},
		{"replaced_task_nesting", m.ReplacedTaskNesting},
		{"extra_headers", m.ExtraHeaders}, {"correlation_id", m.CorrelationID},
		{"reply_to", m.ReplyTo}, {"priority", int64(m.Priority)},
	}
	var sb strings.Builder
	for _, f := range fields {
		sb.WriteString(f.name + ": " + canonical(t, f.value) + "\n")
	}
	return sb.String()
}

// equalJSONValues compares decoded values, NaN equal to NaN.
func equalJSONValues(a, b any) bool {
	fa, aok := a.(float64)
	fb, bok := b.(float64)
	if aok && bok && math.IsNaN(fa) && math.IsNaN(fb) {
		return true
	}
	switch a := a.(type) {
	case map[string]any:
		b, ok := b.(map[string]any)
		if !ok || len(a) != len(b) {
			return false
		}
		for k, v := range a {
			w, ok := b[k]
			if !ok || !equalJSONValues(v, w) {
				return false
			}
		}
		return true
	case []any:
		b, ok := b.([]any)
		if !ok || len(a) != len(b) {
			return false
		}
		for i := range a {
			if !equalJSONValues(a[i], b[i]) {
				return false
			}
		}
		return true
	}
	return reflect.DeepEqual(a, b)
}

func TestGoldenMessages(t *testing.T) {
	t.Parallel()
	for _, g := range loadGoldenMessages(t) {
		t.Run(g.Name, func(t *testing.T) {
			t.Parallel()
			m, err := Decode(g.Envelope)
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			isV1 := len(g.Headers) == 0
			checkDecodedAgainstPython(t, g, m, isV1)

			env, err := Encode(m)
			if err != nil {
				t.Fatalf("Encode: %v", err)
			}
			checkEncodedAgainstPython(t, g, m, env, isV1)
			checkGoGolden(t, g.Name, env)

			again, err := Decode(env)
			if err != nil {
				t.Fatalf("Decode(Encode(m)): %v", err)
			}
			if got, want := canonicalMessage(t, again), canonicalMessage(t, afterRoundTrip(m)); got != want {
				t.Errorf("Decode(Encode(m)) differs:\n got %s\nwant %s", got, want)
			}
		})
	}
}

// afterRoundTrip returns what Decode(Encode(m)) should give: m with what
// Encode fills in, as as_task_v2 does (lang, root_id, argsrepr, kwargsrepr,
// correlation_id).
func afterRoundTrip(m *Message) *Message {
	w := *m
	if w.Lang == "" {
		w.Lang = "py"
	}
	if w.RootID == "" {
		w.RootID = w.ID
	}
	if w.ArgsRepr == "" {
		w.ArgsRepr = ArgsRepr(w.Args)
	}
	if w.KwargsRepr == "" {
		w.KwargsRepr = PythonRepr(nonNilKwargs(w.Kwargs))
	}
	w.CorrelationID = w.ID
	return &w
}

// checkDecodedAgainstPython compares the decoded fields with the values
// Python wrote in the headers (v2) or the body dict (v1).
func checkDecodedAgainstPython(t *testing.T, g goldenMessage, m *Message, isV1 bool) {
	t.Helper()
	fields := g.Headers
	if isV1 {
		fields = g.PythonBody.(map[string]any)
		if m.Version != 1 {
			t.Errorf("Version = %d, want 1", m.Version)
		}
	} else if m.Version != 2 {
		t.Errorf("Version = %d, want 2", m.Version)
	}
	str := func(k string) string { s, _ := fields[k].(string); return s }
	for _, c := range []struct{ name, got, want string }{
		{"id", m.ID, str("id")},
		{"task", m.Task, str("task")},
		{"root_id", m.RootID, str("root_id")},
		{"parent_id", m.ParentID, str("parent_id")},
		{"group", m.Group, str("group")},
		{"shadow", m.Shadow, str("shadow")},
		{"origin", m.Origin, str("origin")},
		{"eta", formatOptionalTime(m.ETA), str("eta")},
		{"expires", formatOptionalTime(m.Expires), str("expires")},
		{"correlation_id", m.CorrelationID, g.Properties["correlation_id"].(string)},
		{"reply_to", m.ReplyTo, g.Properties["reply_to"].(string)},
	} {
		if c.got != c.want {
			t.Errorf("%s = %q, want %q", c.name, c.got, c.want)
		}
	}
	if !isV1 {
		if m.ArgsRepr != str("argsrepr") || m.KwargsRepr != str("kwargsrepr") {
			t.Errorf("argsrepr, kwargsrepr = %q, %q, want the headers' %q, %q",
				m.ArgsRepr, m.KwargsRepr, str("argsrepr"), str("kwargsrepr"))
		}
		if want, _ := fields["ignore_result"].(bool); m.IgnoreResult != want {
			t.Errorf("IgnoreResult = %v, want %v", m.IgnoreResult, want)
		}
	}
	wantRetries, _ := intValue(fields["retries"])
	if int64(m.Retries) != wantRetries {
		t.Errorf("Retries = %d, want %d", m.Retries, wantRetries)
	}
	if gi, ok := intValue(fields["group_index"]); ok != (m.GroupIndex != nil) || ok && int64(*m.GroupIndex) != gi {
		t.Errorf("GroupIndex = %v, want %v", m.GroupIndex, fields["group_index"])
	}
	if p, _ := intValue(g.Properties["priority"]); int64(m.Priority) != p {
		t.Errorf("Priority = %d, want %d", m.Priority, p)
	}
	wantLimit := []any{nil, nil}
	if tl, ok := fields["timelimit"].([]any); ok {
		wantLimit = tl
	}
	if got := []any{timeLimitSeconds(m.TimeLimit.Hard), timeLimitSeconds(m.TimeLimit.Soft)}; canonical(t, got) != canonical(t, wantLimit) {
		t.Errorf("TimeLimit = %v, want %v", m.TimeLimit, wantLimit)
	}
	if g.PythonBody != nil {
		var args, kwargs any
		if isV1 || g.Name == "hybrid" {
			body := g.PythonBody.(map[string]any)
			args, kwargs = body["args"], body["kwargs"]
		} else {
			body := g.PythonBody.([]any)
			args, kwargs = body[0], body[1]
		}
		if !equalJSONValues(m.Args, args) || !equalJSONValues(m.Kwargs, kwargs) {
			t.Errorf("args, kwargs = %v, %v, want %v, %v", m.Args, m.Kwargs, args, kwargs)
		}
	}
}

func formatOptionalTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return formatISOTime(t)
}

// checkEncodedAgainstPython compares Encode's output with Python's message:
// for v2 the same headers and body, value for value; for v1 and hybrid
// messages the v2 form of the same task.
func checkEncodedAgainstPython(t *testing.T, g goldenMessage, m *Message, env Envelope, isV1 bool) {
	t.Helper()
	if env.CorrelationID != m.ID || env.ReplyTo != g.Envelope.ReplyTo ||
		env.Priority != g.Envelope.Priority || env.DeliveryMode != 2 ||
		env.ContentType != "application/json" || env.ContentEncoding != "utf-8" {
		t.Errorf("properties = %+v, want those of %+v", env, g.Envelope)
	}
	if (env.Expiration == "") != (g.Envelope.Expiration == "") {
		t.Errorf("Expiration = %q, Python's %q", env.Expiration, g.Envelope.Expiration)
	}
	for k, v := range env.Headers {
		if _, ok := v.(int64); ok {
			t.Errorf("header %s = int64(%v), want int32 as py-amqp sends small ints", k, v)
		}
	}
	gotBody, err := UnmarshalJSON(env.Body)
	if err != nil {
		t.Fatalf("encoded body: %v", err)
	}
	if isV1 || g.Name == "hybrid" {
		if g.PythonBody != nil && canonical(t, gotBody.([]any)[0]) != canonical(t, g.PythonBody.(map[string]any)["args"]) {
			t.Errorf("encoded args = %v, want %v", gotBody, g.PythonBody)
		}
		if g.Name == "hybrid" && canonical(t, normalizeValue(env.Headers, 0)) != canonical(t, g.Headers) {
			t.Errorf("headers:\n got %s\nwant %s", canonical(t, env.Headers), canonical(t, g.Headers))
		}
		return
	}
	wantHeaders := map[string]any{}
	for k, v := range g.Headers {
		if k != "compression" { // Encode never compresses
			wantHeaders[k] = v
		}
	}
	if got, want := canonical(t, normalizeValue(env.Headers, 0)), canonical(t, wantHeaders); got != want {
		t.Errorf("headers:\n got %s\nwant %s", got, want)
	}
	if g.PythonBody != nil {
		if got, want := canonical(t, gotBody), canonical(t, g.PythonBody); got != want {
			t.Errorf("body:\n got %s\nwant %s", got, want)
		}
	}
}

// checkGoGolden compares env with testdata/golden/go/<name>.json, or writes
// that file with -update.
func checkGoGolden(t *testing.T, name string, env Envelope) {
	t.Helper()
	doc := map[string]any{
		"properties": map[string]any{
			"content_type": env.ContentType, "content_encoding": env.ContentEncoding,
			"correlation_id": env.CorrelationID, "reply_to": env.ReplyTo,
			"priority": env.Priority, "delivery_mode": env.DeliveryMode,
			"expiration": env.Expiration,
		},
		"headers": env.Headers,
		"body":    string(env.Body),
	}
	got, err := MarshalJSON(doc)
	if err != nil {
		t.Fatal(err)
	}
	got = append(got, '\n')
	path := filepath.Join("testdata", "golden", "go", "message_"+name+".json")
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("Encode output differs from %s (run with -update if intended):\n got %s\nwant %s", path, got, want)
	}
}

// TestGoldenReprs checks the saferepr port against the argsrepr and
// kwargsrepr headers Python computed.
func TestGoldenReprs(t *testing.T) {
	t.Parallel()
	// Python keeps dict insertion order; Go sorts keys. These messages have
	// dicts whose Python order is not sorted (a Signature's keys).
	unsortedKwargs := map[string]bool{"chord_unlock": true}
	for _, g := range loadGoldenMessages(t) {
		if len(g.Headers) == 0 || g.Name == "hybrid" || unsortedKwargs[g.Name] {
			continue
		}
		t.Run(g.Name, func(t *testing.T) {
			t.Parallel()
			m, err := Decode(g.Envelope)
			if err != nil {
				t.Fatal(err)
			}
			if got, want := ArgsRepr(m.Args), g.Headers["argsrepr"]; got != want {
				t.Errorf("ArgsRepr =\n%q\nwant\n%q", got, want)
			}
			if got, want := PythonRepr(m.Kwargs), g.Headers["kwargsrepr"]; got != want {
				t.Errorf("PythonRepr(kwargs) =\n%q\nwant\n%q", got, want)
			}
		})
	}
}

// TestGoldenMessageDetails checks what each kind of message decodes to.
func TestGoldenMessageDetails(t *testing.T) {
	t.Parallel()
	byName := map[string]*Message{}
	for _, g := range loadGoldenMessages(t) {
		m, err := Decode(g.Envelope)
		if err != nil {
			t.Fatalf("%s: %v", g.Name, err)
		}
		byName[g.Name] = m
	}
	ptr := func(i int) *int { return &i }
	tests := []struct {
		name  string
		check func(m *Message) bool
	}{
		{"v2_options", func(m *Message) bool {
			return m.TimeLimit == TimeLimit{Hard: 10 * time.Second, Soft: 5 * time.Second} &&
				m.Priority == 5 && m.Expires.Sub(m.ETA) == 50*time.Second
		}},
		{"v2_shadow", func(m *Message) bool {
			return m.TimeLimit.Hard == 1500*time.Millisecond && m.Shadow == "proj.add.shadowed" && m.IgnoreResult
		}},
		{"link", func(m *Message) bool {
			return len(m.Callbacks) == 1 && m.Callbacks[0].Task == "proj.mul" &&
				reflect.DeepEqual(m.Callbacks[0].Args, []any{int64(10)}) &&
				len(m.Errbacks) == 1 && m.Errbacks[0].Task == "proj.err" && m.Chain == nil
		}},
		{"chain", func(m *Message) bool {
			// Reversed: the next step is last.
			return len(m.Chain) == 2 && m.Chain[1].Task == "proj.add" && !m.Chain[1].Immutable &&
				m.Chain[0].Task == "proj.mul" && m.Chain[0].Immutable && m.Chain[0].Options.TaskID != ""
		}},
		{"chord_header_1", func(m *Message) bool {
			return m.Chord != nil && m.Chord.Task == "proj.tsum" && m.Group != "" &&
				reflect.DeepEqual(m.GroupIndex, ptr(1))
		}},
		{"chain_with_chord", func(m *Message) bool {
			if len(m.Chain) != 1 || m.Chain[0].SubtaskType != SubtaskChord {
				return false
			}
			header, body, err := m.Chain[0].ChordParts()
			return err == nil && len(header) == 2 && body.SubtaskType == SubtaskChain
		}},
		{"nan_infinity", func(m *Message) bool {
			x, _ := m.Kwargs["x"].(float64)
			return math.IsNaN(x) && m.Kwargs["y"] == math.Inf(1) && m.Kwargs["w"] == 2.0
		}},
		{"big_ints", func(m *Message) bool {
			return m.Args[0] == int64(math.MaxInt64) && m.Args[1] == json.Number("9223372036854775808") &&
				m.Args[4] == json.Number("1000000000000000000000000000000")
		}},
		{"custom_headers", func(m *Message) bool {
			return m.ExtraHeaders["x-custom"] == "v" && m.ExtraHeaders["x-num"] == int64(5) && len(m.ExtraHeaders) == 4
		}},
		{"retry", func(m *Message) bool {
			return m.Retries == 1 && !m.ETA.IsZero() && m.ExtraHeaders["x-custom"] == "kept"
		}},
		{"zlib", func(m *Message) bool { return reflect.DeepEqual(m.Args, []any{int64(2), int64(2)}) }},
		{"bzip2", func(m *Message) bool { return reflect.DeepEqual(m.Args, []any{int64(2), int64(2)}) }},
		{"chord_unlock", func(m *Message) bool {
			body, err := ParseSignature(m.Args[1])
			return err == nil && m.Task == "celery.chord_unlock" && body.Task == "proj.tsum" && m.Kwargs["result"] != nil
		}},
		{"hybrid", func(m *Message) bool { return m.Version == 2 && m.Origin == "gen4242@golden" }},
		{"v1", func(m *Message) bool {
			return m.Version == 1 && len(m.Callbacks) == 1 && m.TimeLimit.Hard == 10*time.Second &&
				m.ArgsRepr == "[2, 2]"
		}},
		{"v1_chain", func(m *Message) bool {
			// v1 chains are nested links.
			return len(m.Callbacks) == 1 && len(m.Callbacks[0].Options.Link) == 1 && m.Chain == nil
		}},
		{"v1_group_0", func(m *Message) bool { return m.Group != "" && m.Version == 1 }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			m, ok := byName[tt.name]
			if !ok {
				t.Fatalf("no golden message %s", tt.name)
			}
			if !tt.check(m) {
				t.Errorf("unexpected message:\n%s", canonicalMessage(t, m))
			}
		})
	}
}
