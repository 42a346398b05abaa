package protocol

import (
	"fmt"
	"strings"
	"time"
)

// Subtask types (Signature.SubtaskType).
const (
	SubtaskChain = "chain"
	SubtaskGroup = "group"
	SubtaskChord = "chord"
)

// Signature is Celery's signature dict (celery/canvas.py Signature):
//
//	{"task": ..., "args": [...], "kwargs": {...}, "options": {...},
//	 "subtask_type": null|"chain"|"group"|"chord", "immutable": bool}
//
// For SubtaskType chain and group the members are in Kwargs["tasks"]; for
// chord in Kwargs["header"] and Kwargs["body"]. Use ChainTasks, GroupTasks
// and ChordParts to read them as signatures.
type Signature struct {
	Task        string
	Args        []any
	Kwargs      map[string]any
	Options     Options
	SubtaskType string
	Immutable   bool
	// ChordSize is the top-level "chord_size" Celery 4.x/5.0 put on a chord
	// body; nil when absent.
	ChordSize *int
	// Extra holds unknown top-level keys so a signature round-trips intact.
	Extra map[string]any
}

// Options are a signature's apply_async options. Zero values mean "not set"
// and are not written. Unknown keys are kept in Extra and written back.
type Options struct {
	TaskID     string
	ReplyTo    string
	RootID     string
	ParentID   string
	GroupID    string
	GroupIndex *int
	Chord      *Signature
	Link       []Signature
	LinkError  []Signature
	// Chain is the remaining chain, reversed as in the message embed.
	// ChainSet distinguishes an explicit empty list ("chain": []) from absent.
	Chain    []Signature
	ChainSet bool

	Queue      string
	Exchange   string
	RoutingKey string
	Priority   *int

	Countdown *float64
	ETA       time.Time
	// Expires is either seconds from now (ExpiresIn) or an absolute time
	// (ExpiresAt), as apply_async accepts both.
	ExpiresIn     *float64
	ExpiresAt     time.Time
	TimeLimit     *float64
	SoftTimeLimit *float64
	Headers       map[string]any
	Shadow        string
	Immutable     *bool

	Extra map[string]any
}

// ParseSignature reads a signature dict (as decoded by UnmarshalJSON) or a
// Signature value. Missing or null keys take their zero value; unknown keys
// are kept in Extra. Option keys that are explicitly null (Celery writes
// "root_id": null, "priority": null) are kept in Options.Extra as nil so that
// Map writes them back.
func ParseSignature(v any) (Signature, error) {
	switch v := v.(type) {
	case Signature:
		return v, nil
	case *Signature:
		if v != nil {
			return *v, nil
		}
	case map[string]any:
		return parseSignatureMap(v)
	}
	return Signature{}, fmt.Errorf("protocol: signature is %s, not a dict", typeName(v))
}

// ParseSignatures reads null (nil), one signature dict, or a list of them.
// An empty list gives an empty, non-nil slice.
func ParseSignatures(v any) ([]Signature, error) {
	switch v := v.(type) {
	case nil:
		return nil, nil
	case []Signature:
		return append([]Signature{}, v...), nil
	case []any:
		sigs := make([]Signature, 0, len(v))
		for i, x := range v {
			s, err := ParseSignature(x)
			if err != nil {
				return nil, fmt.Errorf("protocol: signature list item %d: %w", i, unprefixed(err))
			}
			sigs = append(sigs, s)
		}
		return sigs, nil
	}
	s, err := ParseSignature(v)
	if err != nil {
		return nil, err
	}
	return []Signature{s}, nil
}

