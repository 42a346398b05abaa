package protocol

import "time"

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
	// for a task, [[gid, null], [children...]] for a group.
	Children []any
	DateDone time.Time // zero is written as null
	GroupID  string    // omitted when empty
	ParentID string    // omitted when empty
}
