package protocol

import "time"

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
