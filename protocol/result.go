package protocol

import (
	"errors"
	"fmt"
	"time"
)

// State is a Celery task state (celery/states.py). Any other string is a
// custom state set with update_state.
type State string

const (
	StatePending  State = "PENDING"
	StateReceived State = "RECEIVED"
	StateStarted  State = "STARTED"
	StateSuccess  State = "SUCCESS"
	StateFailure  State = "FAILURE"
	StateRetry    State = "RETRY"
	StateRevoked  State = "REVOKED"
)

// Ready reports whether s is final: SUCCESS, FAILURE or REVOKED.
func (s State) Ready() bool {
	return s == StateSuccess || s == StateFailure || s == StateRevoked
}

// ExceptionInfo is Celery's JSON encoding of a Python exception:
// {"exc_type": "ValueError", "exc_message": ["boom"], "exc_module": "builtins"}.
type ExceptionInfo struct {
	Type    string
	Message []any
	Module  string
}

// ResultMeta is what a result backend stores for one task (§4.4):
// status, result, traceback, children, date_done, group_id, parent_id, task_id.
type ResultMeta struct {
	TaskID string
	Status State
	// Result is the task's return value, the ExceptionInfo of a failure
	// (stored as its dict), or the meta of a custom state.
	Result    any
	Traceback string // "" is written as null
	// Children are result tuples as Celery writes them: [[id, parent|null], null]
	// for a task, [[gid, null], [children...]] for a group. nil is written
	// as null, which Python writes when it has no request; a worker storing
	// a task's state writes []any{} (Python's []) when there are none.
	Children []any
	DateDone time.Time // zero is written as null
	GroupID  string    // omitted when empty
	ParentID string    // omitted when empty
}

// Map returns the exception dict: {"exc_type", "exc_message", "exc_module"};
// a nil Message is written as [].
func (e ExceptionInfo) Map() map[string]any {
	return map[string]any{
		"exc_type":    e.Type,
		"exc_message": e.messageList(),
		"exc_module":  e.Module,
	}
}

func (e ExceptionInfo) messageList() []any {
	if e.Message == nil {
		return []any{}
	}
	return e.Message
}

// ParseExceptionInfo reads an exception dict. It accepts the Celery 4.0/4.1
// form where exc_message is a string (returned as a one-element Message).
// It reports false when v is not an exception dict (no string exc_type).
func ParseExceptionInfo(v any) (ExceptionInfo, bool) {
	switch v := v.(type) {
	case ExceptionInfo:
		return v, true
	case *ExceptionInfo:
		if v != nil {
			return *v, true
		}
		return ExceptionInfo{}, false
	}
	m, ok := v.(map[string]any)
	if !ok {
		return ExceptionInfo{}, false
	}
	typ, ok := m["exc_type"].(string)
	if !ok {
		return ExceptionInfo{}, false
	}
	e := ExceptionInfo{Type: typ}
	e.Module, _ = m["exc_module"].(string)
	switch msg := m["exc_message"].(type) {
	case []any:
		e.Message = msg
	case nil:
		e.Message = []any{}
	default:
		e.Message = []any{msg}
	}
	return e, true
}

// fields returns the full meta in Celery's key order (backends/base.py
// _get_result_meta, then task_id).
func (m ResultMeta) fields() ([]string, []any) {
	keys := []string{"status", "result", "traceback", "children", "date_done"}
	values := []any{string(m.Status), m.Result, nullIfEmpty(m.Traceback), m.Children, nil}
	if !m.DateDone.IsZero() {
		values[4] = formatISOTime(m.DateDone)
	}
	if m.GroupID != "" {
		keys, values = append(keys, "group_id"), append(values, m.GroupID)
	}
	if m.ParentID != "" {
		keys, values = append(keys, "parent_id"), append(values, m.ParentID)
	}
	return append(keys, "task_id"), append(values, m.TaskID)
}

// JSON returns the meta as the Redis (and any key-value) backend stores it:
// {"status", "result", "traceback", "children", "date_done", "group_id",
// "parent_id", "task_id"} in that order, group_id and parent_id only when
// set, date_done and traceback null when zero. An ExceptionInfo result is
// written as its dict.
func (m ResultMeta) JSON() ([]byte, error) {
	return MarshalJSON(m)
}

// MessageJSON returns the body the rpc:// (and old amqp://) backend
// publishes: {"task_id", "status", "result", "traceback", "children"}, in
// that order, with no date_done.
func (m ResultMeta) MessageJSON() ([]byte, error) {
	e := jsonEncoder{}
	err := e.encodeOrdered(
		[]string{"task_id", "status", "result", "traceback", "children"},
		[]any{m.TaskID, string(m.Status), m.Result, nullIfEmpty(m.Traceback), m.Children})
	if err != nil {
		return nil, err
	}
	return e.buf.Bytes(), nil
}

// ParseResultMeta reads either form (JSON or MessageJSON). For FAILURE,
// RETRY and REVOKED a well-formed exception dict becomes an ExceptionInfo;
// any other Result is kept as decoded (ParseExceptionInfo reads the rest).
// The extended-result keys (name, args, ...) are ignored.
func ParseResultMeta(data []byte) (ResultMeta, error) {
	v, err := UnmarshalJSON(data)
	if err != nil {
		return ResultMeta{}, err
	}
	obj, ok := v.(map[string]any)
	if !ok {
		return ResultMeta{}, fmt.Errorf("protocol: result meta is %s, not a dict", typeName(v))
	}
	var m ResultMeta
	var status string
	for _, f := range []struct {
		key string
		dst *string
	}{
		{"task_id", &m.TaskID}, {"status", &status}, {"traceback", &m.Traceback},
		{"group_id", &m.GroupID}, {"parent_id", &m.ParentID},
	} {
		if *f.dst, err = stringField(f.key, obj[f.key]); err != nil {
			return ResultMeta{}, fmt.Errorf("protocol: result meta: %w", err)
		}
	}
	if status == "" {
		return ResultMeta{}, errors.New("protocol: result meta has no status")
	}
	m.Status = State(status)
	m.Result = obj["result"]
	if m.Status == StateFailure || m.Status == StateRetry || m.Status == StateRevoked {
		// An exception dict becomes an ExceptionInfo, which JSON writes back
		// in Celery's key order; only when nothing would be lost.
		if e, ok := ParseExceptionInfo(m.Result); ok && len(m.Result.(map[string]any)) == 3 {
			if _, isList := m.Result.(map[string]any)["exc_message"].([]any); isList {
				m.Result = e
			}
		}
	}
	switch c := obj["children"].(type) {
	case nil:
	case []any:
		m.Children = c
	default:
		return ResultMeta{}, fmt.Errorf("protocol: result meta: %w", fieldTypeError("children", "a list", c))
	}
	if d := obj["date_done"]; d != nil {
		if m.DateDone, err = timeField("date_done", d); err != nil {
			return ResultMeta{}, fmt.Errorf("protocol: result meta: %w", err)
		}
	}
	return m, nil
}
