package worker_test

// FuzzReceive drives the whole receive path with arbitrary envelopes:
// headers, properties and body -> decode -> request -> settle, on the
// memory broker and backend. The seed corpus is in
// testdata/fuzz/FuzzReceive (it runs with every go test); rewrite its
// named seeds with
//
//	go test -run TestReceiveCorpus -update-corpus ./worker

import (
	"context"
	"encoding/binary"
	"flag"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/vhg/vhg-worker/protocol"
	"github.com/vhg/vhg-worker/worker"
	"github.com/vhg/vhg-worker/worker/memory"
	"github.com/vhg/vhg-worker/worker/metrics"
)

var updateCorpus = flag.Bool("update-corpus", false, "rewrite the named seeds of testdata/fuzz/FuzzReceive")

// FuzzReceive checks, for any envelope: no panic escapes the worker, every
// delivery the worker received is settled exactly once (counting the
// messages a stop gives back), and the worker still serves a valid task
// afterwards. The handlers include one that panics, and observers that
// panic on tasks t.boom-receive and t.boom-start, so the last net is in
// the path.
func FuzzReceive(f *testing.F) {
	f.Fuzz(func(t *testing.T, headers, body []byte, contentType, contentEncoding, correlationID, replyTo string, priority uint8) {
		env := protocol.Envelope{
			ContentType: contentType, ContentEncoding: contentEncoding,
			Headers: readTable(headers), Body: body,
			CorrelationID: correlationID, ReplyTo: replyTo, Priority: priority,
		}
		receiveOne(t, env)
	})
}

// receiveOne runs a fresh worker, sends env and then a valid task, and
// checks the invariants.
func receiveOne(t *testing.T, env protocol.Envelope) {
	broker := &countingBroker{Broker: memory.NewBroker()}
	backend := memory.NewBackend()
	mux := worker.NewServeMux()
	mux.HandleFunc("t.ok", func(_ context.Context, task *worker.Task) (any, error) { return task.Args(), nil })
	mux.HandleFunc("t.late", func(_ context.Context, task *worker.Task) (any, error) { return task.Args(), nil }, worker.AcksLate())
	mux.HandleFunc("t.fail", failHandler)
	mux.HandleFunc("t.panic", func(context.Context, *worker.Task) (any, error) { panic("handler boom") })
	mux.HandleFunc("t.boom-receive", okHandler)
	mux.HandleFunc("t.boom-start", okHandler, worker.AcksLate())
	srv := worker.NewServer(worker.Config{Concurrency: 2, NodeName: "fuzz@host", ShutdownTimeout: 5 * time.Second}, broker, backend, mux, discardLogger())
	collector, err := metrics.New(prometheus.NewRegistry(), srv, metrics.Config{})
	if err != nil {
		t.Fatal(err)
	}
	srv.Observe(collector, worker.ObserverFunc(func(e worker.TaskEvent) {
		switch {
		case e.Type == protocol.EventTaskReceived && e.Msg.Task == "t.boom-receive",
			e.Type == protocol.EventTaskStarted && e.Msg.Task == "t.boom-start":
			panic("observer boom")
		}
	}))
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan error, 1)
	go func() { stopped <- srv.Run(ctx) }()
	stop := func() {
		cancel()
		select {
		case err := <-stopped:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(waitTimeout):
			srv.StopNow()
			t.Fatalf("Run did not return after a soft stop; envelope %s", describe(env))
		}
		broker.wait()
	}

	if err := broker.Broker.Publish(context.Background(), worker.QueueRoute("celery"), env); err != nil {
		t.Fatal(err)
	}
	good := newMsg("t.ok", int64(1))
	goodEnv, err := protocol.Encode(good)
	if err != nil {
		t.Fatal(err)
	}
	if err := broker.Broker.Publish(context.Background(), worker.QueueRoute("celery"), goodEnv); err != nil {
		t.Fatal(err)
	}
	wctx, wcancel := context.WithTimeout(context.Background(), waitTimeout)
	meta, err := backend.Wait(wctx, good.ID)
	wcancel()
	if err != nil || meta.Status != protocol.StateSuccess {
		stop()
		t.Fatalf("a valid task after the envelope: %s %v (%v); envelope %s", meta.Status, meta.Result, err, describe(env))
	}
	stop()
	for _, d := range broker.received() {
		if n := d.settled.Load(); n != 1 {
			t.Errorf("delivery %d (correlation id %q) settled %d times, want once; envelope %s", d.Info().DeliveryTag, d.Envelope().CorrelationID, n, describe(env))
		}
	}
}

func describe(env protocol.Envelope) string {
	body := env.Body
	if len(body) > 200 {
		body = body[:200]
	}
	return fmt.Sprintf("{content type %q, encoding %q, correlation id %q, reply to %q, headers %.300v, body %q}",
		env.ContentType, env.ContentEncoding, env.CorrelationID, env.ReplyTo, env.Headers, body)
}

