package protocol

import (
	"errors"
	"math"
	"strconv"
	"time"
)

// now is the clock Encode reads to turn Expires into an AMQP expiration.
// Tests replace it.
var now = time.Now

// Encode writes m as a protocol v2 JSON message, exactly as Celery 5.2's
// app.amqp.as_task_v2 and send_task do:
//
//   - headers lang ("py" if empty), task, id, shadow, eta, expires, group,
//     group_index, retries, timelimit ([hard, soft] seconds, null when
//     zero), root_id (the task id if empty), parent_id, argsrepr and
//     kwargsrepr (computed when empty), origin and ignore_result, plus
//     replaced_task_nesting when non-zero, and every ExtraHeaders entry.
//     A message with StampedHeaders or Stamps set is written as Celery 5.3+
//     writes it: replaced_task_nesting always, stamped_headers (null when
//     nil) and stamps ({} when nil).
//     Empty optional values are null; integers are int32 when they fit, as
//     py-amqp sends them;
//   - body [args, kwargs, {"callbacks", "errbacks", "chain", "chord"}];
//   - properties: application/json, utf-8, correlation_id = id, reply_to,
//     priority, delivery_mode 2, and expiration in milliseconds from now
//     until Expires (at least 0) when Expires is set.
func Encode(m *Message) (Envelope, error) {
	if m == nil {
		return Envelope{}, errors.New("protocol: encode: nil message")
	}
	if m.Task == "" || m.ID == "" {
		return Envelope{}, errors.New("protocol: encode: message needs a task name and an id")
	}
	body, err := encodeBody(m)
	if err != nil {
		return Envelope{}, err
	}
	env := Envelope{
		ContentType:     "application/json",
		ContentEncoding: "utf-8",
		Headers:         encodeHeaders(m),
		Body:            body,
		CorrelationID:   m.ID,
		ReplyTo:         m.ReplyTo,
		Priority:        m.Priority,
		DeliveryMode:    2,
	}
	if !m.Expires.IsZero() {
		ms := max(m.Expires.Sub(now()).Milliseconds(), 0)
		env.Expiration = strconv.FormatInt(ms, 10)
	}
	return env, nil
}

func encodeHeaders(m *Message) map[string]any {
	h := make(map[string]any, 16+len(m.ExtraHeaders))
	for k, v := range m.ExtraHeaders {
		h[k] = headerValue(normalizeValue(v, 0))
	}
	lang := m.Lang
	if lang == "" {
		lang = "py"
	}
	rootID := m.RootID
	if rootID == "" {
		rootID = m.ID // as_task_v2: "empty root_id defaults to task_id"
	}
	argsRepr, kwargsRepr := m.ArgsRepr, m.KwargsRepr
	if argsRepr == "" {
		argsRepr = ArgsRepr(m.Args)
	}
	if kwargsRepr == "" {
		kwargsRepr = PythonRepr(nonNilKwargs(m.Kwargs))
	}
	var groupIndex any
	if m.GroupIndex != nil {
		groupIndex = headerValue(int64(*m.GroupIndex))
	}
	h["lang"] = lang
	h["task"] = m.Task
	h["id"] = m.ID
	h["shadow"] = nullIfEmpty(m.Shadow)
	h["eta"] = nullIfZeroTime(m.ETA)
	h["expires"] = nullIfZeroTime(m.Expires)
	h["group"] = nullIfEmpty(m.Group)
	h["group_index"] = groupIndex
	h["retries"] = headerValue(int64(m.Retries))
	h["timelimit"] = []any{timeLimitSeconds(m.TimeLimit.Hard), timeLimitSeconds(m.TimeLimit.Soft)}
	h["root_id"] = rootID
	h["parent_id"] = nullIfEmpty(m.ParentID)
	h["argsrepr"] = argsRepr
	h["kwargsrepr"] = kwargsRepr
	h["origin"] = nullIfEmpty(m.Origin)
	h["ignore_result"] = m.IgnoreResult
	celery53 := m.StampedHeaders != nil || m.Stamps != nil
	if m.ReplacedTaskNesting != 0 || celery53 {
		h["replaced_task_nesting"] = headerValue(int64(m.ReplacedTaskNesting))
	}
	if celery53 {
		var names any
		if m.StampedHeaders != nil {
			list := make([]any, len(m.StampedHeaders))
			for i, n := range m.StampedHeaders {
				list[i] = n
			}
			names = list
		}
		stamps := map[string]any{}
		for k, v := range m.Stamps {
			stamps[k] = headerValue(normalizeValue(v, 0))
		}
		h["stamped_headers"] = names
		h["stamps"] = stamps
	}
	return h
}

func encodeBody(m *Message) ([]byte, error) {
	args := m.Args
	if args == nil {
		args = []any{}
	}
	var callbacks, errbacks, chain, chord any
	if m.Callbacks != nil {
		callbacks = signatureMaps(m.Callbacks)
	}
	if m.Errbacks != nil {
		errbacks = signatureMaps(m.Errbacks)
	}
	if m.Chain != nil {
		chain = signatureMaps(m.Chain)
	}
	if m.Chord != nil {
		chord = m.Chord.Map()
	}
	e := jsonEncoder{}
	e.buf.WriteByte('[')
	if err := e.encode(args); err != nil {
		return nil, err
	}
	e.buf.WriteString(", ")
	if err := e.encode(nonNilKwargs(m.Kwargs)); err != nil {
		return nil, err
	}
	e.buf.WriteString(", ")
	err := e.encodeOrdered([]string{"callbacks", "errbacks", "chain", "chord"},
		[]any{callbacks, errbacks, chain, chord})
	if err != nil {
		return nil, err
	}
	e.buf.WriteByte(']')
	return e.buf.Bytes(), nil
}

func nonNilKwargs(kw map[string]any) map[string]any {
	if kw == nil {
		return map[string]any{}
	}
	return kw
}

func nullIfZeroTime(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return formatISOTime(t)
}

// timeLimitSeconds writes a limit as whole seconds (an int) when it is
// whole, else as float seconds; zero (no limit) is null.
func timeLimitSeconds(d time.Duration) any {
	switch {
	case d <= 0:
		return nil
	case d%time.Second == 0:
		return headerValue(int64(d / time.Second))
	default:
		return float64(d/time.Microsecond) / 1e6
	}
}

// headerValue converts a normalized value for an AMQP header table: int64
// becomes int32 when it fits (py-amqp's 'I'), inside lists and tables too.
func headerValue(v any) any {
	switch v := v.(type) {
	case int64:
		if v >= math.MinInt32 && v <= math.MaxInt32 {
			return int32(v)
		}
		return v
	case []any:
		out := make([]any, len(v))
		for i, x := range v {
			out[i] = headerValue(x)
		}
		return out
	case map[string]any:
		out := make(map[string]any, len(v))
		for k, x := range v {
			out[k] = headerValue(x)
		}
		return out
	}
	return v
}
