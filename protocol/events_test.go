package protocol

import (
	"bufio"
	"os"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// traceLine is one message of ../testdata/captures/py525-seed-workflow.trace.jsonl.
type traceLine struct {
	exchange   string
	routingKey string
	properties map[string]any
	body       string
}

func readTrace(t *testing.T) []traceLine {
	t.Helper()
	f, err := os.Open("../testdata/captures/py525-seed-workflow.trace.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var lines []traceLine
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		v, err := UnmarshalJSON(sc.Bytes())
		if err != nil {
			t.Fatal(err)
		}
		m := v.(map[string]any)
		keys := m["routing_keys"].([]any)
		lines = append(lines, traceLine{
			exchange: m["exchange"].(string), routingKey: keys[0].(string),
			properties: m["properties"].(map[string]any), body: m["body"].(string),
		})
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return lines
}

var timestampField = regexp.MustCompile(`"timestamp": [0-9.e+]+`)

// TestWorkerEventsMatchCapture rebuilds every worker event a Python 5.2.6
// worker sent in the capture from its values, and requires the same JSON
// byte for byte (but for the timestamp, which goes through time.Time, and
// the extra sw_impl field), and the same routing key.
func TestWorkerEventsMatchCapture(t *testing.T) {
	t.Parallel()
	n := 0
	for _, line := range readTrace(t) {
		if line.exchange != EventExchange || !strings.HasPrefix(line.routingKey, "worker.") {
			continue
		}
		n++
		v, err := UnmarshalJSON([]byte(line.body))
		if err != nil {
			t.Fatal(err)
		}
		py := v.(map[string]any)
		var load [3]float64
		for i, l := range py["loadavg"].([]any) {
			load[i] = l.(float64)
		}
		ts := py["timestamp"].(float64)
		e := WorkerEvent(py["type"].(string), WorkerState{
			Active: int(py["active"].(int64)), Processed: int(py["processed"].(int64)), LoadAvg: load,
		})
		e.Hostname = py["hostname"].(string)
		e.UTCOffset = int(py["utcoffset"].(int64))
		e.PID = int(py["pid"].(int64))
		e.Clock = uint64(py["clock"].(int64))
		e.Timestamp = fromUnixSeconds(ts)
		got, err := e.JSON()
		if err != nil {
			t.Fatal(err)
		}
		gotText := strings.Replace(string(got), `"sw_impl": "vhg-worker", `, "", 1)
		if a, b := timestampField.ReplaceAllString(gotText, `"timestamp": T`), timestampField.ReplaceAllString(line.body, `"timestamp": T`); a != b {
			t.Errorf("%s:\n got  %s\n want %s", e.Type, a, b)
		}
		if e.RoutingKey() != line.routingKey {
			t.Errorf("routing key %q, want %q", e.RoutingKey(), line.routingKey)
		}
		back, _ := UnmarshalJSON(got)
		if d := back.(map[string]any)["timestamp"].(float64) - ts; d > 1e-6 || d < -1e-6 {
			t.Errorf("timestamp %v, want %v", back.(map[string]any)["timestamp"], ts)
		}
		if line.properties["delivery_mode"] != int64(1) || line.properties["headers"].(map[string]any)["hostname"] != e.Hostname {
			t.Errorf("capture properties %v: not what the reference says", line.properties)
		}
	}
	if n < 3 {
		t.Fatalf("only %d worker events in the capture", n)
	}
}

func TestTaskEvents(t *testing.T) {
	t.Parallel()
	eta := time.Date(2026, 11, 27, 12, 0, 0, 500000000, time.UTC)
	msg := &Message{ID: "id-1", Task: "proj.add", Args: []any{int64(2), "x"}, Kwargs: map[string]any{"k": true},
		RootID: "root", Retries: 2, ETA: eta}
	exc := ExceptionInfo{Module: "builtins", Type: "ValueError", Message: []any{"boom"}}
	long := strings.Repeat("ab ", 600)
	for _, c := range []struct {
		event Event
		key   string
		want  string // the type's own fields as JSON
	}{
		{TaskReceivedEvent(msg), "task.received",
			`{"uuid": "id-1", "name": "proj.add", "args": "(2, 'x')", "kwargs": "{'k': True}", "root_id": "root", "parent_id": null, "retries": 2, "eta": "2026-11-27T12:00:00.500000+00:00", "expires": null}`},
		{TaskReceivedEvent(&Message{ID: "id-2", Task: "t", ArgsRepr: "[1]", KwargsRepr: "{}"}), "task.received",
			`{"uuid": "id-2", "name": "t", "args": "[1]", "kwargs": "{}", "root_id": null, "parent_id": null, "retries": 0, "eta": null, "expires": null}`},
		{TaskStartedEvent("id-1"), "task.started", `{"uuid": "id-1"}`},
		{TaskSucceededEvent("id-1", map[string]any{"a": int64(1)}, 1500*time.Millisecond), "task.succeeded",
			`{"uuid": "id-1", "result": "{'a': 1}", "runtime": 1.5}`},
		{TaskSucceededEvent("id-1", "text", 0), "task.succeeded", `{"uuid": "id-1", "result": "'text'", "runtime": 0.0}`},
		{TaskFailedEvent("id-1", exc, "Traceback ..."), "task.failed",
			`{"uuid": "id-1", "exception": "ValueError('boom')", "traceback": "Traceback ..."}`},
		{TaskRetriedEvent("id-1", exc, "tb"), "task.retried", `{"uuid": "id-1", "exception": "ValueError('boom')", "traceback": "tb"}`},
		{TaskRevokedEvent("id-1", true, 15, false), "task.revoked", `{"uuid": "id-1", "terminated": true, "signum": 15, "expired": false}`},
		{TaskRevokedEvent("id-1", false, 0, true), "task.revoked", `{"uuid": "id-1", "terminated": false, "signum": null, "expired": true}`},
		{TaskRejectedEvent("id-1", true), "task.rejected", `{"uuid": "id-1", "requeue": true}`},
	} {
		if got := c.event.RoutingKey(); got != c.key {
			t.Errorf("%s: routing key %q, want %q", c.event.Type, got, c.key)
		}
		keys := make([]string, len(c.event.Fields))
		values := make([]any, len(c.event.Fields))
		for i, f := range c.event.Fields {
			keys[i], values[i] = f.Name, f.Value
		}
		enc := jsonEncoder{}
		if err := enc.encodeOrdered(keys, values); err != nil {
			t.Fatal(err)
		}
		if got := enc.buf.String(); got != c.want {
			t.Errorf("%s fields:\n got  %s\n want %s", c.event.Type, got, c.want)
		}
	}
	r, _ := TaskSucceededEvent("id", long, 0).Field("result")
	if n := len(r.(string)); n > resultReprMaxLen+5 {
		t.Errorf("result repr of %d characters, want at most about %d", n, resultReprMaxLen)
	}
}

func TestEventEnvelope(t *testing.T) {
	t.Parallel()
	e := TaskStartedEvent("id-1")
	e.Hostname, e.UTCOffset, e.PID, e.Clock = "w1@host", 0, 14817, 7
	e.Timestamp = time.Unix(1795782428, 250000000)
	got, err := e.JSON()
	if err != nil {
		t.Fatal(err)
	}
	want := `{"hostname": "w1@host", "utcoffset": 0, "pid": 14817, "clock": 7, "uuid": "id-1", "timestamp": 1795782428.25, "type": "task-started"}`
	if string(got) != want {
		t.Errorf("JSON:\n got  %s\n want %s", got, want)
	}
	m := e.Map()
	if m["type"] != EventTaskStarted || m["uuid"] != "id-1" || m["clock"] != uint64(7) {
		t.Errorf("Map() = %v", m)
	}
}

func TestUTCOffset(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		zone *time.Location
		want int
	}{
		{time.UTC, 0},
		{time.FixedZone("CET", 3600), -1},
		{time.FixedZone("EST", -5*3600), 5},
		{time.FixedZone("IST", 5*3600+1800), -6}, // Python: -19800 // 3600
		{time.FixedZone("NST", -(3*3600 + 1800)), 3},
	} {
		if got := UTCOffset(time.Date(2026, 1, 1, 0, 0, 0, 0, c.zone)); got != c.want {
			t.Errorf("UTCOffset in %s = %d, want %d", c.zone, got, c.want)
		}
	}
}

func TestExceptionRepr(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		exc  ExceptionInfo
		want string
	}{
		{ExceptionInfo{Type: "ValueError", Message: []any{"boom"}}, "ValueError('boom')"},
		{ExceptionInfo{Type: "Exception"}, "Exception()"},
		{ExceptionInfo{Type: "TimeLimitExceeded", Message: []any{60.0}}, "TimeLimitExceeded(60.0)"},
		{ExceptionInfo{Type: "KeyError", Message: []any{"it's", int64(2)}}, `KeyError('it\'s', 2)`},
	} {
		if got := c.exc.Repr(); got != c.want {
			t.Errorf("Repr() = %s, want %s", got, c.want)
		}
	}
}

func TestLamportClock(t *testing.T) {
	t.Parallel()
	var c LamportClock
	if c.Forward() != 1 || c.Forward() != 2 {
		t.Fatal("Forward does not count from 1")
	}
	if got := c.Adjust(10); got != 11 {
		t.Errorf("Adjust(10) from 2 = %d, want 11", got)
	}
	if got := c.Adjust(3); got != 12 {
		t.Errorf("Adjust(3) from 11 = %d, want 12", got)
	}
	// Concurrent senders never share a value.
	seen := make(chan uint64, 1000)
	var wg sync.WaitGroup
	for range 10 {
		wg.Go(func() {
			for range 100 {
				seen <- c.Forward()
			}
		})
	}
	wg.Wait()
	close(seen)
	unique := map[uint64]bool{}
	for v := range seen {
		unique[v] = true
	}
	if len(unique) != 1000 || c.Value() != 1012 {
		t.Errorf("%d unique values, clock %d; want 1000 and 1012", len(unique), c.Value())
	}
}
