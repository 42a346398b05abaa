package context

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
)

// Keys of the workflow context, as the Python tasks name them.
const (
	KeyURL          = "url"           // where download_file fetches the original
	KeyFolderOut    = "folder_out"    // the output directory of this workflow
	KeyID           = "id"            // the workflow id (a uuid4 hex)
	KeyOriginalFile = "original_file" // the downloaded original
	KeyTrackWidth   = "track_width"   // width of the original's video track
	KeyTrackHeight  = "track_height"  // height of the original's video track
	KeyTargetWidth  = "target_width"  // width of one rendition
	KeyTargetHeight = "target_height" // height of one rendition
	KeyBitrate      = "bitrate"       // video bitrate of one rendition, in kbit/s
	KeySegtime      = "segtime"       // HLS and DASH segment length, in seconds
)

// ErrMissingKey is matched (with errors.Is) by a *KeyError for a key that is
// absent or null.
var ErrMissingKey = errors.New("context: missing key")

// KeyError reports a key that is missing or holds a value of the wrong type.
type KeyError struct {
	Key  string
	Want string // what the accessor needed, e.g. "an integer"
	Got  any    // the value found; nil when the key is missing or null
}

func (e *KeyError) Error() string {
	if e.Got == nil {
		return fmt.Sprintf("context: missing key %q", e.Key)
	}
	switch e.Got.(type) {
	case string, bool, int, int64, float64, json.Number:
		return fmt.Sprintf("context: key %q: want %s, got %T %#v", e.Key, e.Want, e.Got, e.Got)
	}
	// Maps and lists can be large: name the type only.
	return fmt.Sprintf("context: key %q: want %s, got %T", e.Key, e.Want, e.Got)
}

// Is makes errors.Is(err, ErrMissingKey) true for a missing key.
func (e *KeyError) Is(target error) bool {
	return target == ErrMissingKey && e.Got == nil
}

// Context is the workflow dict that travels between tasks as JSON.
type Context map[string]any

// FromValue turns a task argument into a Context. It accepts what a JSON
// decoder produces for a dict (map[string]any) and a Context; the map is
// used as is, not copied.
func FromValue(v any) (Context, error) {
	switch m := v.(type) {
	case Context:
		if m == nil {
			return nil, fmt.Errorf("context: argument is a nil dict")
		}
		return m, nil
	case map[string]any:
		if m == nil {
			return nil, fmt.Errorf("context: argument is a nil dict")
		}
		return Context(m), nil
	}
	return nil, fmt.Errorf("context: argument is %T, not a dict", v)
}

// Clone returns a deep copy: nested dicts and lists are copied too, so the
// branches of a chord can each change their own context.
func (c Context) Clone() Context {
	if c == nil {
		return nil
	}
	return Context(cloneValue(map[string]any(c)).(map[string]any))
}

// cloneValue copies the containers a JSON decoder produces; any other value
// (numbers, strings, bools) is immutable and returned as is.
func cloneValue(v any) any {
	switch v := v.(type) {
	case map[string]any:
		m := make(map[string]any, len(v))
		for k, e := range v {
			m[k] = cloneValue(e)
		}
		return m
	case Context:
		return Context(cloneValue(map[string]any(v)).(map[string]any))
	case []any:
		s := make([]any, len(v))
		for i, e := range v {
			s[i] = cloneValue(e)
		}
		return s
	}
	return v
}

// String returns the string under key. A JSON null counts as missing.
func (c Context) String(key string) (string, error) {
	v := c[key]
	if v == nil {
		return "", &KeyError{Key: key, Want: "a string"}
	}
	s, ok := v.(string)
	if !ok {
		return "", &KeyError{Key: key, Want: "a string", Got: v}
	}
	return s, nil
}

// Int returns the integer under key. It accepts every Go integer type, a
// float64 with no fractional part (JSON decoders without UseNumber) and a
// json.Number holding an integral value. A JSON null counts as missing.
func (c Context) Int(key string) (int, error) {
	v := c[key]
	if v == nil {
		return 0, &KeyError{Key: key, Want: "an integer"}
	}
	n, ok := toInt(v)
	if !ok {
		return 0, &KeyError{Key: key, Want: "an integer", Got: v}
	}
	return n, nil
}

// toInt converts v to an int when it holds an integral value that fits.
func toInt(v any) (int, bool) {
	switch n := v.(type) {
	case int:
		return n, true
	case int8:
		return int(n), true
	case int16:
		return int(n), true
	case int32:
		return int(n), true
	case int64:
		return int(n), n >= math.MinInt && n <= math.MaxInt
	case uint:
		return int(n), n <= math.MaxInt
	case uint8:
		return int(n), true
	case uint16:
		return int(n), true
	case uint32:
		return int(n), uint64(n) <= math.MaxInt
	case uint64:
		return int(n), n <= math.MaxInt
	case float32:
		return toInt(float64(n))
	case float64:
		// 2^63 is exactly representable, so the upper bound is exclusive.
		if n != math.Trunc(n) || n < math.MinInt || n >= math.MaxInt {
			return 0, false
		}
		return int(n), true
	case json.Number:
		if i, err := n.Int64(); err == nil {
			return toInt(i)
		}
		if f, err := n.Float64(); err == nil {
			return toInt(f)
		}
	}
	return 0, false
}

// nonEmptyString is String for keys that make no sense empty.
func (c Context) nonEmptyString(key string) (string, error) {
	s, err := c.String(key)
	if err != nil {
		return "", err
	}
	if s == "" {
		return "", &KeyError{Key: key, Want: "a non-empty string", Got: s}
	}
	return s, nil
}

// positiveInt is Int for sizes, bitrates and durations.
func (c Context) positiveInt(key string) (int, error) {
	n, err := c.Int(key)
	if err != nil {
		return 0, err
	}
	if n <= 0 {
		return 0, &KeyError{Key: key, Want: "a positive integer", Got: c[key]}
	}
	return n, nil
}

// URL returns url, the address download_file fetches.
func (c Context) URL() (string, error) { return c.nonEmptyString(KeyURL) }

// FolderOut returns folder_out, the output directory of this workflow.
func (c Context) FolderOut() (string, error) { return c.nonEmptyString(KeyFolderOut) }

// ID returns id, the workflow id.
func (c Context) ID() (string, error) { return c.nonEmptyString(KeyID) }

// OriginalFile returns original_file, the path of the downloaded original.
func (c Context) OriginalFile() (string, error) { return c.nonEmptyString(KeyOriginalFile) }

// TrackSize returns track_width and track_height, the size of the original's
// video track. Both must be positive.
func (c Context) TrackSize() (width, height int, err error) {
	if width, err = c.positiveInt(KeyTrackWidth); err != nil {
		return 0, 0, err
	}
	if height, err = c.positiveInt(KeyTrackHeight); err != nil {
		return 0, 0, err
	}
	return width, height, nil
}

// TargetSize returns target_width and target_height, the size of one
// rendition. Both must be positive.
func (c Context) TargetSize() (width, height int, err error) {
	if width, err = c.positiveInt(KeyTargetWidth); err != nil {
		return 0, 0, err
	}
	if height, err = c.positiveInt(KeyTargetHeight); err != nil {
		return 0, 0, err
	}
	return width, height, nil
}

// Bitrate returns bitrate, the video bitrate of one rendition in kbit/s.
func (c Context) Bitrate() (int, error) { return c.positiveInt(KeyBitrate) }

// Segtime returns segtime, the segment length in seconds.
func (c Context) Segtime() (int, error) { return c.positiveInt(KeySegtime) }