// countingBroker is the memory broker with deliveries that count how many
// times they are settled.
type countingBroker struct {
	*memory.Broker
	mu         sync.Mutex
	deliveries []*countingDelivery
	forwarding sync.WaitGroup
}

func (b *countingBroker) Consume(ctx context.Context, queues []string, prefetch int) (<-chan worker.Delivery, error) {
	in, err := b.Broker.Consume(ctx, queues, prefetch)
	if err != nil {
		return nil, err
	}
	out := make(chan worker.Delivery)
	b.forwarding.Add(1)
	go func() {
		defer b.forwarding.Done()
		defer close(out)
		for d := range in {
			cd := &countingDelivery{Delivery: d}
			b.mu.Lock()
			b.deliveries = append(b.deliveries, cd)
			b.mu.Unlock()
			select {
			case out <- cd:
			case <-ctx.Done():
				_ = cd.Reject(true) // the worker stopped reading: give it back
			}
		}
	}()
	return out, nil
}

// wait returns once no delivery is being forwarded any more.
func (b *countingBroker) wait() { b.forwarding.Wait() }

func (b *countingBroker) received() []*countingDelivery {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]*countingDelivery(nil), b.deliveries...)
}

type countingDelivery struct {
	worker.Delivery
	settled atomic.Int32
}

func (d *countingDelivery) Ack() error {
	d.settled.Add(1)
	return d.Delivery.Ack()
}

func (d *countingDelivery) Reject(requeue bool) error {
	d.settled.Add(1)
	return d.Delivery.Reject(requeue)
}

// The header table encoding of the fuzz input: a count byte, then that
// many (key, value) pairs; a key is a length byte and raw bytes (any
// bytes: AMQP short strings are not checked); a value is a type byte and
// its data. Lengths are big-endian; data runs short at the end of input.
// It produces every type amqp091-go returns for a field table.
const (
	tNull     = 'n'
	tString   = 's' // uint16 length, raw bytes (not necessarily UTF-8)
	tBytes    = 'x' // uint16 length, bytes
	tInt64    = 'l' // 8 bytes
	tInt32    = 'I' // 4 bytes
	tInt8     = 'b' // 1 byte
	tFloat64  = 'd' // 8 bytes, IEEE 754 bits
	tFloat32  = 'f' // 4 bytes
	tBool     = 't' // 1 byte
	tTime     = 'T' // 8 bytes, Unix seconds
	tArray    = 'A' // count byte, values
	tTable    = 'F' // count byte, pairs
	tRepeated = 'r' // uint16 n, 1 byte c: c repeated n*64 times (huge values)
)

// maxTableDepth bounds the nesting of generated values.
const maxTableDepth = 8

func readTable(data []byte) map[string]any {
	r := &tableReader{data: data, budget: maxRepeated}
	h, _ := r.table(0).(map[string]any)
	return h
}

// maxRepeated bounds the bytes tRepeated values add up to in one table:
// well over the decoder's MaxHeadersSize, well under what would make the
// fuzzer spend its time allocating.
const maxRepeated = 4 << 20

type tableReader struct {
	data   []byte
	budget int // bytes tRepeated may still produce
}

func (r *tableReader) next(n int) []byte {
	n = min(n, len(r.data))
	b := r.data[:n]
	r.data = r.data[n:]
	return b
}

func (r *tableReader) uint(n int) uint64 {
	var buf [8]byte
	copy(buf[8-n:], r.next(n))
	return binary.BigEndian.Uint64(buf[:])
}

func (r *tableReader) table(depth int) any {
	n := int(r.uint(1))
	h := make(map[string]any, n)
	for i := 0; i < n && len(r.data) > 0; i++ {
		key := string(r.next(int(r.uint(1))))
		h[key] = r.value(depth + 1)
	}
	return h
}

func (r *tableReader) value(depth int) any {
	if len(r.data) == 0 {
		return nil
	}
	kind := r.next(1)[0]
	if depth > maxTableDepth && (kind == tArray || kind == tTable) {
		return nil
	}
	switch kind {
	case tString:
		return string(r.next(int(r.uint(2))))
	case tBytes:
		return append([]byte{}, r.next(int(r.uint(2)))...)
	case tInt64:
		return int64(r.uint(8))
	case tInt32:
		return int32(r.uint(4))
	case tInt8:
		return int8(r.uint(1))
	case tFloat64:
		return math.Float64frombits(r.uint(8))
	case tFloat32:
		return math.Float32frombits(uint32(r.uint(4)))
	case tBool:
		return r.uint(1) != 0
	case tTime:
		return time.Unix(int64(r.uint(8)), 0)
	case tArray:
		n := int(r.uint(1))
		a := make([]any, 0, n)
		for i := 0; i < n && len(r.data) > 0; i++ {
			a = append(a, r.value(depth+1))
		}
		return a
	case tTable:
		return r.table(depth)
	case tRepeated:
		n := min(int(r.uint(2))*64, r.budget)
		c := r.next(1)
		if len(c) == 0 {
			return ""
		}
		r.budget -= n
		return strings.Repeat(string(c), n)
	}
	return nil
}

