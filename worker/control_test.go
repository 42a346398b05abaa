package worker_test

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vhg/vhg-worker/protocol"
	"github.com/vhg/vhg-worker/worker"
)

// controlRequest encodes a request as kombu's Mailbox publishes it, with a
// reply wanted.
func controlRequest(t *testing.T, req protocol.ControlRequest) (map[string]any, []byte) {
	t.Helper()
	if req.ReplyTo == nil {
		req.ReplyTo = &protocol.ControlReplyTo{Exchange: protocol.ControlReplyExchange, RoutingKey: "client-oid"}
		req.Ticket = "ticket-1"
	}
	body, err := req.JSON()
	if err != nil {
		t.Fatal(err)
	}
	headers := map[string]any{"clock": int64(req.Clock)}
	if !req.Expires.IsZero() {
		headers["expires"] = protocol.UnixSeconds(req.Expires)
	}
	return headers, body
}

// handle runs a command and returns its result as a client decodes it.
func handle(t *testing.T, c *worker.Control, method string, args map[string]any) any {
	t.Helper()
	result, reply := c.Handle(method, args)
	if !reply {
		t.Fatalf("%s: no reply", method)
	}
	b, err := protocol.MarshalJSON(result)
	if err != nil {
		t.Fatal(err)
	}
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	return v
}

func wantResult(t *testing.T, what string, got any, want string) {
	t.Helper()
	var w any
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		t.Fatalf("bad want %s: %v", want, err)
	}
	gb, _ := json.Marshal(got)
	wb, _ := json.Marshal(w)
	if string(gb) != string(wb) {
		t.Errorf("%s = %s, want %s", what, gb, wb)
	}
}

