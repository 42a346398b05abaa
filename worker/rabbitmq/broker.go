// Package rabbitmq is the RabbitMQ (AMQP 0-9-1) adapter of the worker: a
// worker.Broker that declares and consumes queues as Celery does, and the two
// result backends that live on the broker itself, rpc:// and the legacy
// amqp:// (one queue per task on the celeryresults exchange).
//
// A Broker repairs a lost connection by itself (see Broker), on the next
// node of a cluster when given Celery's ";"-separated list of URLs, over
// TLS with amqps:// (see failover.go), and never holds a delivery
// unacknowledged past RabbitMQ's consumer_timeout: waiting messages are
// postponed and long acks_late tasks leased (see lease.go and
// worker.LeasingDelivery).
//
// Task queues are classic or quorum, on direct or topic exchanges, declared
// as Celery 5.6 declares them; consumers have a per-consumer prefetch
// count; messages with an ETA wait in Celery 5.5's native delayed delivery
// queues, not in the worker (see topology.go).
package rabbitmq

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/sirupsen/logrus"
	"github.com/vhg/vhg-worker/protocol"
	"github.com/vhg/vhg-worker/worker"
)

// Config configures a connection. Every zero value has the meaning given.
type Config struct {
	// URL is the broker URL, or Celery's ";"-separated list of the URLs
	// of a cluster's nodes, tried in turn on a lost connection (see
	// failover.go); empty means amqp://guest:guest@localhost:5672//. An
	// amqps:// URL may carry Celery's ssl_* options in its query
	// (worker.TLSFromURL), over TLS.
	URL string
	// TLS is the TLS settings of amqps:// URLs; the zero value checks the
	// server's certificate against the system's CAs and the URL's host.
	TLS worker.TLSFiles
	// Heartbeat is the AMQP heartbeat interval; zero means 60 s.
	Heartbeat time.Duration
	// ConnectionName is shown in the RabbitMQ management UI; empty means
	// "vhg-worker".
	ConnectionName string
	// ConsumerTimeout is RabbitMQ's consumer_timeout (or less): the
	// broker closes the channel of a consumer that keeps a delivery
	// unacknowledged longer, and redelivers all of its messages. No
	// delivery is held unacknowledged for more than half of it (see
	// Delivery.Lease and Delivery.Postpone). Zero means 30 minutes,
	// RabbitMQ's default.
	ConsumerTimeout time.Duration
	// MaxBackoff caps the jittered exponential backoff between reconnection
	// attempts after the connection is lost; zero means 30 s.
	MaxBackoff time.Duration
	// ReconnectWait is how long a publish (a result, the next step of a
	// workflow) waits for a lost connection to come back before it fails;
	// a shorter ctx ends it sooner. Zero means 5 minutes.
	ReconnectWait time.Duration
	// OnConnectionLost is called, on its own goroutine, each time the
	// connection is lost; nil means nothing is called.
	OnConnectionLost func(err error)
	// OnReconnect is called once the connection is back and consuming can
	// resume; nil means nothing is called.
	OnReconnect func()
	// QueueType is the type of the task queues declared: QueueClassic or
	// QueueQuorum (Celery's task_default_queue_type); empty means classic.
	// It must match what the deployment declared: RabbitMQ refuses to
	// consume a queue declared with another type.
	QueueType string
	// DeliveryLimit is the x-delivery-limit of quorum task queues: how
	// many times the broker returns a message (its worker died, its
	// connection was lost) before it drops or dead-letters it. It must
	// match the deployment's declaration; the worker ends such a message
	// as FAILURE at its last delivery (worker.DeliveryInfo.DeliveryLimit).
	// Zero means the queues are declared without one; ignored for classic
	// queues.
	DeliveryLimit int
	// ExchangeType is the type of the exchange named after each task
	// queue: ExchangeDirect or ExchangeTopic (Celery's
	// task_default_exchange_type); empty means direct.
	ExchangeType string
	// DelayedDeliveryQueueType is the type of the native delayed delivery
	// queues celery_delayed_* (Celery's
	// broker_native_delayed_delivery_queue_type); empty means quorum,
	// Celery's default. They are shared by every worker of the broker.
	DelayedDeliveryQueueType string
	// NoNativeDelay turns native delayed delivery off: the topology is not
	// declared, and a message waiting for its ETA stays in the worker,
	// taking a prefetch slot until then. False means it is on.
	NoNativeDelay bool
	// Log receives adapter events; nil discards them.
	Log logrus.FieldLogger
}

// DefaultURL is Celery's default broker URL.
const DefaultURL = "amqp://guest:guest@localhost:5672//"

