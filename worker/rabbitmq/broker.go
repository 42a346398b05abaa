// Package rabbitmq is the RabbitMQ (AMQP 0-9-1) adapter of the worker: a
// worker.Broker that declares and consumes queues as Celery does, and the two
// result backends that live on the broker itself, rpc:// and the legacy
// amqp:// (one queue per task on the celeryresults exchange).
package rabbitmq

import (
	"context"
	"fmt"
	"net/url"
	"sync"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/sirupsen/logrus"
	"github.com/vhg/vhg-worker/protocol"
	"github.com/vhg/vhg-worker/worker"
)

// Config configures a connection. Every zero value has the meaning given.
type Config struct {
	// URL is the broker URL; empty means amqp://guest:guest@localhost:5672//.
	URL string
	// Heartbeat is the AMQP heartbeat interval; zero means 60 s.
	Heartbeat time.Duration
	// ConnectionName is shown in the RabbitMQ management UI; empty means
	// "vhg-worker".
	ConnectionName string
	// Log receives adapter events; nil discards them.
	Log logrus.FieldLogger
}

// DefaultURL is Celery's default broker URL.
const DefaultURL = "amqp://guest:guest@localhost:5672//"

// Broker is a connection to RabbitMQ used as a Celery broker.
type Broker struct {
	conn      *amqp.Connection
	log       logrus.FieldLogger
	url       string
	heartbeat time.Duration

	pubMu    sync.Mutex
	pubCh    *amqp.Channel // publisher confirms on
	declared map[string]bool

	consumeMu sync.Mutex
	consumeCh []*amqp.Channel

	eventMu sync.Mutex
	eventCh *amqp.Channel // events: no confirms, opened on first use
}

var _ worker.Broker = (*Broker)(nil)

// Dial connects to RabbitMQ.
func Dial(cfg Config) (*Broker, error) {
	if cfg.URL == "" {
		cfg.URL = DefaultURL
	}
	if cfg.Heartbeat == 0 {
		cfg.Heartbeat = 60 * time.Second
	}
	if cfg.ConnectionName == "" {
		cfg.ConnectionName = "vhg-worker"
	}
	log := cfg.Log
	if log == nil {
		l := logrus.New()
		l.Out = nopWriter{}
		log = l
	}
	props := amqp.NewConnectionProperties()
	props.SetClientConnectionName(cfg.ConnectionName)
	conn, err := amqp.DialConfig(amqpURL(cfg.URL), amqp.Config{Heartbeat: cfg.Heartbeat, Properties: props, Locale: "en_US"})
	if err != nil {
		return nil, fmt.Errorf("rabbitmq: connect to %s: %w", Redact(cfg.URL), err)
	}
	ch, err := conn.Channel()
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("rabbitmq: open channel: %w", err)
	}
	if err := ch.Confirm(false); err != nil {
		conn.Close()
		return nil, fmt.Errorf("rabbitmq: enable publisher confirms: %w", err)
	}
	return &Broker{conn: conn, log: log, url: cfg.URL, heartbeat: cfg.Heartbeat, pubCh: ch, declared: make(map[string]bool)}, nil
}

// amqpURL turns Celery's URL forms into what amqp091 parses: the vhost "//"
// means "/", and the pyamqp:// scheme is amqp://.
func amqpURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return raw
	}
	switch u.Scheme {
	case "pyamqp", "librabbitmq":
		u.Scheme = "amqp"
	}
	if u.Path == "//" {
		u.Path = "/"
		u.RawPath = "/%2F"
	}
	return u.String()
}

// Redact hides the password of a URL for logs.
func Redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "<unparsable URL>"
	}
	return u.Redacted()
}

// Close closes the connection; unacknowledged deliveries are requeued by the
// broker.
func (b *Broker) Close() error { return b.conn.Close() }

// Connected reports whether the connection is open.
func (b *Broker) Connected() bool { return !b.conn.IsClosed() }

