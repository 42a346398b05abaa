package protocol

import (
	"bytes"
	"compress/bzip2"
	"compress/zlib"
	"errors"
	"fmt"
	"io"
	"math"
	"strings"
	"time"
)

// maxBodySize caps a decompressed body, so that a small compressed message
// cannot expand into gigabytes.
const maxBodySize = 64 << 20

// maxTimeLimit is the largest time limit accepted, in seconds (about 31
// years); larger values are surely garbage and would overflow a Duration.
const maxTimeLimit = 1e9

// Compression mime types kombu puts in the "compression" header.
const (
	compressionZlib  = "application/x-gzip" // kombu's "gzip" is zlib format
	compressionBzip2 = "application/x-bz2"
)

// Decode reads a task message in protocol v2, hybrid (v2 headers, v1 dict
// body) or v1 form, as Celery's worker does (consumer.on_task_received and
// strategy.py):
//
//   - a "task" header means v2; the body is [args, kwargs, embed], or, for a
//     hybrid message, a dict with "args" whose fields the headers override;
//   - otherwise the body must be a v1 dict with "task" ("taskset" is the old
//     name of "group"; a v1 chain is a nested link and stays in Callbacks).
//
// Only JSON bodies are accepted (an empty content type counts as JSON); the
// "compression" header may name zlib (application/x-gzip) or bzip2.
// Headers may hold any type amqp091-go produces. Times are returned in UTC;
// naive times are read as UTC. Headers Celery does not define are kept in
// ExtraHeaders.
//
// Every header and property is checked first: strings must be valid UTF-8
// and within the limits of limits.go (MaxNameLen, MaxIDLen,
// MaxHeaderStringLen, MaxHeadersSize), ids and names free of control
// characters, and the headers Celery defines of their type.
//
// Every error is a *DecodeError carrying the task id and name if they could
// be read and pass those checks, wrapping ErrContentDisallowed,
// ErrInvalidBody, ErrUnknownFormat or ErrBadHeader.
func Decode(env Envelope) (*Message, error) {
	headers := make(map[string]any, len(env.Headers))
	for k, v := range env.Headers {
		headers[k] = normalizeValue(v, 0)
	}
	// What the DecodeError carries is only what passes the limits, so
	// that the worker can use it safely to store a FAILURE.
	derr := &DecodeError{
		Task:          usableName(headers["task"]),
		TaskID:        usableID(headers["id"]),
		CorrelationID: usableProperty(env.CorrelationID),
		ReplyTo:       usableProperty(env.ReplyTo),
	}
	fail := func(err error) (*Message, error) {
		derr.Err = err
		return nil, derr
	}
	if err := checkHeaders(headers); err != nil {
		return fail(fmt.Errorf("%w: %v", ErrBadHeader, err))
	}
	if err := checkProperties(env); err != nil {
		return fail(fmt.Errorf("%w: %v", ErrBadHeader, err))
	}

	body, err := decodeBody(env, headers["compression"])
	if err != nil {
		return fail(err)
	}
	bodyDict, isDict := body.(map[string]any)
	if isDict {
		if _, ok := headers["task"]; !ok {
			derr.Task = usableName(bodyDict["task"])
		}
		if _, ok := headers["id"]; !ok {
			derr.TaskID = usableID(bodyDict["id"])
		}
	}

	m := &Message{}
	var args, kwargs, embed any
	var fields map[string]any
	_, isV2 := headers["task"]
	_, hasArgs := bodyDict["args"]
	switch {
	case isV2 && !(isDict && hasArgs):
		list, ok := body.([]any)
		if !ok || len(list) != 3 {
			return fail(fmt.Errorf("%w: body is not a 3-element array", ErrInvalidBody))
		}
		m.Version = 2
		args, kwargs, embed = list[0], list[1], list[2]
		fields = headers
	case isDict && (isV2 || bodyDict["task"] != nil):
		// hybrid (v2 headers) or v1 (no task header): Celery reads both
		// with hybrid_to_proto2 or proto1_to_proto2.
		m.Version = 1
		if isV2 {
			m.Version = 2
		}
		args, kwargs = bodyDict["args"], bodyDict["kwargs"]
		embed = map[string]any{
			"callbacks": bodyDict["callbacks"],
			"errbacks":  bodyDict["errbacks"],
			"chord":     bodyDict["chord"],
		}
		fields = v1Fields(bodyDict, headers)
	case isV2:
		return fail(fmt.Errorf("%w: body is a dict without args", ErrInvalidBody))
	default:
		return fail(fmt.Errorf("%w: no task header and no v1 task dict body", ErrUnknownFormat))
	}

	if err := m.readBody(args, kwargs, embed); err != nil {
		return fail(err)
	}
	if err := m.readHeaders(fields); err != nil {
		return fail(err)
	}
	if m.Version == 1 && m.ArgsRepr == "" && m.KwargsRepr == "" {
		// proto1_to_proto2 sets them from saferepr of the (list) args.
		m.ArgsRepr, m.KwargsRepr = PythonRepr(m.Args), PythonRepr(m.Kwargs)
	}
	m.CorrelationID = env.CorrelationID
	m.ReplyTo = env.ReplyTo
	m.Priority = env.Priority
	return m, nil
}