// Errors of a broker that is closed or whose connection is lost.
var (
	ErrClosed       = errors.New("rabbitmq: broker closed")
	ErrDisconnected = errors.New("rabbitmq: connection lost and not yet back")
)

// Broker is a connection to RabbitMQ used as a Celery broker. When the
// connection is lost it reconnects by itself, with a jittered, capped
// exponential backoff, and then re-declares what it uses, re-applies the
// prefetch count and resumes consuming (task queues, remote control);
// publishes wait for it (Config.ReconnectWait). Deliveries received before
// the loss can no longer be acknowledged: the broker redelivers them.
type Broker struct {
	cfg  Config
	log  logrus.FieldLogger
	done chan struct{} // closed by Close

	mu     sync.Mutex
	eps    []endpoint // the URLs of the list
	cur    int        // the one connected to, or tried next
	conn   *amqp.Connection
	gen    uint64        // incremented at each new connection
	up     chan struct{} // closed while conn is usable; replaced when it is lost
	closed bool

	pubMu    sync.Mutex
	pubCh    *amqp.Channel // publisher confirms on
	pubGen   uint64
	declared map[string]bool // on this connection

	consumeMu sync.Mutex
	settlers  []*settler // of the consuming channels

	eventMu  sync.Mutex
	eventCh  *amqp.Channel // events: no confirms, opened on first use
	eventGen uint64

	sideMu  sync.Mutex
	sideCh  *amqp.Channel // lease declares; a failed passive declare closes it
	sideGen uint64

	leaseMu sync.Mutex
	leases  map[string]*lease // by name

	delayMu  sync.Mutex
	delayGen uint64          // the connection the delayed delivery topology was declared on
	delayOK  bool            // it was declared: messages can be delayed natively
	delayErr bool            // declaring it failed on delayGen
	consumed map[string]bool // task queues consumed, declared by this broker
}

var _ worker.Broker = (*Broker)(nil)

// Dial connects to RabbitMQ. The first connection must succeed; later
// losses are repaired in the background until Close.
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
	if cfg.ConsumerTimeout <= 0 {
		cfg.ConsumerTimeout = 30 * time.Minute
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = 30 * time.Second
	}
	if cfg.ReconnectWait <= 0 {
		cfg.ReconnectWait = 5 * time.Minute
	}
	switch cfg.QueueType {
	case "":
		cfg.QueueType = QueueClassic
	case QueueClassic, QueueQuorum:
	default:
		return nil, fmt.Errorf("rabbitmq: queue type %q: want %s or %s", cfg.QueueType, QueueClassic, QueueQuorum)
	}
	if cfg.DeliveryLimit < 0 {
		return nil, fmt.Errorf("rabbitmq: delivery limit %d: want 0 (none) or more", cfg.DeliveryLimit)
	}
	switch cfg.ExchangeType {
	case "":
		cfg.ExchangeType = ExchangeDirect
	case ExchangeDirect, ExchangeTopic:
	default:
		return nil, fmt.Errorf("rabbitmq: exchange type %q: want %s or %s", cfg.ExchangeType, ExchangeDirect, ExchangeTopic)
	}
	switch cfg.DelayedDeliveryQueueType {
	case "":
		cfg.DelayedDeliveryQueueType = QueueQuorum
	case QueueClassic, QueueQuorum:
	default:
		return nil, fmt.Errorf("rabbitmq: delayed delivery queue type %q: want %s or %s", cfg.DelayedDeliveryQueueType, QueueClassic, QueueQuorum)
	}
	log := cfg.Log
	if log == nil {
		l := logrus.New()
		l.Out = nopWriter{}
		log = l
	}
	eps, err := endpoints(cfg.URL, cfg.TLS)
	if err != nil {
		return nil, err
	}
	b := &Broker{cfg: cfg, log: log, done: make(chan struct{}), up: make(chan struct{}),
		declared: make(map[string]bool), leases: make(map[string]*lease), consumed: make(map[string]bool)}
	b.eps = eps
	conn, err := b.dialFirst()
	if err != nil {
		return nil, fmt.Errorf("rabbitmq: connect to %s: %w", Redact(cfg.URL), err)
	}
	log.WithField("node", b.Node()).Info("connected to the broker")
	b.conn = conn
	close(b.up)
	go b.supervise(conn, conn.NotifyClose(make(chan *amqp.Error, 1)))
	return b, nil
}

// dial connects to the current URL of the list.
func (b *Broker) dial() (*amqp.Connection, error) {
	b.mu.Lock()
	e := b.eps[b.cur]
	b.mu.Unlock()
	return b.dialEndpoint(e)
}