// Info describes the connection as Celery's `inspect stats` reports it
// ("broker"), without the password.
func (b *Broker) Info() map[string]any {
	info := map[string]any{
		"hostname": "localhost", "userid": "guest", "virtual_host": "/", "port": 5672,
		"insist": false, "ssl": false, "transport": "amqp", "connect_timeout": 4,
		"transport_options": map[string]any{}, "login_method": "PLAIN", "uri_prefix": nil,
		"heartbeat": b.heartbeat.Seconds(), "failover_strategy": "round-robin", "alternates": []any{},
	}
	u, err := amqp.ParseURI(amqpURL(b.url))
	if err != nil {
		return info
	}
	info["hostname"], info["port"], info["userid"], info["virtual_host"] = u.Host, u.Port, u.Username, u.Vhost
	if u.Scheme == "amqps" {
		info["ssl"] = true
	}
	return info
}

// NotifyClose returns a channel that receives the error closing the
// connection (nil after Close).
func (b *Broker) NotifyClose() <-chan *amqp.Error {
	return b.conn.NotifyClose(make(chan *amqp.Error, 1))
}

// declareTaskQueue declares a queue as Celery does by default: a durable
// queue bound to a durable direct exchange of the same name with the queue
// name as routing key.
func declareTaskQueue(ch *amqp.Channel, name string) error {
	if err := ch.ExchangeDeclare(name, amqp.ExchangeDirect, true, false, false, false, nil); err != nil {
		return fmt.Errorf("rabbitmq: declare exchange %q: %w", name, err)
	}
	if _, err := ch.QueueDeclare(name, true, false, false, false, nil); err != nil {
		return fmt.Errorf("rabbitmq: declare queue %q: %w", name, err)
	}
	if err := ch.QueueBind(name, name, name, false, nil); err != nil {
		return fmt.Errorf("rabbitmq: bind queue %q: %w", name, err)
	}
	return nil
}

// Consume implements worker.Broker: one channel with QoS prefetch (global,
// as Celery sets it on classic queues) consuming every queue.
func (b *Broker) Consume(ctx context.Context, queues []string, prefetch int) (<-chan worker.Delivery, error) {
	ch, err := b.conn.Channel()
	if err != nil {
		return nil, fmt.Errorf("rabbitmq: open channel: %w", err)
	}
	for _, q := range queues {
		if err := declareTaskQueue(ch, q); err != nil {
			ch.Close()
			return nil, err
		}
	}
	if err := ch.Qos(prefetch, 0, true); err != nil {
		ch.Close()
		return nil, fmt.Errorf("rabbitmq: qos %d: %w", prefetch, err)
	}
	out := make(chan worker.Delivery)
	var wg sync.WaitGroup
	for _, q := range queues {
		msgs, err := ch.ConsumeWithContext(ctx, q, "", false, false, false, false, nil)
		if err != nil {
			ch.Close()
			return nil, fmt.Errorf("rabbitmq: consume %q: %w", q, err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				m, ok := <-msgs
				if !ok {
					return
				}
				select {
				case out <- &delivery{d: m}:
				case <-ctx.Done():
					// The consumer is cancelled; give back what arrived meanwhile.
					if err := m.Reject(true); err != nil {
						b.log.WithError(err).Warn("requeue after cancel failed")
					}
				}
			}
		}()
	}
	go func() {
		wg.Wait()
		close(out)
	}()
	// The channel stays open after the consumers stop so that running tasks
	// can still acknowledge their messages; Close releases it.
	b.consumeMu.Lock()
	b.consumeCh = append(b.consumeCh, ch)
	b.consumeMu.Unlock()
	return out, nil
}

// Publish implements worker.Broker. A message routed through the default
// exchange declares its queue first (once per connection), as a Celery
// client does, so that it is never dropped for want of a queue. It waits
// for the broker's confirm.
func (b *Broker) Publish(ctx context.Context, to worker.Route, env protocol.Envelope) error {
	b.pubMu.Lock()
	defer b.pubMu.Unlock()
	if to.Exchange == "" && to.RoutingKey != "" && !b.declared[to.RoutingKey] {
		if err := declareTaskQueue(b.pubCh, to.RoutingKey); err != nil {
			return err
		}
		b.declared[to.RoutingKey] = true
	}
	return b.publishLocked(ctx, to.Exchange, to.RoutingKey, publishing(env))
}