// decodeBody checks the content type, decompresses and parses the body.
func decodeBody(env Envelope, compression any) (any, error) {
	contentType, _, _ := strings.Cut(env.ContentType, ";")
	switch strings.ToLower(strings.TrimSpace(contentType)) {
	case "", "application/json":
	default:
		return nil, fmt.Errorf("%w: %q", ErrContentDisallowed, env.ContentType)
	}
	switch strings.ToLower(env.ContentEncoding) {
	case "", "utf-8", "utf8", "binary":
	default:
		return nil, fmt.Errorf("%w: content encoding %q", ErrContentDisallowed, env.ContentEncoding)
	}
	raw := env.Body
	switch compression {
	case nil, "":
	case compressionZlib, compressionBzip2:
		var err error
		if raw, err = decompress(compression.(string), raw); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("%w: compression %v", ErrContentDisallowed, compression)
	}
	body, err := UnmarshalJSON(raw)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidBody, unprefixed(err))
	}
	return body, nil
}

func decompress(kind string, data []byte) ([]byte, error) {
	var r io.Reader
	if kind == compressionBzip2 {
		r = bzip2.NewReader(bytes.NewReader(data))
	} else {
		zr, err := zlib.NewReader(bytes.NewReader(data))
		if err != nil {
			return nil, fmt.Errorf("%w: zlib: %v", ErrInvalidBody, err)
		}
		defer zr.Close()
		r = zr
	}
	out, err := io.ReadAll(io.LimitReader(r, maxBodySize+1))
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrInvalidBody, kind, err)
	}
	if len(out) > maxBodySize {
		return nil, fmt.Errorf("%w: decompressed body larger than %d bytes", ErrInvalidBody, maxBodySize)
	}
	return out, nil
}

// v1Fields returns the header-like fields of a v1 or hybrid body dict,
// overridden by the message headers (hybrid_to_proto2).
func v1Fields(body, headers map[string]any) map[string]any {
	fields := map[string]any{}
	for _, k := range []string{
		"lang", "task", "id", "root_id", "parent_id", "group", "group_index",
		"meth", "shadow", "eta", "expires", "retries", "timelimit", "argsrepr",
		"kwargsrepr", "origin", "ignore_result",
	} {
		if v, ok := body[k]; ok {
			fields[k] = v
		}
	}
	// "taskset" is v1's name for the group (proto1_to_proto2).
	if ts, ok := body["taskset"]; ok && ts != nil {
		fields["group"] = ts
	}
	for k, v := range headers {
		fields[k] = v
	}
	return fields
}

// readBody reads args, kwargs and the embed dict.
func (m *Message) readBody(args, kwargs, embed any) error {
	var ok bool
	switch args := args.(type) {
	case nil:
		m.Args = []any{}
	case []any:
		m.Args = args
	default:
		return fmt.Errorf("%w: args is %s, not a list", ErrInvalidBody, typeName(args))
	}
	switch kwargs := kwargs.(type) {
	case nil:
		m.Kwargs = map[string]any{}
	case map[string]any:
		m.Kwargs = kwargs
	default:
		return fmt.Errorf("%w: kwargs is %s, not a dict", ErrInvalidBody, typeName(kwargs))
	}
	if embed == nil {
		return nil // Python tolerates a null embed
	}
	e, ok := embed.(map[string]any)
	if !ok {
		return fmt.Errorf("%w: embed is %s, not a dict", ErrInvalidBody, typeName(embed))
	}
	var err error
	if m.Callbacks, err = ParseSignatures(e["callbacks"]); err != nil {
		return fmt.Errorf("%w: callbacks: %v", ErrInvalidBody, unprefixed(err))
	}
	if m.Errbacks, err = ParseSignatures(e["errbacks"]); err != nil {
		return fmt.Errorf("%w: errbacks: %v", ErrInvalidBody, unprefixed(err))
	}
	if m.Chain, err = ParseSignatures(e["chain"]); err != nil {
		return fmt.Errorf("%w: chain: %v", ErrInvalidBody, unprefixed(err))
	}
	if c := e["chord"]; c != nil {
		chord, err := ParseSignature(c)
		if err != nil {
			return fmt.Errorf("%w: chord: %v", ErrInvalidBody, unprefixed(err))
		}
		m.Chord = &chord
	}
	return nil
}

