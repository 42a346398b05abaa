package protocol

import (
	"math"
	"strings"
	"sync"
	"time"
)

// EventExchange is the topic exchange Celery events are published on
// (durable, not auto-deleted).
const EventExchange = "celeryev"

// The event types a Celery worker sends (celery/events, worker/heartbeat.py,
// worker/request.py).
const (
	EventWorkerOnline    = "worker-online"
	EventWorkerHeartbeat = "worker-heartbeat"
	EventWorkerOffline   = "worker-offline"
	EventTaskReceived    = "task-received"
	EventTaskStarted     = "task-started"
	EventTaskSucceeded   = "task-succeeded"
	EventTaskFailed      = "task-failed"
	EventTaskRetried     = "task-retried"
	EventTaskRevoked     = "task-revoked"
	EventTaskRejected    = "task-rejected"
)

// What a worker reports about its software in worker events. Flower and
// celery.events.state read sw_ident, so it keeps Celery's value; the Go
// implementation names itself in the extra field sw_impl.
const (
	EventSoftwareIdent   = "py-celery"
	EventSoftwareVersion = "5.2.6"
	EventSoftwareSystem  = "Linux"
	EventSoftwareImpl    = "vhg-worker"
)

// HeartbeatFrequency is the interval of worker-heartbeat events, in seconds
// (Celery's Heart.interval). A receiver considers a worker gone after twice
// that without a heartbeat.
const HeartbeatFrequency = 2.0

// resultReprMaxLen bounds the result repr of task-succeeded, as Celery's
// resultrepr_maxsize does.
const resultReprMaxLen = 1024

// EventField is one field of an event, kept in order so that the JSON reads
// like the Python dispatcher's.
type EventField struct {
	Name  string
	Value any
}

// Event is one Celery event. The constructors fill Type and Fields; the
// dispatcher that sends it stamps Hostname, Timestamp, UTCOffset, PID and
// Clock.
type Event struct {
	Type      string
	Hostname  string
	Timestamp time.Time
	// UTCOffset is Celery's utcoffset: hours west of UTC (0 on UTC hosts).
	UTCOffset int
	PID       int
	// Clock is the Lamport clock value, one more for every message sent.
	Clock  uint64
	Fields []EventField
}

// RoutingKey is the event type with dashes turned into dots
// ("task.succeeded"), which receivers bind with patterns like "task.#".
func (e Event) RoutingKey() string { return strings.ReplaceAll(e.Type, "-", ".") }

// keysAndValues lists the fields in the Python dispatcher's order:
// hostname, utcoffset, pid, clock, the type's own fields, timestamp, type.
func (e Event) keysAndValues() ([]string, []any) {
	keys := []string{"hostname", "utcoffset", "pid", "clock"}
	values := []any{e.Hostname, e.UTCOffset, e.PID, e.Clock}
	for _, f := range e.Fields {
		keys = append(keys, f.Name)
		values = append(values, f.Value)
	}
	keys = append(keys, "timestamp", "type")
	values = append(values, UnixSeconds(e.Timestamp), e.Type)
	return keys, values
}

// JSON encodes the event as a Celery worker publishes it.
func (e Event) JSON() ([]byte, error) {
	keys, values := e.keysAndValues()
	enc := jsonEncoder{}
	if err := enc.encodeOrdered(keys, values); err != nil {
		return nil, err
	}
	return enc.buf.Bytes(), nil
}

// Map returns the event as the dict a receiver decodes.
func (e Event) Map() map[string]any {
	keys, values := e.keysAndValues()
	m := make(map[string]any, len(keys))
	for i, k := range keys {
		m[k] = values[i]
	}
	return m
}

// Field returns the value of one of the type's own fields.
func (e Event) Field(name string) (any, bool) {
	for _, f := range e.Fields {
		if f.Name == name {
			return f.Value, true
		}
	}
	return nil, false
}

// UnixSeconds is a time as Python's time.time() gives it: float seconds
// since the epoch (with microseconds to spare at today's dates).
func UnixSeconds(t time.Time) float64 {
	return float64(t.Unix()) + float64(t.Nanosecond())/1e9
}

// fromUnixSeconds is the inverse of UnixSeconds, to the microsecond.
func fromUnixSeconds(f float64) time.Time {
	sec := math.Floor(f)
	return time.Unix(int64(sec), int64(math.Round((f-sec)*1e6))*1000)
}

// UTCOffset returns Celery's utcoffset for t's zone: whole hours west of
// UTC, rounded down as Python's // does.
func UTCOffset(t time.Time) int {
	_, east := t.Zone()
	return int(math.Floor(float64(-east) / 3600))
}

// WorkerState is what worker-online, -heartbeat and -offline report.
type WorkerState struct {
	// Active is the number of tasks running now.
	Active int
	// Processed is the number of tasks started since the worker started.
	Processed int
	// LoadAvg is the system load average over 1, 5 and 15 minutes.
	LoadAvg [3]float64
	// Freq is the heartbeat interval in seconds; zero means
	// HeartbeatFrequency.
	Freq float64
}

