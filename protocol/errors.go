package protocol

import (
	"errors"
	"strings"
)

// Sentinel errors. Decode wraps them in a *DecodeError; test with errors.Is.
var (
	// ErrContentDisallowed means the content type is not JSON (pickle, yaml,
	// msgpack, ...). Python rejects such a message without requeue.
	ErrContentDisallowed = errors.New("protocol: content type not allowed")
	// ErrInvalidBody means the body is not a valid task body: not JSON, not
	// a 3-element [args, kwargs, embed] array, or args/kwargs of the wrong
	// type.
	ErrInvalidBody = errors.New("protocol: invalid body")
	// ErrUnknownFormat means the message is neither protocol v2 (a "task"
	// header) nor v1 (a dict body with "task").
	ErrUnknownFormat = errors.New("protocol: unknown message format")
	// ErrBadHeader means a header (or v1 body field) or a property has the
	// wrong type, an unparsable value, such as an eta that is not an ISO
	// 8601 time, a string that is not valid UTF-8, or a value beyond the
	// limits (MaxNameLen, MaxIDLen, MaxHeaderStringLen, MaxHeadersSize).
	ErrBadHeader = errors.New("protocol: bad header")
)

// DecodeError is returned by Decode. It carries whatever task id and name
// could be read from the message, so the worker can store a FAILURE for the
// task even when the rest of the message is unusable.
//
// TaskID and Task are set only when they pass Decode's checks (valid UTF-8,
// within MaxIDLen and MaxNameLen, no control characters), and likewise the
// CorrelationID and ReplyTo properties: a FAILURE can be stored under them
// as they are.
type DecodeError struct {
	TaskID        string // "" if unknown or unusable
	Task          string // "" if unknown or unusable
	CorrelationID string // "" if absent or unusable
	ReplyTo       string // "" if absent or unusable
	Err           error
}

// Error reads "protocol: decode task <name>[<id>]: <err>".
func (e *DecodeError) Error() string {
	return "protocol: decode task " + e.Task + "[" + e.TaskID + "]: " +
		strings.TrimPrefix(e.Err.Error(), "protocol: ")
}

// Unwrap returns the underlying error.
func (e *DecodeError) Unwrap() error { return e.Err }