// readHeaders reads the protocol v2 headers (or the equivalent v1 fields).
func (m *Message) readHeaders(h map[string]any) error {
	for k, v := range h {
		var err error
		switch k {
		case "lang":
			m.Lang, err = stringField(k, v)
		case "task":
			m.Task, err = nameField(k, v)
		case "id":
			m.ID, err = idField(k, v)
		case "shadow":
			m.Shadow, err = nameField(k, v)
		case "group":
			m.Group, err = idField(k, v)
		case "root_id":
			m.RootID, err = idField(k, v)
		case "parent_id":
			m.ParentID, err = idField(k, v)
		case "argsrepr":
			m.ArgsRepr, err = stringField(k, v)
		case "kwargsrepr":
			m.KwargsRepr, err = stringField(k, v)
		case "origin":
			m.Origin, err = stringField(k, v)
		case "eta":
			if v != nil {
				m.ETA, err = timeField(k, v)
			}
		case "expires":
			if v != nil {
				m.Expires, err = timeField(k, v)
			}
		case "group_index":
			if v != nil {
				m.GroupIndex, err = intPointerField(k, v)
			}
		case "retries":
			if v != nil {
				m.Retries, err = intField(k, v)
			}
		case "replaced_task_nesting":
			if v != nil {
				m.ReplacedTaskNesting, err = intField(k, v)
			}
		case "stamped_headers":
			if v != nil {
				m.StampedHeaders, err = stringListField(k, v)
			}
		case "stamps":
			if v != nil {
				var ok bool
				if m.Stamps, ok = v.(map[string]any); !ok {
					err = fieldTypeError(k, "a dict", v)
				}
			} else {
				m.Stamps = map[string]any{}
			}
		case "ignore_result":
			if v != nil {
				var ok bool
				if m.IgnoreResult, ok = v.(bool); !ok {
					err = fieldTypeError(k, "a bool", v)
				}
			}
		case "timelimit":
			m.TimeLimit, err = readTimeLimit(v)
		case "compression":
			// consumed by decodeBody
		case "meth":
			if v != nil { // reserved by Celery, unused; keep it if set
				m.setExtraHeader(k, v)
			}
		default:
			m.setExtraHeader(k, v)
		}
		if err != nil {
			return fmt.Errorf("%w: %v", ErrBadHeader, err)
		}
	}
	if m.Task == "" {
		return fmt.Errorf("%w: empty task name", ErrBadHeader)
	}
	if m.ID == "" {
		return fmt.Errorf("%w: missing task id", ErrBadHeader)
	}
	return nil
}

func (m *Message) setExtraHeader(k string, v any) {
	if m.ExtraHeaders == nil {
		m.ExtraHeaders = map[string]any{}
	}
	m.ExtraHeaders[k] = v
}

func intField(name string, v any) (int, error) {
	p, err := intPointerField(name, v)
	if err != nil {
		return 0, err
	}
	return *p, nil
}

// readTimeLimit reads the [hard, soft] seconds pair; either may be null.
func readTimeLimit(v any) (TimeLimit, error) {
	if v == nil {
		return TimeLimit{}, nil
	}
	pair, ok := v.([]any)
	if !ok || len(pair) != 2 {
		return TimeLimit{}, errors.New(`"timelimit" is not a [hard, soft] pair`)
	}
	var limits [2]time.Duration
	for i, x := range pair {
		if x == nil {
			continue
		}
		s, ok := floatValue(x)
		if !ok || math.IsNaN(s) || s < 0 || s > maxTimeLimit {
			return TimeLimit{}, fmt.Errorf(`"timelimit" value %v is not a number of seconds in [0, %g]`, x, float64(maxTimeLimit))
		}
		// Microseconds, like Python's timedelta; this also makes the value
		// survive a float round trip exactly.
		limits[i] = time.Duration(math.Round(s*1e6)) * time.Microsecond
	}
	return TimeLimit{Hard: limits[0], Soft: limits[1]}, nil
}

// stringListField reads a list of strings; a bare string is a list of one,
// as Celery's maybe_list reads it.
func stringListField(name string, v any) ([]string, error) {
	switch v := v.(type) {
	case string:
		return []string{v}, nil
	case []any:
		out := make([]string, len(v))
		for i, x := range v {
			s, ok := x.(string)
			if !ok {
				return nil, fieldTypeError(name, "a list of strings", v)
			}
			out[i] = s
		}
		return out, nil
	}
	return nil, fieldTypeError(name, "a list of strings", v)
}
