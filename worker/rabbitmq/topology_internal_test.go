package rabbitmq

import (
	"encoding/json"
	"os"
	"reflect"
	"testing"

	amqp "github.com/rabbitmq/amqp091-go"
)

// recorder records declarations in the form of the Celery 5.6.3 capture
// testdata/native_delayed_delivery_topology.json (recorded from kombu
// 5.6.2 without a broker), integer arguments as float64 as JSON decodes
// them.
type recorder struct{ ops []map[string]any }

func args(t amqp.Table) any {
	if t == nil {
		return nil
	}
	m := map[string]any{}
	for k, v := range t {
		switch n := v.(type) {
		case int64:
			m[k] = float64(n)
		case int32:
			m[k] = float64(n)
		default:
			m[k] = v
		}
	}
	return m
}

func (r *recorder) ExchangeDeclare(name, kind string, durable, autoDelete, internal, noWait bool, a amqp.Table) error {
	r.ops = append(r.ops, map[string]any{"op": "exchange.declare", "exchange": name, "type": kind, "durable": durable,
		"auto_delete": autoDelete, "arguments": args(a), "passive": false})
	return nil
}

func (r *recorder) QueueDeclare(name string, durable, autoDelete, exclusive, noWait bool, a amqp.Table) (amqp.Queue, error) {
	r.ops = append(r.ops, map[string]any{"op": "queue.declare", "queue": name, "durable": durable, "exclusive": exclusive,
		"auto_delete": autoDelete, "arguments": args(a), "passive": false})
	return amqp.Queue{Name: name}, nil
}

func (r *recorder) QueueBind(name, key, exchange string, noWait bool, a amqp.Table) error {
	r.ops = append(r.ops, map[string]any{"op": "queue.bind", "queue": name, "exchange": exchange, "routing_key": key, "arguments": args(a)})
	return nil
}

func (r *recorder) ExchangeBind(destination, key, source string, noWait bool, a amqp.Table) error {
	r.ops = append(r.ops, map[string]any{"op": "exchange.bind", "destination": destination, "source": source, "routing_key": key, "arguments": args(a)})
	return nil
}

// TestDelayedDeliveryTopologyMatchesCelery compares, operation by
// operation, what the worker declares with what Celery 5.6.3 declares:
// the levels (quorum and classic variants) and the bindings of a task
// queue "celery" on a topic exchange.
func TestDelayedDeliveryTopologyMatchesCelery(t *testing.T) {
	t.Parallel()
	raw, err := os.ReadFile("testdata/native_delayed_delivery_topology.json")
	if err != nil {
		t.Fatal(err)
	}
	var capture map[string][]map[string]any
	var all map[string]json.RawMessage
	if err := json.Unmarshal(raw, &all); err != nil {
		t.Fatal(err)
	}
	capture = map[string][]map[string]any{}
	for _, k := range []string{"declare_quorum", "declare_classic", "bind_app_queue_topic_then_direct"} {
		var ops []map[string]any
		if err := json.Unmarshal(all[k], &ops); err != nil {
			t.Fatalf("%s: %v", k, err)
		}
		capture[k] = ops
	}
	for _, tt := range []struct{ queueType, want string }{
		{QueueQuorum, "declare_quorum"},
		{QueueClassic, "declare_classic"},
	} {
		b := &Broker{cfg: Config{DelayedDeliveryQueueType: tt.queueType}}
		var r recorder
		if err := b.declareDelayedDelivery(&r); err != nil {
			t.Fatal(err)
		}
		compareOps(t, tt.want, r.ops, capture[tt.want])
	}
	// Celery binds a topic exchange's queue and skips a direct one.
	b := &Broker{cfg: Config{ExchangeType: ExchangeTopic}}
	var r recorder
	if err := b.bindDelayed(&r, "celery"); err != nil {
		t.Fatal(err)
	}
	compareOps(t, "bind_app_queue_topic_then_direct", r.ops, capture["bind_app_queue_topic_then_direct"])
}

func compareOps(t *testing.T, what string, got, want []map[string]any) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("%s: %d operations, want %d", what, len(got), len(want))
	}
	for i := range min(len(got), len(want)) {
		// Round-trip through JSON so both sides hold the same types.
		g, _ := json.Marshal(got[i])
		var gm map[string]any
		json.Unmarshal(g, &gm)
		if !reflect.DeepEqual(gm, want[i]) {
			t.Errorf("%s: operation %d = %s, want %v", what, i, g, want[i])
		}
	}
}

// TestTaskQueueDeclaration: a task queue as Celery 5.6 declares it (the
// declare entries of the captures default_queue_type_quorum_plain and
// quorum_topic_no_eta): durable exchange of the queue's name and the
// exchange type, durable queue with x-queue-type for quorum (and the
// deployment's x-delivery-limit), bound with the queue name.
func TestTaskQueueDeclaration(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		cfg       Config
		queueArgs any
	}{
		{Config{QueueType: QueueClassic, ExchangeType: ExchangeDirect}, nil},
		{Config{QueueType: QueueQuorum, ExchangeType: ExchangeDirect}, map[string]any{"x-queue-type": "quorum"}},
		{Config{QueueType: QueueQuorum, ExchangeType: ExchangeTopic}, map[string]any{"x-queue-type": "quorum"}},
		{Config{QueueType: QueueQuorum, ExchangeType: ExchangeTopic, DeliveryLimit: 7}, map[string]any{"x-queue-type": "quorum", "x-delivery-limit": float64(7)}},
	} {
		b := &Broker{cfg: tt.cfg}
		var r recorder
		if err := b.declareTaskQueue(&r, "video", false); err != nil {
			t.Fatal(err)
		}
		want := []map[string]any{
			{"op": "exchange.declare", "exchange": "video", "type": tt.cfg.ExchangeType, "durable": true, "auto_delete": false, "arguments": nil, "passive": false},
			{"op": "queue.declare", "queue": "video", "durable": true, "exclusive": false, "auto_delete": false, "arguments": tt.queueArgs, "passive": false},
			{"op": "queue.bind", "queue": "video", "exchange": "video", "routing_key": "video", "arguments": nil},
		}
		if !reflect.DeepEqual(r.ops, want) {
			t.Errorf("%+v:\n got %v\nwant %v", tt.cfg, r.ops, want)
		}
	}
	// A direct exchange gets this worker's own exact binding.
	b := &Broker{cfg: Config{QueueType: QueueClassic, ExchangeType: ExchangeDirect}}
	var r recorder
	if err := b.bindDelayed(&r, "video"); err != nil {
		t.Fatal(err)
	}
	want := []map[string]any{{"op": "queue.bind", "queue": "video", "exchange": DelayedDeliveryExchange,
		"routing_key": "*.*.*.*.*.*.*.*.*.*.*.*.*.*.*.*.*.*.*.*.*.*.*.*.*.*.*.*.video", "arguments": nil}}
	if !reflect.DeepEqual(r.ops, want) {
		t.Errorf("direct exchange binding:\n got %v\nwant %v", r.ops, want)
	}
}