// tableWriter writes the encoding readTable reads, for the seeds.
type tableWriter struct{ b []byte }

func (w *tableWriter) pair(key string, v any) {
	w.b = append(w.b, byte(len(key)))
	w.b = append(w.b, key...)
	w.value(v)
}

// repeated is a value written as tRepeated: c repeated n*64 times.
type repeated struct {
	n int
	c byte
}

func (w *tableWriter) value(v any) {
	switch v := v.(type) {
	case nil:
		w.b = append(w.b, tNull)
	case string:
		w.b = append(w.b, tString)
		w.b = binary.BigEndian.AppendUint16(w.b, uint16(len(v)))
		w.b = append(w.b, v...)
	case []byte:
		w.b = append(w.b, tBytes)
		w.b = binary.BigEndian.AppendUint16(w.b, uint16(len(v)))
		w.b = append(w.b, v...)
	case int64:
		w.b = append(w.b, tInt64)
		w.b = binary.BigEndian.AppendUint64(w.b, uint64(v))
	case int32:
		w.b = append(w.b, tInt32)
		w.b = binary.BigEndian.AppendUint32(w.b, uint32(v))
	case int8:
		w.b = append(w.b, tInt8, byte(v))
	case float64:
		w.b = append(w.b, tFloat64)
		w.b = binary.BigEndian.AppendUint64(w.b, math.Float64bits(v))
	case float32:
		w.b = append(w.b, tFloat32)
		w.b = binary.BigEndian.AppendUint32(w.b, math.Float32bits(v))
	case bool:
		b := byte(0)
		if v {
			b = 1
		}
		w.b = append(w.b, tBool, b)
	case time.Time:
		w.b = append(w.b, tTime)
		w.b = binary.BigEndian.AppendUint64(w.b, uint64(v.Unix()))
	case []any:
		w.b = append(w.b, tArray, byte(len(v)))
		for _, x := range v {
			w.value(x)
		}
	case table:
		w.b = append(w.b, tTable)
		w.table(v)
	case repeated:
		w.b = append(w.b, tRepeated)
		w.b = binary.BigEndian.AppendUint16(w.b, uint16(v.n))
		w.b = append(w.b, v.c)
	default:
		panic(fmt.Sprintf("tableWriter: %T", v))
	}
}

// table is an ordered header table for the seeds (map order would make
// the seed files change at every rewrite).
type table []pair

type pair struct {
	key   string
	value any
}

func (w *tableWriter) table(t table) {
	w.b = append(w.b, byte(len(t)))
	for _, p := range t {
		w.pair(p.key, p.value)
	}
}

func writeTable(t table) []byte {
	w := &tableWriter{}
	w.table(t)
	return w.b
}

// receiveSeed is one named seed of the corpus.
type receiveSeed struct {
	name                                                 string
	headers                                              table
	body                                                 string
	contentType, contentEncoding, correlationID, replyTo string
	priority                                             uint8
}

// v2Table returns protocol v2 headers for task with id, then extra pairs
// (replacing a header of the same name).
func v2Table(task, id any, extra ...pair) table {
	t := table{{"lang", "py"}, {"task", task}, {"id", id}, {"root_id", id}, {"parent_id", nil}, {"group", nil},
		{"retries", int64(0)}, {"timelimit", []any{nil, nil}}, {"eta", nil}, {"expires", nil}, {"argsrepr", "(1, 2)"}, {"kwargsrepr", "{}"}}
	for _, e := range extra {
		replaced := false
		for i := range t {
			if t[i].key == e.key {
				t[i].value, replaced = e.value, true
			}
		}
		if !replaced {
			t = append(t, e)
		}
	}
	return t
}

const seedID = "3f2c1a5e-8b7d-4c6e-9a1f-0d2e3c4b5a69"
const seedBody = `[[1, 2], {}, {"callbacks": null, "errbacks": null, "chain": null, "chord": null}]`

