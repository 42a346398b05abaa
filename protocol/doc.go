// Package protocol turns Celery task messages into Go values and back, with
// no I/O: protocol v2, v1 and hybrid task messages, kombu's JSON dialect,
// signatures, result meta and Celery's exception dicts.
//
// # Messages
//
// Decode takes an Envelope (what any broker adapter hands over) and returns a
// Message in v2 form; Encode writes a Message as a v2 JSON envelope, exactly
// as Python Celery 5.2 does.
//
// # Limits
//
// Decode checks every header and property before it uses any: strings must
// be valid UTF-8, task names and ids within MaxNameLen and MaxIDLen and
// free of control characters, other header strings within
// MaxHeaderStringLen, the table within MaxHeadersSize. A message that
// breaks one is a *DecodeError wrapping ErrBadHeader, which carries the
// task id only when the id itself passes.
//
// # JSON
//
// Python's json module writes NaN and Infinity, and kombu (>= 5.3) wraps
// datetimes, UUIDs, decimals and bytes in {"__type__": ..., "__value__": ...}
// envelopes. UnmarshalJSON and MarshalJSON speak that dialect; integers decode
// as int64 and floats as float64, so 2 and 2.0 stay apart.
package protocol
