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
// # JSON
//
// Python's json module writes NaN and Infinity, and kombu (>= 5.3) wraps
// datetimes, UUIDs, decimals and bytes in {"__type__": ..., "__value__": ...}
// envelopes. UnmarshalJSON and MarshalJSON speak that dialect; integers decode
// as int64 and floats as float64, so 2 and 2.0 stay apart.
package protocol