func receiveSeeds() []receiveSeed {
	json := "application/json"
	seed := func(name string, h table) receiveSeed {
		return receiveSeed{name: name, headers: h, body: seedBody, contentType: json, contentEncoding: "utf-8", correlationID: seedID}
	}
	seeds := []receiveSeed{
		seed("valid", v2Table("t.ok", seedID)),
		seed("valid-acks-late", v2Table("t.late", seedID)),
		seed("task-not-utf8", v2Table("no.such\xff\xfe", seedID)),
		seed("id-not-utf8", v2Table("t.ok", "3f2c\xff\xfe")),
		seed("task-as-bytes", v2Table([]byte("t.ok"), seedID)),
		seed("id-as-int", v2Table("t.ok", int32(7))),
		seed("task-as-table", v2Table(table{{"a", "b"}}, seedID)),
		seed("retries-as-string", v2Table("t.ok", seedID, pair{"retries", "many"})),
		seed("eta-as-bool", v2Table("t.ok", seedID, pair{"eta", true})),
		seed("eta-as-time", v2Table("t.ok", seedID, pair{"eta", time.Unix(1700000000, 0)})),
		seed("expires-past", v2Table("t.ok", seedID, pair{"expires", "2001-01-01T00:00:00"})),
		seed("timelimit-nan", v2Table("t.ok", seedID, pair{"timelimit", []any{math.NaN(), nil}})),
		seed("group-index-huge", v2Table("t.ok", seedID, pair{"group_index", int64(math.MaxInt64)})),
		seed("task-huge", v2Table(repeated{n: 1024, c: 't'}, seedID)),
		seed("id-huge", v2Table("t.ok", repeated{n: 1024, c: 'i'})),
		seed("argsrepr-huge", v2Table("t.ok", seedID, pair{"argsrepr", repeated{n: 2048, c: 'a'}})),
		seed("custom-header-not-utf8", v2Table("t.ok", seedID, pair{"x-trace", []any{"ok", "\xc3"}})),
		seed("header-name-not-utf8", v2Table("t.ok", seedID, pair{"x-\xff", "v"})),
		seed("deep-table", v2Table("t.ok", seedID, pair{"stamps", table{{"a", table{{"b", table{{"c", []any{table{{"d", "\xfe"}}}}}}}}}})),
		seed("unknown-task", v2Table("no.such.task", seedID)),
		seed("handler-panics", v2Table("t.panic", seedID)),
		seed("handler-fails", v2Table("t.fail", seedID)),
		seed("observer-panics-on-receive", v2Table("t.boom-receive", seedID)),
		seed("observer-panics-on-start", v2Table("t.boom-start", seedID)),
		seed("no-headers", nil),
		{name: "correlation-id-not-utf8", headers: v2Table("t.ok", seedID), body: seedBody, contentType: json, correlationID: "\xff" + seedID},
		{name: "reply-to-huge", headers: v2Table("t.ok", seedID), body: seedBody, contentType: json, correlationID: seedID, replyTo: strings.Repeat("r", 300)},
		{name: "pickle", headers: v2Table("t.ok", seedID), body: "\x80\x04K\x01.", contentType: "application/x-python-serialize", contentEncoding: "binary", correlationID: seedID},
		{name: "unknown-encoding", headers: v2Table("t.ok", seedID), body: seedBody, contentType: json, contentEncoding: "utf-32", correlationID: seedID},
		{name: "body-not-utf8", headers: v2Table("t.ok", seedID), body: "[[\"\xff\xfe\"], {}, {}]", contentType: json, correlationID: seedID},
		{name: "v1-body", body: `{"task": "t.ok", "id": "` + seedID + `", "args": [1], "kwargs": {}}`, contentType: json, correlationID: seedID},
		{name: "chain-of-valid-steps", headers: v2Table("t.ok", seedID), contentType: json, correlationID: seedID,
			body: `[[1], {}, {"chain": [{"task": "t.ok", "args": [], "kwargs": {}, "options": {"task_id": "c2"}, "subtask_type": null, "immutable": false}], "callbacks": [{"task": "no.such\ud800", "args": [], "kwargs": {}, "options": {}}]}]`},
	}
	return seeds
}

// TestReceiveCorpus checks that every named seed is in the corpus, as
// written by this test with -update-corpus.
func TestReceiveCorpus(t *testing.T) {
	dir := filepath.Join("testdata", "fuzz", "FuzzReceive")
	for _, s := range receiveSeeds() {
		var b strings.Builder
		b.WriteString("go test fuzz v1\n")
		fmt.Fprintf(&b, "[]byte(%s)\n", strconv.Quote(string(writeTable(s.headers))))
		fmt.Fprintf(&b, "[]byte(%s)\n", strconv.Quote(s.body))
		for _, v := range []string{s.contentType, s.contentEncoding, s.correlationID, s.replyTo} {
			fmt.Fprintf(&b, "string(%s)\n", strconv.Quote(v))
		}
		fmt.Fprintf(&b, "byte(%s)\n", strconv.QuoteRune(rune(s.priority)))
		path := filepath.Join(dir, s.name)
		if *updateCorpus {
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		got, err := os.ReadFile(path)
		if err != nil || string(got) != b.String() {
			t.Errorf("seed %s is missing or stale (%v): run go test -run TestReceiveCorpus -update-corpus ./worker", s.name, err)
		}
	}
}