func TestControlAddressing(t *testing.T) {
	t.Parallel()
	w := newTestWorker(t, worker.NewServeMux(), worker.Config{NodeName: "w1@box.example"})
	c := worker.NewControl(w.server, worker.ControlConfig{})
	for _, tc := range []struct {
		name string
		req  protocol.ControlRequest
		want bool // answered
		err  string
	}{
		{name: "broadcast", req: protocol.ControlRequest{}, want: true},
		{name: "destination names us", req: protocol.ControlRequest{Destination: []string{"x@y", "w1@box.example"}}, want: true},
		{name: "destination names others", req: protocol.ControlRequest{Destination: []string{"w1@box"}}},
		{name: "empty destination is everyone", req: protocol.ControlRequest{Destination: []string{}}, want: true},
		{name: "destination wins over pattern", req: protocol.ControlRequest{Destination: []string{"x@y"}, Pattern: "*", Matcher: "glob"}},
		{name: "glob", req: protocol.ControlRequest{Pattern: "w?@*.example", Matcher: "glob"}, want: true},
		{name: "glob set", req: protocol.ControlRequest{Pattern: "w[0-9]@*", Matcher: "glob"}, want: true},
		{name: "glob negated set", req: protocol.ControlRequest{Pattern: "w[!1]@*", Matcher: "glob"}},
		{name: "glob is whole-name", req: protocol.ControlRequest{Pattern: "w1", Matcher: "glob"}},
		{name: "glob dots are literal", req: protocol.ControlRequest{Pattern: "w1@box?example", Matcher: "glob"}, want: true},
		{name: "glob no match", req: protocol.ControlRequest{Pattern: "celery@*", Matcher: "glob"}},
		{name: "pcre matches at the start", req: protocol.ControlRequest{Pattern: `w\d@`, Matcher: "pcre"}, want: true},
		{name: "pcre is anchored at the start only", req: protocol.ControlRequest{Pattern: `box`, Matcher: "pcre"}},
		{name: "pattern without matcher is everyone", req: protocol.ControlRequest{Pattern: "nobody"}, want: true},
		{name: "unknown matcher", req: protocol.ControlRequest{Pattern: "w1*", Matcher: "soundex"}, err: `no matcher installed for "soundex"`},
		{name: "bad regexp", req: protocol.ControlRequest{Pattern: `(`, Matcher: "pcre"}, err: "control pattern"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.req.Method = "ping"
			reply, err := c.Receive(controlRequest(t, tc.req))
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := reply != nil; got != tc.want {
				t.Errorf("answered = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestControlReceive(t *testing.T) {
	t.Parallel()
	w := newTestWorker(t, worker.NewServeMux(), worker.Config{NodeName: "w1@host"})
	c := worker.NewControl(w.server, worker.ControlConfig{})

	reply, err := c.Receive(controlRequest(t, protocol.ControlRequest{Method: "ping", Clock: 41}))
	if err != nil || reply == nil {
		t.Fatalf("ping: %v, %v", reply, err)
	}
	if string(reply.Body) != `{"w1@host": {"ok": "pong"}}` || reply.Ticket != "ticket-1" ||
		reply.To != (protocol.ControlReplyTo{Exchange: protocol.ControlReplyExchange, RoutingKey: "client-oid"}) {
		t.Errorf("reply = %+v (%s)", reply, reply.Body)
	}
	// The clock moves past the sender's (41): forward, adjust, forward.
	if reply.Clock <= 41 || w.server.Clock().Value() != reply.Clock {
		t.Errorf("reply clock %d, worker clock %d; want past 41", reply.Clock, w.server.Clock().Value())
	}

	expired := protocol.ControlRequest{Method: "ping", Expires: time.Now().Add(-time.Second)}
	if reply, err := c.Receive(controlRequest(t, expired)); reply != nil || err != nil {
		t.Errorf("expired request answered: %v, %v", reply, err)
	}

	// A cast (no reply_to) runs and answers nothing.
	cast := protocol.ControlRequest{Method: "revoke", Arguments: map[string]any{"task_id": "cast-id"},
		ReplyTo: &protocol.ControlReplyTo{}}
	h, body := controlRequest(t, cast)
	body = []byte(strings.Replace(string(body), `, "ticket": "", "reply_to": {"exchange": "", "routing_key": ""}`, "", 1))
	if reply, err := c.Receive(h, body); reply != nil || err != nil {
		t.Errorf("cast answered: %v, %v", reply, err)
	}
	if !slices.Contains(w.server.Revoked(), "cast-id") {
		t.Errorf("cast revoke not applied: revoked = %v", w.server.Revoked())
	}

	if _, err := c.Receive(map[string]any{}, []byte(`{"no": "method"}`)); err == nil {
		t.Error("a request without a method is not an error")
	}
}

func TestControlCommands(t *testing.T) {
	t.Parallel()
	mux := worker.NewServeMux()
	mux.HandleFunc("proj.b", func(context.Context, *worker.Task) (any, error) { return nil, nil })
	mux.HandleFunc("proj.a", func(context.Context, *worker.Task) (any, error) { return nil, nil })
	w := newTestWorker(t, mux, worker.Config{NodeName: "w1@host", Queues: []string{"q1", "q2"}, Concurrency: 3})
	pub := &recordingPublisher{}
	events := worker.NewEvents(w.server, pub, worker.EventsConfig{})
	var shutdowns int
	c := worker.NewControl(w.server, worker.ControlConfig{
		Events: events, Shutdown: func() { shutdowns++ },
		Broker: map[string]any{"hostname": "rabbit", "transport": "amqp"},
		Conf:   map[string]any{"broker_url": "amqp://guest:**@rabbit//"},
	})
	for _, tc := range []struct {
		method string
		args   map[string]any
		want   string
	}{
		{"ping", nil, `{"ok": "pong"}`},
		{"registered", nil, `["proj.a", "proj.b"]`},
		{"dump_tasks", nil, `["proj.a", "proj.b"]`},
		{"revoke", map[string]any{"task_id": "id-1"}, `{"ok": "tasks id-1 flagged as revoked"}`},
		{"revoke", map[string]any{"task_id": []any{"id-2", "id-3"}, "terminate": false}, `{"ok": "tasks id-2, id-3 flagged as revoked"}`},
		{"revoke", map[string]any{"task_id": "id-4", "terminate": true, "signal": "SIGKILL"}, `{"ok": "terminate: tasks unknown"}`},
		{"terminate", map[string]any{"task_id": "id-5", "signal": "TERM"}, `{"ok": "terminate: tasks unknown"}`},
		{"revoked", nil, `["id-1", "id-2", "id-3", "id-4", "id-5"]`},
		{"revoke", map[string]any{}, `{"error": "TypeError(\"missing required argument: 'task_id'\")"}`},
		{"revoke", map[string]any{"task_id": "x", "terminate": true, "signal": "SIGWHAT"}, `{"error": "TypeError('Unsupported signal: SIGWHAT')"}`},
		{"no_such_command", nil, `{"error": "KeyError('no_such_command')"}`},
		{"enable_events", nil, `{"ok": "task events enabled"}`},
		{"enable_events", nil, `{"ok": "task events already enabled"}`},
		{"disable_events", nil, `{"ok": "task events disabled"}`},
		{"disable_events", nil, `{"ok": "task events already disabled"}`},
		{"heartbeat", nil, `null`},
		{"active", nil, `[]`},
		{"reserved", nil, `[]`},
		{"scheduled", nil, `[]`},
		{"query_task", map[string]any{"ids": []any{"id-1"}}, `{}`},
		{"hello", map[string]any{"from_node": "w1@host"}, `null`},
		{"conf", nil, `{"broker_url": "amqp://guest:**@rabbit//", "include": [], "task_default_queue": "q1", "task_routes": {},
			"worker_concurrency": 3, "worker_prefetch_multiplier": 4, "worker_queues": ["q1", "q2"], "worker_send_task_events": false}`},
	} {
		wantResult(t, tc.method, handle(t, c, tc.method, tc.args), tc.want)
	}
	if n := len(pub.types()); n != 1 || pub.types()[0] != protocol.EventWorkerHeartbeat {
		t.Errorf("heartbeat command sent %v, want one worker-heartbeat", pub.types())
	}

	if report := handle(t, c, "report", nil).(map[string]any)["ok"].(string); !strings.Contains(report, "node -> w1@host") {
		t.Errorf("report = %q", report)
	}
	queues := handle(t, c, "active_queues", nil).([]any)
	if len(queues) != 2 || queues[1].(map[string]any)["name"] != "q2" || queues[1].(map[string]any)["durable"] != true {
		t.Errorf("active_queues = %v", queues)
	}
	stats := handle(t, c, "stats", nil).(map[string]any)
	wantResult(t, "stats broker", stats["broker"], `{"hostname": "rabbit", "transport": "amqp"}`)
	wantResult(t, "stats pool max-concurrency", stats["pool"].(map[string]any)["max-concurrency"], `3`)
	wantResult(t, "stats prefetch_count", stats["prefetch_count"], `12`)
	for _, k := range []string{"total", "pid", "clock", "uptime", "rusage"} {
		if _, ok := stats[k]; !ok {
			t.Errorf("stats has no %q", k)
		}
	}
	clock := handle(t, c, "clock", nil).(map[string]any)["clock"].(float64)

	// hello: another node's revoked ids are taken, ours are given back
	// with a clock past ours.
	hello := handle(t, c, "hello", map[string]any{"from_node": "w2@host", "revoked": map[string]any{"id-9": 12.5}}).(map[string]any)
	revoked := hello["revoked"].(map[string]any)
	if _, ok := revoked["id-9"]; !ok || len(revoked) != 6 {
		t.Errorf("hello revoked = %v, want id-1..5 and id-9", revoked)
	}
	if hello["clock"].(float64) <= clock {
		t.Errorf("hello clock %v, want past %v", hello["clock"], clock)
	}

	// shutdown stops the worker and, as in Celery, answers nothing.
	if result, reply := c.Handle("shutdown", nil); reply || result != nil || shutdowns != 1 {
		t.Errorf("shutdown: reply %v %v, %d calls", result, reply, shutdowns)
	}
	refused := worker.NewControl(w.server, worker.ControlConfig{})
	wantResult(t, "shutdown without a Shutdown func", handle(t, refused, "shutdown", nil),
		`{"error": "RuntimeError('remote shutdown is not enabled on this worker')"}`)
	wantResult(t, "enable_events without events", handle(t, refused, "enable_events", nil),
		`{"error": "RuntimeError('this worker has no event dispatcher')"}`)
}

// TestControlOnRunningServer inspects, revokes and terminates tasks of a
// Server on the memory broker, and checks what observers see.
func TestControlOnRunningServer(t *testing.T) {
	t.Parallel()
	mux := worker.NewServeMux()
	started := make(chan string, 10)
	mux.HandleFunc("block", func(ctx context.Context, task *worker.Task) (any, error) {
		started <- task.ID()
		<-ctx.Done()
		return nil, context.Cause(ctx)
	})
	mux.HandleFunc("add", func(_ context.Context, task *worker.Task) (any, error) { return int64(len(task.Args())), nil })
	w := newTestWorker(t, mux, worker.Config{Concurrency: 1, NodeName: "w1@host"})
	seen := &observed{}
	w.server.Observe(seen)
	c := worker.NewControl(w.server, worker.ControlConfig{})
	w.run(t)

	blockID := w.send(t, newMsg("block", "arg"))
	if id := <-started; id != blockID {
		t.Fatalf("started %s, want %s", id, blockID)
	}
	queuedID := w.send(t, newMsg("add", int64(1)))
	later := newMsg("add")
	later.ETA = time.Now().Add(time.Hour)
	laterID := w.send(t, later)
	waitUntil(t, "one reserved and one scheduled", func() bool {
		return len(w.server.Reserved()) == 1 && len(w.server.Scheduled()) == 1
	})

	active := handle(t, c, "active", nil).([]any)
	if len(active) != 1 {
		t.Fatalf("active = %v", active)
	}
	info := active[0].(map[string]any)
	wantResult(t, "active request", []any{info["id"], info["name"], info["type"], info["args"], info["kwargs"], info["hostname"], info["acknowledged"], info["delivery_info"]},
		`["`+blockID+`", "block", "block", ["arg"], {}, "w1@host", true, {"exchange": "", "routing_key": "celery", "priority": 0, "redelivered": false}]`)
	if info["time_start"] == nil || info["worker_pid"] == nil {
		t.Errorf("active request without time_start or worker_pid: %v", info)
	}
	reserved := handle(t, c, "reserved", nil).([]any)
	if len(reserved) != 1 || reserved[0].(map[string]any)["id"] != queuedID || reserved[0].(map[string]any)["acknowledged"] != false ||
		reserved[0].(map[string]any)["time_start"] != nil {
		t.Errorf("reserved = %v, want %s not started", reserved, queuedID)
	}
	scheduled := handle(t, c, "scheduled", nil).([]any)
	if len(scheduled) != 1 || scheduled[0].(map[string]any)["request"].(map[string]any)["id"] != laterID ||
		!strings.HasPrefix(scheduled[0].(map[string]any)["eta"].(string), later.ETA.UTC().Format("2006-01-02T15:04:05")) {
		t.Errorf("scheduled = %v, want %s at %v", scheduled, laterID, later.ETA)
	}
	query := handle(t, c, "query_task", map[string]any{"ids": []any{blockID, queuedID, "nope"}}).(map[string]any)
	if len(query) != 2 || query[blockID].([]any)[0] != "active" || query[queuedID].([]any)[0] != "reserved" {
		t.Errorf("query_task = %v", query)
	}
	wantResult(t, "stats total", handle(t, c, "stats", nil).(map[string]any)["total"], `{"block": 1}`)

	// The queued task is revoked while it waits for the slot, the running
	// one terminated: both end REVOKED, the queued one never runs.
	wantResult(t, "revoke queued", handle(t, c, "revoke", map[string]any{"task_id": queuedID}),
		`{"ok": "tasks `+queuedID+` flagged as revoked"}`)
	wantResult(t, "terminate running", handle(t, c, "revoke", map[string]any{"task_id": blockID, "terminate": true, "signal": "SIGKILL"}),
		`{"ok": "terminate: `+blockID+`"}`)
	assertJSONEqual(t, "terminated result", w.result(t, blockID).Result, excDict("celery.exceptions", "TaskRevokedError", "terminated"))
	assertJSONEqual(t, "revoked result", w.result(t, queuedID).Result, excDict("celery.exceptions", "TaskRevokedError", "revoked"))

	// A task revoked before it arrives is discarded on arrival.
	earlyID := worker.NewTaskID()
	w.server.Revoke([]string{earlyID}, false, 0)
	early := newMsg("add")
	early.ID = earlyID
	w.send(t, early)
	assertJSONEqual(t, "revoked on arrival", w.result(t, earlyID).Result, excDict("celery.exceptions", "TaskRevokedError", "revoked"))

	for _, tc := range []struct {
		id   string
		want []string
	}{
		{blockID, []string{"task-received", "task-started", "task-revoked terminated signum=9"}},
		{queuedID, []string{"task-received", "task-revoked"}},
		{earlyID, []string{"task-revoked"}},
	} {
		// The state is stored before the observers hear of it: wait.
		waitUntil(t, "the observed events of "+tc.id, func() bool { return slices.Equal(seen.of(tc.id), tc.want) })
	}
	for _, id := range []string{queuedID, earlyID} {
		waitUntil(t, "the ack of revoked "+id, func() bool { return w.events.position(id, "ack") >= 0 })
	}
	if w.events.position(queuedID, "run") >= 0 || w.events.position(earlyID, "run") >= 0 {
		t.Error("a revoked task ran")
	}
	waitUntil(t, "stats with the ETA task held and one processed", func() bool {
		st := w.server.Stats()
		return st.Active == 0 && st.Held == 1 && st.Processed == 1
	})
}

// observed records the TaskEvents a Server reports.
type observed struct {
	mu     sync.Mutex
	events map[string][]string
}

func (o *observed) ObserveTask(e worker.TaskEvent) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.events == nil {
		o.events = map[string][]string{}
	}
	what := e.Type
	if e.Terminated {
		what += " terminated signum=" + itoa(e.Signum)
	}
	if e.Expired {
		what += " expired"
	}
	o.events[e.Msg.ID] = append(o.events[e.Msg.ID], what)
}

func (o *observed) of(id string) []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return slices.Clone(o.events[id])
}

func itoa(n int) string {
	b, _ := json.Marshal(n)
	return string(b)
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// recordingPublisher records the events an Events dispatcher publishes.
type recordingPublisher struct {
	mu     sync.Mutex
	events []protocol.Event
	fail   error
	failed int // publishes refused while fail was set
}

func (p *recordingPublisher) PublishEvent(_ context.Context, e protocol.Event) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.fail != nil {
		p.failed++
		return p.fail
	}
	p.events = append(p.events, e)
	return nil
}

func (p *recordingPublisher) all() []protocol.Event {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.events)
}

func (p *recordingPublisher) refused() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.failed
}

func (p *recordingPublisher) types() []string {
	var out []string
	for _, e := range p.all() {
		out = append(out, e.Type)
	}
	return out
}