func parseSignatureMap(m map[string]any) (Signature, error) {
	var s Signature
	var err error
	for k, v := range m {
		switch k {
		case "task":
			s.Task, err = stringField(k, v)
		case "args":
			if v != nil {
				var ok bool
				if s.Args, ok = v.([]any); !ok {
					err = fieldTypeError(k, "a list", v)
				}
			}
		case "kwargs":
			if v != nil {
				var ok bool
				if s.Kwargs, ok = v.(map[string]any); !ok {
					err = fieldTypeError(k, "a dict", v)
				}
			}
		case "options":
			if v != nil {
				opts, ok := v.(map[string]any)
				if !ok {
					err = fieldTypeError(k, "a dict", v)
					break
				}
				s.Options, err = parseOptions(opts)
			}
		case "subtask_type":
			s.SubtaskType, err = stringField(k, v)
		case "immutable":
			if v != nil {
				var ok bool
				if s.Immutable, ok = v.(bool); !ok {
					err = fieldTypeError(k, "a bool", v)
				}
			}
		case "chord_size":
			if v == nil {
				s.setExtra(k, nil)
				break
			}
			s.ChordSize, err = intPointerField(k, v)
		default:
			s.setExtra(k, v)
		}
		if err != nil {
			return Signature{}, fmt.Errorf("protocol: signature %s: %w", s.Task, unprefixed(err))
		}
	}
	return s, nil
}

func (s *Signature) setExtra(k string, v any) {
	if s.Extra == nil {
		s.Extra = map[string]any{}
	}
	s.Extra[k] = v
}

func parseOptions(m map[string]any) (Options, error) {
	var o Options
	for k, v := range m {
		if v == nil {
			o.setExtra(k, nil) // explicit null: written back by Map
			continue
		}
		var err error
		switch k {
		case "task_id":
			o.TaskID, err = stringField(k, v)
		case "reply_to":
			o.ReplyTo, err = stringField(k, v)
		case "root_id":
			o.RootID, err = stringField(k, v)
		case "parent_id":
			o.ParentID, err = stringField(k, v)
		case "group_id":
			o.GroupID, err = stringField(k, v)
		case "group_index":
			o.GroupIndex, err = intPointerField(k, v)
		case "chord":
			var chord Signature
			chord, err = ParseSignature(v)
			o.Chord = &chord
		case "link":
			o.Link, err = ParseSignatures(v)
		case "link_error":
			o.LinkError, err = ParseSignatures(v)
		case "chain":
			if _, ok := v.([]any); !ok {
				err = fieldTypeError(k, "a list", v)
				break
			}
			o.Chain, err = ParseSignatures(v)
			o.ChainSet = true
		case "queue":
			o.Queue, err = stringField(k, v)
		case "exchange":
			o.Exchange, err = stringField(k, v)
		case "routing_key":
			o.RoutingKey, err = stringField(k, v)
		case "priority":
			o.Priority, err = intPointerField(k, v)
		case "countdown":
			o.Countdown, err = floatPointerField(k, v)
		case "eta":
			o.ETA, err = timeField(k, v)
		case "expires":
			if t, isTime, terr := timeValue(v); isTime {
				o.ExpiresAt, err = t, terr
			} else {
				o.ExpiresIn, err = floatPointerField(k, v)
			}
		case "time_limit":
			o.TimeLimit, err = floatPointerField(k, v)
		case "soft_time_limit":
			o.SoftTimeLimit, err = floatPointerField(k, v)
		case "headers":
			var ok bool
			if o.Headers, ok = v.(map[string]any); !ok {
				err = fieldTypeError(k, "a dict", v)
			}
		case "shadow":
			o.Shadow, err = stringField(k, v)
		case "immutable":
			b, ok := v.(bool)
			if !ok {
				err = fieldTypeError(k, "a bool", v)
			}
			o.Immutable = &b
		default:
			o.setExtra(k, v)
		}
		if err != nil {
			return Options{}, fmt.Errorf("protocol: option %w", unprefixed(err))
		}
	}
	return o, nil
}

// SetExtra sets an option Options has no field for (Celery 5.3+ stamps,
// replaced_task_nesting, ...); Map writes it back.
func (o *Options) SetExtra(k string, v any) { o.setExtra(k, v) }

