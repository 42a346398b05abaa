package protocol

import (
	"encoding/json"
	"errors"
	"math"
	"reflect"
	"strconv"
	"time"
)

// This file reads decoded values of whatever width they arrive in: AMQP
// headers carry int8..int64 and float32, JSON carries int64, float64 and
// json.Number.

// intValue returns v as an int64 if it is an integer of any Go type, or an
// integral json.Number that fits.
func intValue(v any) (int64, bool) {
	switch v := v.(type) {
	case int64:
		return v, true
	case int:
		return int64(v), true
	case int32:
		return int64(v), true
	case int16:
		return int64(v), true
	case int8:
		return int64(v), true
	case uint8:
		return int64(v), true
	case uint16:
		return int64(v), true
	case uint32:
		return int64(v), true
	case uint:
		if uint64(v) <= math.MaxInt64 {
			return int64(v), true
		}
	case uint64:
		if v <= math.MaxInt64 {
			return int64(v), true
		}
	case json.Number:
		n, err := strconv.ParseInt(string(v), 10, 64)
		return n, err == nil
	}
	return 0, false
}

// floatValue returns v as a float64 if it is any number.
func floatValue(v any) (float64, bool) {
	switch v := v.(type) {
	case float64:
		return v, true
	case float32:
		return float64(v), true
	case json.Number:
		f, err := strconv.ParseFloat(string(v), 64)
		return f, err == nil
	}
	if n, ok := intValue(v); ok {
		return float64(n), true
	}
	return 0, false
}

// pythonNumber writes seconds back as Python most likely sent them: an int
// when whole (countdown=10), else a float.
func pythonNumber(f float64) any {
	if f == math.Trunc(f) && math.Abs(f) < 1<<53 {
		return int64(f)
	}
	return f
}

// timeValue reads an ISO 8601 string or a time.Time (an AMQP timestamp).
func timeValue(v any) (time.Time, bool, error) {
	switch v := v.(type) {
	case string:
		t, err := parseISOTime(v)
		return t, true, err
	case time.Time:
		t := v.UTC().Truncate(time.Microsecond)
		if t.Year() < 1 || t.Year() > 9999 {
			return time.Time{}, true, errors.New("protocol: time out of range")
		}
		return t, true, nil
	}
	return time.Time{}, false, nil
}

// normalizeValue converts an AMQP header value into the types UnmarshalJSON
// produces: every integer to int64, float32 to float64, and named map and
// slice types (amqp091.Table, for one) to map[string]any and []any. Other
// values, such as time.Time and []byte, are kept.
func normalizeValue(v any, depth int) any {
	if depth > maxJSONDepth {
		return nil
	}
	if n, ok := intValue(v); ok {
		if _, isNumber := v.(json.Number); !isNumber {
			return n
		}
	}
	switch v := v.(type) {
	case nil, string, bool, float64, json.Number, time.Time, []byte:
		return v
	case float32:
		return float64(v)
	case map[string]any:
		out := make(map[string]any, len(v))
		for k, x := range v {
			out[k] = normalizeValue(x, depth+1)
		}
		return out
	case []any:
		out := make([]any, len(v))
		for i, x := range v {
			out[i] = normalizeValue(x, depth+1)
		}
		return out
	}
	rv := reflect.ValueOf(v)
	switch {
	case rv.Kind() == reflect.Map && rv.Type().Key().Kind() == reflect.String:
		out := make(map[string]any, rv.Len())
		for it := rv.MapRange(); it.Next(); {
			out[it.Key().String()] = normalizeValue(it.Value().Interface(), depth+1)
		}
		return out
	case rv.Kind() == reflect.Slice || rv.Kind() == reflect.Array:
		out := make([]any, rv.Len())
		for i := range out {
			out[i] = normalizeValue(rv.Index(i).Interface(), depth+1)
		}
		return out
	}
	return v
}

// cloneValue deep-copies maps, slices, byte slices and signatures.
func cloneValue(v any) any {
	switch v := v.(type) {
	case map[string]any:
		if v == nil {
			return v
		}
		out := make(map[string]any, len(v))
		for k, x := range v {
			out[k] = cloneValue(x)
		}
		return out
	case []any:
		if v == nil {
			return v
		}
		out := make([]any, len(v))
		for i, x := range v {
			out[i] = cloneValue(x)
		}
		return out
	case []byte:
		if v == nil {
			return v
		}
		return append([]byte{}, v...)
	case Signature:
		return v.Clone()
	case *Signature:
		if v == nil {
			return v
		}
		c := v.Clone()
		return &c
	}
	return v
}