// publishLocked publishes on the confirm channel and waits for the ack.
func (b *Broker) publishLocked(ctx context.Context, exchange, key string, msg amqp.Publishing) error {
	conf, err := b.pubCh.PublishWithDeferredConfirmWithContext(ctx, exchange, key, false, false, msg)
	if err != nil {
		return fmt.Errorf("rabbitmq: publish to %q/%q: %w", exchange, key, err)
	}
	acked, err := conf.WaitContext(ctx)
	if err != nil {
		return fmt.Errorf("rabbitmq: publish to %q/%q: waiting for confirm: %w", exchange, key, err)
	}
	if !acked {
		return fmt.Errorf("rabbitmq: publish to %q/%q: broker nacked the message", exchange, key)
	}
	return nil
}

// publishing converts an Envelope to an AMQP message.
func publishing(env protocol.Envelope) amqp.Publishing {
	mode := env.DeliveryMode
	if mode == 0 {
		mode = amqp.Persistent
	}
	return amqp.Publishing{
		Headers:         toTable(env.Headers),
		ContentType:     env.ContentType,
		ContentEncoding: env.ContentEncoding,
		DeliveryMode:    mode,
		Priority:        env.Priority,
		CorrelationId:   env.CorrelationID,
		ReplyTo:         env.ReplyTo,
		Expiration:      env.Expiration,
		Body:            env.Body,
	}
}

// toTable converts header values to the types amqp091 writes: nested maps
// become Tables.
func toTable(h map[string]any) amqp.Table {
	if h == nil {
		return nil
	}
	t := make(amqp.Table, len(h))
	for k, v := range h {
		t[k] = toField(v)
	}
	return t
}

func toField(v any) any {
	switch x := v.(type) {
	case map[string]any:
		return toTable(x)
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = toField(e)
		}
		return out
	case uint:
		return int64(x)
	case uint64:
		return int64(x)
	default:
		return v
	}
}

// fromTable converts what amqp091 decodes to plain Go values: Tables become
// map[string]any, decimals float64.
func fromTable(t amqp.Table) map[string]any {
	if t == nil {
		return nil
	}
	m := make(map[string]any, len(t))
	for k, v := range t {
		m[k] = fromField(v)
	}
	return m
}

func fromField(v any) any {
	switch x := v.(type) {
	case amqp.Table:
		return fromTable(x)
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = fromField(e)
		}
		return out
	case amqp.Decimal:
		f := float64(x.Value)
		for range x.Scale {
			f /= 10
		}
		return f
	default:
		return v
	}
}

// delivery adapts an amqp.Delivery to worker.Delivery.
type delivery struct{ d amqp.Delivery }

func (d *delivery) Envelope() protocol.Envelope {
	return protocol.Envelope{
		ContentType:     d.d.ContentType,
		ContentEncoding: d.d.ContentEncoding,
		Headers:         fromTable(d.d.Headers),
		Body:            d.d.Body,
		CorrelationID:   d.d.CorrelationId,
		ReplyTo:         d.d.ReplyTo,
		Priority:        d.d.Priority,
		DeliveryMode:    d.d.DeliveryMode,
		Expiration:      d.d.Expiration,
	}
}

func (d *delivery) Info() worker.DeliveryInfo {
	return worker.DeliveryInfo{Exchange: d.d.Exchange, RoutingKey: d.d.RoutingKey, Redelivered: d.d.Redelivered}
}

func (d *delivery) Ack() error { return d.d.Ack(false) }

func (d *delivery) Reject(requeue bool) error { return d.d.Reject(requeue) }

type nopWriter struct{}

func (nopWriter) Write(p []byte) (int, error) { return len(p), nil }

// DeleteQueue deletes a queue (tests and benchmarks clean up with it).
func (b *Broker) DeleteQueue(name string) error {
	b.pubMu.Lock()
	defer b.pubMu.Unlock()
	if _, err := b.pubCh.QueueDelete(name, false, false, false); err != nil {
		return fmt.Errorf("rabbitmq: delete queue %q: %w", name, err)
	}
	return nil
}