// supervise waits for the connection to close and, unless the broker was
// closed, reconnects.
func (b *Broker) supervise(conn *amqp.Connection, closed <-chan *amqp.Error) {
	for {
		cerr := <-closed
		b.mu.Lock()
		if b.closed {
			b.mu.Unlock()
			return
		}
		if b.conn == conn {
			b.up = make(chan struct{})
		}
		b.mu.Unlock()
		var err error = ErrDisconnected
		if cerr != nil {
			err = cerr
		}
		lost := b.Node()
		b.next()
		b.log.WithError(err).WithFields(logrus.Fields{"node": lost, "next": b.Node()}).Error("broker connection lost: reconnecting; messages received before the loss will be redelivered")
		if b.cfg.OnConnectionLost != nil {
			go b.cfg.OnConnectionLost(err)
		}
		conn, closed = b.reconnect()
		if conn == nil {
			return
		}
		if b.cfg.OnReconnect != nil {
			go b.cfg.OnReconnect()
		}
	}
}

// reconnect dials until it succeeds or the broker is closed (nil). Leases
// are declared again on the new connection before anything else uses it.
func (b *Broker) reconnect() (*amqp.Connection, <-chan *amqp.Error) {
	start := time.Now()
	for attempt := 0; ; attempt++ {
		select {
		case <-time.After(backoff(attempt, b.cfg.MaxBackoff)):
		case <-b.done:
			return nil, nil
		}
		conn, err := b.dial()
		if err != nil {
			b.log.WithError(err).WithFields(logrus.Fields{"attempt": attempt + 1, "node": b.Node()}).Warn("reconnecting to the broker failed; retrying")
			b.next()
			continue
		}
		closed := conn.NotifyClose(make(chan *amqp.Error, 1))
		if err := b.restoreLeases(conn); err != nil {
			b.log.WithError(err).Warn("restoring task leases on the new connection failed; retrying")
			conn.Close()
			continue
		}
		b.mu.Lock()
		if b.closed {
			b.mu.Unlock()
			conn.Close()
			return nil, nil
		}
		b.conn = conn
		b.gen++
		close(b.up)
		b.mu.Unlock()
		b.log.WithFields(logrus.Fields{"attempts": attempt + 1, "down": time.Since(start).Round(time.Millisecond), "node": b.Node()}).Warn("broker connection restored")
		return conn, closed
	}
}

// backoff is the wait before reconnection attempt n: exponential from
// 250 ms, capped, with the upper half jittered so that many workers do not
// reconnect in step.
func backoff(attempt int, max time.Duration) time.Duration {
	d := 250 * time.Millisecond
	for range min(attempt, 20) {
		d *= 2
		if d >= max {
			d = max
			break
		}
	}
	return d/2 + rand.N(d/2+1)
}

// connection returns the open connection, waiting up to ReconnectWait
// (or ctx) for it to come back when it is lost.
func (b *Broker) connection(ctx context.Context) (*amqp.Connection, uint64, error) {
	var deadline <-chan time.Time
	for {
		b.mu.Lock()
		conn, gen, up, closed := b.conn, b.gen, b.up, b.closed
		b.mu.Unlock()
		if closed {
			return nil, 0, ErrClosed
		}
		if !conn.IsClosed() {
			return conn, gen, nil
		}
		if deadline == nil {
			t := time.NewTimer(b.cfg.ReconnectWait)
			defer t.Stop()
			deadline = t.C
		}
		select {
		case <-up:
			// Either a new connection, or the loss is not noticed yet.
			select {
			case <-time.After(20 * time.Millisecond):
			case <-ctx.Done():
				return nil, 0, fmt.Errorf("rabbitmq: waiting for the connection: %w", context.Cause(ctx))
			}
		case <-ctx.Done():
			return nil, 0, fmt.Errorf("rabbitmq: waiting for the connection: %w", context.Cause(ctx))
		case <-deadline:
			return nil, 0, fmt.Errorf("%w after %s", ErrDisconnected, b.cfg.ReconnectWait)
		case <-b.done:
			return nil, 0, ErrClosed
		}
	}
}

// isClosed reports whether Close was called.
func (b *Broker) isClosed() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.closed
}

// generation is the number of the current connection.
func (b *Broker) generation() uint64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.gen
}