func (o *Options) setExtra(k string, v any) {
	if o.Extra == nil {
		o.Extra = map[string]any{}
	}
	o.Extra[k] = v
}

// Map returns the signature dict, the inverse of ParseSignature: always the
// six keys task, args, kwargs, options, subtask_type and immutable (an empty
// Task or SubtaskType as null, nil Args as [], nil Kwargs as {}), then
// chord_size if set and the Extra keys.
func (s Signature) Map() map[string]any {
	m := make(map[string]any, 6+len(s.Extra))
	for k, v := range s.Extra {
		m[k] = v
	}
	m["task"] = nullIfEmpty(s.Task)
	m["args"] = s.Args
	if s.Args == nil {
		m["args"] = []any{}
	}
	m["kwargs"] = s.Kwargs
	if s.Kwargs == nil {
		m["kwargs"] = map[string]any{}
	}
	m["options"] = s.Options.Map()
	m["subtask_type"] = nullIfEmpty(s.SubtaskType)
	m["immutable"] = s.Immutable
	if s.ChordSize != nil {
		m["chord_size"] = int64(*s.ChordSize)
	}
	return m
}

// Map returns the options dict: the set fields and the Extra keys. Whole
// seconds (countdown, expires, time limits) are written as ints, ETA and
// ExpiresAt as ISO 8601 strings.
func (o Options) Map() map[string]any {
	m := make(map[string]any, len(o.Extra)+4)
	for k, v := range o.Extra {
		m[k] = v
	}
	setString := func(k, v string) {
		if v != "" {
			m[k] = v
		}
	}
	setInt := func(k string, v *int) {
		if v != nil {
			m[k] = int64(*v)
		}
	}
	setSeconds := func(k string, v *float64) {
		if v != nil {
			m[k] = pythonNumber(*v)
		}
	}
	setTime := func(k string, t time.Time) {
		if !t.IsZero() {
			m[k] = formatISOTime(t)
		}
	}
	setSignatures := func(k string, sigs []Signature) {
		if sigs != nil {
			m[k] = signatureMaps(sigs)
		}
	}
	setString("task_id", o.TaskID)
	setString("reply_to", o.ReplyTo)
	setString("root_id", o.RootID)
	setString("parent_id", o.ParentID)
	setString("group_id", o.GroupID)
	setInt("group_index", o.GroupIndex)
	if o.Chord != nil {
		m["chord"] = o.Chord.Map()
	}
	setSignatures("link", o.Link)
	setSignatures("link_error", o.LinkError)
	if o.ChainSet || o.Chain != nil {
		m["chain"] = signatureMaps(o.Chain)
	}
	setString("queue", o.Queue)
	setString("exchange", o.Exchange)
	setString("routing_key", o.RoutingKey)
	setInt("priority", o.Priority)
	setSeconds("countdown", o.Countdown)
	setTime("eta", o.ETA)
	setSeconds("expires", o.ExpiresIn)
	setTime("expires", o.ExpiresAt)
	setSeconds("time_limit", o.TimeLimit)
	setSeconds("soft_time_limit", o.SoftTimeLimit)
	if o.Headers != nil {
		m["headers"] = o.Headers
	}
	setString("shadow", o.Shadow)
	if o.Immutable != nil {
		m["immutable"] = *o.Immutable
	}
	return m
}

// signatureMaps returns the dicts of sigs as a list; nil gives an empty list.
func signatureMaps(sigs []Signature) []any {
	out := make([]any, len(sigs))
	for i, s := range sigs {
		out[i] = s.Map()
	}
	return out
}

// Clone returns a deep copy of s: args, kwargs, options and everything they
// hold.
func (s Signature) Clone() Signature {
	c := s
	if s.Args != nil {
		c.Args = cloneValue(s.Args).([]any)
	}
	if s.Kwargs != nil {
		c.Kwargs = cloneValue(s.Kwargs).(map[string]any)
	}
	if s.Extra != nil {
		c.Extra = cloneValue(s.Extra).(map[string]any)
	}
	c.ChordSize = clonePointer(s.ChordSize)
	c.Options = s.Options.Clone()
	return c
}