// WorkerEvent builds worker-online, worker-heartbeat or worker-offline.
func WorkerEvent(typ string, s WorkerState) Event {
	freq := s.Freq
	if freq <= 0 {
		freq = HeartbeatFrequency
	}
	return Event{Type: typ, Fields: []EventField{
		{"freq", freq},
		{"active", s.Active},
		{"processed", s.Processed},
		{"loadavg", []any{s.LoadAvg[0], s.LoadAvg[1], s.LoadAvg[2]}},
		{"sw_ident", EventSoftwareIdent},
		{"sw_ver", EventSoftwareVersion},
		{"sw_sys", EventSoftwareSystem},
		{"sw_impl", EventSoftwareImpl},
	}}
}

// TaskReceivedEvent builds task-received for a request: args and kwargs are
// the reprs Python shows (the argsrepr/kwargsrepr headers when present), eta
// and expires isoformat strings or null.
func TaskReceivedEvent(m *Message) Event {
	args := m.ArgsRepr
	if args == "" {
		args = ArgsRepr(m.Args)
	}
	kwargs := m.KwargsRepr
	if kwargs == "" {
		kw := m.Kwargs
		if kw == nil {
			kw = map[string]any{}
		}
		kwargs = PythonRepr(kw)
	}
	return Event{Type: EventTaskReceived, Fields: []EventField{
		{"uuid", m.ID},
		{"name", m.Task},
		{"args", args},
		{"kwargs", kwargs},
		{"root_id", nullIfEmpty(m.RootID)},
		{"parent_id", nullIfEmpty(m.ParentID)},
		{"retries", m.Retries},
		{"eta", isoOrNull(m.ETA)},
		{"expires", isoOrNull(m.Expires)},
	}}
}

// TaskStartedEvent builds task-started.
func TaskStartedEvent(id string) Event {
	return Event{Type: EventTaskStarted, Fields: []EventField{{"uuid", id}}}
}

// TaskSucceededEvent builds task-succeeded: result is sent as its Python
// repr cut to 1024 characters, runtime in seconds.
func TaskSucceededEvent(id string, result any, runtime time.Duration) Event {
	return Event{Type: EventTaskSucceeded, Fields: []EventField{
		{"uuid", id},
		{"result", truncateText(PythonRepr(result), resultReprMaxLen)},
		{"runtime", runtime.Seconds()},
	}}
}

// TaskFailedEvent builds task-failed: the exception's repr and the
// traceback text.
func TaskFailedEvent(id string, exc ExceptionInfo, traceback string) Event {
	return Event{Type: EventTaskFailed, Fields: []EventField{
		{"uuid", id},
		{"exception", exc.Repr()},
		{"traceback", traceback},
	}}
}

// TaskRetriedEvent builds task-retried.
func TaskRetriedEvent(id string, exc ExceptionInfo, traceback string) Event {
	return Event{Type: EventTaskRetried, Fields: []EventField{
		{"uuid", id},
		{"exception", exc.Repr()},
		{"traceback", traceback},
	}}
}

// TaskRevokedEvent builds task-revoked. signum is the signal of a
// terminated task (15 for SIGTERM); zero is sent as null.
func TaskRevokedEvent(id string, terminated bool, signum int, expired bool) Event {
	var sig any
	if signum != 0 {
		sig = signum
	}
	return Event{Type: EventTaskRevoked, Fields: []EventField{
		{"uuid", id},
		{"terminated", terminated},
		{"signum", sig},
		{"expired", expired},
	}}
}

// TaskRejectedEvent builds task-rejected.
func TaskRejectedEvent(id string, requeue bool) Event {
	return Event{Type: EventTaskRejected, Fields: []EventField{
		{"uuid", id},
		{"requeue", requeue},
	}}
}

// Repr renders the exception as Python's repr does: ValueError('boom'),
// TimeLimitExceeded(60.0), Exception().
func (e ExceptionInfo) Repr() string {
	args := make([]string, len(e.Message))
	for i, a := range e.Message {
		args[i] = PythonRepr(a)
	}
	return e.Type + "(" + strings.Join(args, ", ") + ")"
}

func isoOrNull(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return formatISOTime(t)
}

// LamportClock is Celery's logical clock (kombu.clocks.LamportClock): one
// per worker, shared by events and remote control. It is safe for
// concurrent use; the zero value starts at 0.
type LamportClock struct {
	mu    sync.Mutex
	value uint64
}

// Forward advances the clock for a message about to be sent and returns
// the new value.
func (c *LamportClock) Forward() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.value++
	return c.value
}

// Adjust moves the clock past a value received from another node and
// returns the new value.
func (c *LamportClock) Adjust(other uint64) uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.value = max(c.value, other) + 1
	return c.value
}

// Value returns the current value.
func (c *LamportClock) Value() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.value
}