// lostDuring reports whether err came from conn going away, in which case
// the operation is worth retrying on the next connection.
func lostDuring(conn *amqp.Connection, err error) bool {
	if conn.IsClosed() {
		return true
	}
	if errors.Is(err, amqp.ErrClosed) {
		// The channel saw it first; give the connection a moment.
		time.Sleep(50 * time.Millisecond)
		return conn.IsClosed()
	}
	return false
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

// Redact hides the password of a URL, or of every URL of a ";"-separated
// list, for logs.
func Redact(raw string) string {
	parts := strings.Split(raw, ";")
	for i, p := range parts {
		u, err := url.Parse(strings.TrimSpace(p))
		if err != nil {
			parts[i] = "<unparsable URL>"
			continue
		}
		parts[i] = u.Redacted()
	}
	return strings.Join(parts, ";")
}

// Close closes the connection and stops reconnecting; unacknowledged
// deliveries are requeued by the broker.
func (b *Broker) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	close(b.done)
	conn := b.conn
	b.mu.Unlock()
	b.consumeMu.Lock()
	for _, s := range b.settlers {
		s.flush()
	}
	b.consumeMu.Unlock()
	err := conn.Close()
	if errors.Is(err, amqp.ErrClosed) {
		return nil
	}
	return err
}

// addSettler keeps the settler of a new consuming channel, for Close to
// write its last acknowledgements, and forgets those of closed channels.
func (b *Broker) addSettler(s *settler) {
	b.consumeMu.Lock()
	defer b.consumeMu.Unlock()
	b.settlers = slices.DeleteFunc(b.settlers, func(s *settler) bool { return s.ch.IsClosed() })
	b.settlers = append(b.settlers, s)
}

// Connected reports whether the connection is open.
func (b *Broker) Connected() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return !b.closed && !b.conn.IsClosed()
}

// Info describes the connection as Celery's `inspect stats` reports it
// ("broker"), without the password.
func (b *Broker) Info() map[string]any {
	info := map[string]any{
		"hostname": "localhost", "userid": "guest", "virtual_host": "/", "port": 5672,
		"insist": false, "ssl": false, "transport": "amqp", "connect_timeout": 4,
		"transport_options": map[string]any{}, "login_method": "PLAIN", "uri_prefix": nil,
		"heartbeat": b.cfg.Heartbeat.Seconds(), "failover_strategy": "round-robin", "alternates": []any{},
	}
	b.mu.Lock()
	cur, eps := b.cur, b.eps
	b.mu.Unlock()
	var alternates []any
	for i, e := range eps {
		if i != cur {
			alternates = append(alternates, e.shown)
		}
	}
	if alternates != nil {
		info["alternates"] = alternates
	}
	u, err := amqp.ParseURI(eps[cur].url)
	if err != nil {
		return info
	}
	info["hostname"], info["port"], info["userid"], info["virtual_host"] = u.Host, u.Port, u.Username, u.Vhost
	if u.Scheme == "amqps" {
		info["ssl"] = true
	}
	return info
}

// Publish implements worker.Broker. A message routed through the default
// exchange declares its queue first (once per connection), as a Celery
// client does, so that it is never dropped for want of a queue. A message
// with an ETA a second or more away, routed that way or to a queue this
// broker consumes through the exchange of the same name (a retry), goes
// through native delayed delivery (see topology.go), as a Celery 5.5+
// client sends a countdown: the broker keeps it until then, and any
// worker, Go or Python, takes it. Publish waits for the broker's confirm;
// when the connection is lost meanwhile it publishes again on the next
// one (at least once).
func (b *Broker) Publish(ctx context.Context, to worker.Route, env protocol.Envelope) error {
	msg := publishing(env)
	queue := to.RoutingKey
	delayKey := ""
	if eta := headerETA(env.Headers); !eta.IsZero() && queue != "" && (to.Exchange == "" || to.Exchange == queue && b.consumes(queue)) {
		if k, ok := DelayRoutingKey(time.Until(eta), queue); ok && b.delayedDelivery(ctx) {
			delayKey = k
		}
	}
	return b.withPublisher(ctx, func(p *publisher) error {
		if to.Exchange == "" && queue != "" && !p.declared[queue] {
			if err := b.declareTaskQueue(p.ch, queue, false); err != nil {
				return err
			}
			p.declared[queue] = true
		}
		if delayKey == "" {
			return p.publish(ctx, to.Exchange, to.RoutingKey, msg)
		}
		if bound := DelayedDeliveryExchange + " " + queue; !p.declared[bound] {
			if err := b.bindDelayed(p.ch, queue); err != nil {
				return err
			}
			p.declared[bound] = true
		}
		return p.publish(ctx, DelayedEntry, delayKey, msg)
	})
}