// Clone returns a deep copy of o.
func (o Options) Clone() Options {
	c := o
	c.GroupIndex = clonePointer(o.GroupIndex)
	c.Priority = clonePointer(o.Priority)
	c.Countdown = clonePointer(o.Countdown)
	c.ExpiresIn = clonePointer(o.ExpiresIn)
	c.TimeLimit = clonePointer(o.TimeLimit)
	c.SoftTimeLimit = clonePointer(o.SoftTimeLimit)
	c.Immutable = clonePointer(o.Immutable)
	if o.Chord != nil {
		chord := o.Chord.Clone()
		c.Chord = &chord
	}
	c.Link = cloneSignatures(o.Link)
	c.LinkError = cloneSignatures(o.LinkError)
	c.Chain = cloneSignatures(o.Chain)
	if o.Headers != nil {
		c.Headers = cloneValue(o.Headers).(map[string]any)
	}
	if o.Extra != nil {
		c.Extra = cloneValue(o.Extra).(map[string]any)
	}
	return c
}

func cloneSignatures(sigs []Signature) []Signature {
	if sigs == nil {
		return nil
	}
	out := make([]Signature, len(sigs))
	for i, s := range sigs {
		out[i] = s.Clone()
	}
	return out
}

func clonePointer[T any](p *T) *T {
	if p == nil {
		return nil
	}
	v := *p
	return &v
}

func nullIfEmpty(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// Field readers shared by signatures, options and headers. Their errors name
// the field: `"priority" is a string, want an int`.

func fieldTypeError(name, want string, v any) error {
	return fmt.Errorf("%q is %s, want %s", name, typeName(v), want)
}

func typeName(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case string:
		return "a string"
	case bool:
		return "a bool"
	case map[string]any:
		return "a dict"
	case []any:
		return "a list"
	}
	if _, ok := floatValue(v); ok {
		return "a number"
	}
	return fmt.Sprintf("a %T", v)
}

func stringField(name string, v any) (string, error) {
	switch v := v.(type) {
	case nil:
		return "", nil
	case string:
		return v, nil
	}
	return "", fieldTypeError(name, "a string", v)
}

func intPointerField(name string, v any) (*int, error) {
	n, ok := intValue(v)
	if !ok || n != int64(int(n)) {
		return nil, fieldTypeError(name, "an int", v)
	}
	i := int(n)
	return &i, nil
}

func floatPointerField(name string, v any) (*float64, error) {
	f, ok := floatValue(v)
	if !ok {
		return nil, fieldTypeError(name, "a number", v)
	}
	return &f, nil
}

func timeField(name string, v any) (time.Time, error) {
	t, ok, err := timeValue(v)
	if !ok {
		return time.Time{}, fieldTypeError(name, "an ISO 8601 string", v)
	}
	if err != nil {
		return time.Time{}, fmt.Errorf("%q: %w", name, unprefixed(err))
	}
	return t, nil
}

// unprefixed strips the "protocol: " prefix from an error that is wrapped
// into another protocol error, so that messages read
// "protocol: signature x: ..." and not "protocol: signature x: protocol: ...".
func unprefixed(err error) error {
	msg := err.Error()
	if !strings.HasPrefix(msg, "protocol: ") {
		return err
	}
	return prefixlessError{msg: strings.TrimPrefix(msg, "protocol: "), err: err}
}

// prefixlessError keeps the chain of an error (for errors.Is) while
// showing its message without the package prefix.
type prefixlessError struct {
	msg string
	err error
}

func (e prefixlessError) Error() string { return e.msg }
func (e prefixlessError) Unwrap() error { return e.err }
