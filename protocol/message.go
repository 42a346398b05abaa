package protocol

import "time"

// Envelope is a task message as a broker carries it, independent of the
// transport: the AMQP properties Celery uses, the header table and the raw
// (serialized, possibly compressed) body. Adapters fill it from an
// amqp091.Delivery or a kombu Redis envelope; Decode turns it into a Message.
type Envelope struct {
	ContentType     string
	ContentEncoding string
	// Headers holds AMQP field-table values as amqp091-go returns them:
	// string, bool, int8..int64, float32, float64, nil, []any,
	// map[string]any (or amqp091.Table), time.Time and []byte.
	Headers       map[string]any
	Body          []byte
	CorrelationID string
	ReplyTo       string
	Priority      uint8
	// DeliveryMode is 2 for persistent messages, 1 (or 0) otherwise.
	DeliveryMode uint8
	// Expiration is the AMQP per-message TTL in milliseconds, as a decimal
	// string; empty means none.
	Expiration string
}

// TimeLimit is Celery's [hard, soft] pair. A zero duration means no limit.
type TimeLimit struct {
	Hard time.Duration
	Soft time.Duration
}

// Message is one task request in protocol v2 form, whatever version it was
// received in.
type Message struct {
	// Version is the protocol the message arrived in: 1, or 2 (also for
	// hybrid messages). Encode always writes version 2.
	Version int

	ID   string // task id; also the AMQP correlation_id
	Task string // registered task name

	Args   []any
	Kwargs map[string]any

	// Embed: what the worker does after the task, see §1.4 of the reference.
	Callbacks []Signature // link
	Errbacks  []Signature // link_error
	Chain     []Signature // remaining chain, REVERSED as on the wire: next step is last
	Chord     *Signature  // chord body this task is a header member of

	Lang   string
	Shadow string
	// ETA and Expires are zero when absent.
	ETA     time.Time
	Expires time.Time
	Group   string
	// GroupIndex is nil when the header is null or absent.
	GroupIndex          *int
	Retries             int
	TimeLimit           TimeLimit
	RootID              string
	ParentID            string
	ArgsRepr            string
	KwargsRepr          string
	Origin              string
	IgnoreResult        bool
	ReplacedTaskNesting int
	// StampedHeaders and Stamps are Celery 5.3+'s canvas stamps: the names
	// of the stamps and name -> value (a value or a list of values). Both
	// are nil when the message has neither header (Celery 5.2 and older);
	// Celery 5.3+ always sends them, as stamped_headers null and stamps {}
	// for an unstamped task, and Encode writes them back as it read them.
	StampedHeaders []string
	Stamps         map[string]any
	// ExtraHeaders holds every header Celery does not define (custom
	// apply_async(headers=...) values, ...). They are written back by
	// Encode and kept across retries.
	ExtraHeaders map[string]any

	// AMQP properties.
	CorrelationID string
	ReplyTo       string
	Priority      uint8
}