// consumes reports whether queue is one this broker consumes, declared
// with its exchange of the same name by this broker's settings.
func (b *Broker) consumes(queue string) bool {
	b.delayMu.Lock()
	defer b.delayMu.Unlock()
	return b.consumed[queue]
}

// headerETA is the eta header of a protocol 2 message; zero when absent or
// unreadable.
func headerETA(h map[string]any) time.Time {
	s, ok := h["eta"].(string)
	if !ok || s == "" {
		return time.Time{}
	}
	eta, err := protocol.ParseISOTime(s)
	if err != nil {
		return time.Time{}
	}
	return eta
}

// delayedDelivery reports whether native delayed delivery is usable on
// the current connection, declaring its topology there first (once per
// connection, on a channel of its own: a refused declaration closes it).
// When the declaration is refused (the deployment declared the levels
// otherwise), it is logged once per connection and messages wait in the
// worker instead.
func (b *Broker) delayedDelivery(ctx context.Context) bool {
	if b.cfg.NoNativeDelay {
		return false
	}
	conn, gen, err := b.connection(ctx)
	if err != nil {
		return false
	}
	b.delayMu.Lock()
	defer b.delayMu.Unlock()
	if b.delayGen == gen && (b.delayOK || b.delayErr) {
		return b.delayOK
	}
	b.delayGen, b.delayOK, b.delayErr = gen, false, false
	ch, err := conn.Channel()
	if err == nil {
		err = b.declareDelayedDelivery(ch)
		ch.Close()
	}
	if err != nil {
		if !lostDuring(conn, err) {
			b.delayErr = true
			b.log.WithError(err).Warn("declaring the native delayed delivery exchanges and queues failed: " +
				"messages with an ETA wait in the worker, each holding a prefetch slot until then")
		}
		return false
	}
	b.delayOK = true
	return true
}

// publisher is the confirm channel of one connection, lent to one caller
// at a time by withPublisher.
type publisher struct {
	ch       *amqp.Channel
	declared map[string]bool // entities declared on this connection
}

// withPublisher runs fn with the confirm channel. When the connection is
// lost during fn, it runs fn again on the next connection.
func (b *Broker) withPublisher(ctx context.Context, fn func(p *publisher) error) error {
	for {
		conn, gen, err := b.connection(ctx)
		if err != nil {
			return err
		}
		b.pubMu.Lock()
		p, err := b.publisherLocked(conn, gen)
		if err == nil {
			err = fn(p)
		}
		b.pubMu.Unlock()
		if err == nil || ctx.Err() != nil || !lostDuring(conn, err) {
			return err
		}
		b.log.WithError(err).Warn("connection lost while publishing; publishing again once it is back")
	}
}

// publisherLocked returns the confirm channel of connection gen, opening
// it when needed (a channel error closes it, a new connection replaces it).
func (b *Broker) publisherLocked(conn *amqp.Connection, gen uint64) (*publisher, error) {
	if b.pubGen != gen {
		b.declared = make(map[string]bool)
	}
	if b.pubCh == nil || b.pubCh.IsClosed() || b.pubGen != gen {
		ch, err := conn.Channel()
		if err != nil {
			return nil, fmt.Errorf("rabbitmq: open channel: %w", err)
		}
		if err := ch.Confirm(false); err != nil {
			ch.Close()
			return nil, fmt.Errorf("rabbitmq: enable publisher confirms: %w", err)
		}
		b.pubCh, b.pubGen = ch, gen
	}
	return &publisher{ch: b.pubCh, declared: b.declared}, nil
}

// publish publishes on the confirm channel and waits for the ack.
func (p *publisher) publish(ctx context.Context, exchange, key string, msg amqp.Publishing) error {
	conf, err := p.ch.PublishWithDeferredConfirmWithContext(ctx, exchange, key, false, false, msg)
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

type nopWriter struct{}

func (nopWriter) Write(p []byte) (int, error) { return len(p), nil }

// DeleteQueue deletes a task queue, its exchange and its guard queue
// (tests and benchmarks clean up with it). The shared delayed delivery
// topology stays.
func (b *Broker) DeleteQueue(name string) error {
	return b.withPublisher(context.Background(), func(p *publisher) error {
		for _, q := range []string{name, GuardQueue(name)} {
			if _, err := p.ch.QueueDelete(q, false, false, false); err != nil {
				return fmt.Errorf("rabbitmq: delete queue %q: %w", q, err)
			}
		}
		if err := p.ch.ExchangeDelete(name, false, false); err != nil {
			return fmt.Errorf("rabbitmq: delete exchange %q: %w", name, err)
		}
		return nil
	})
}
