package protocol

import (
	"fmt"
	"math"
	"time"
	"unicode"
	"unicode/utf8"
)

// Limits on what a task message may carry. Decode rejects a message that
// exceeds one with ErrBadHeader, before any of it is used: these values
// end up in log lines, metric labels, result keys, queue names and AMQP
// properties, where a hostile one could do harm.
//
// Celery has no such checks: py-amqp keeps a header string that is not
// UTF-8 as bytes, so a task name like that is not found, and Celery
// rejects the message and stores NotRegistered under the id. Here any
// such header is a DecodeError, stored as FAILURE under the id whenever
// the id itself passes (DecodeError.TaskID).
const (
	// MaxNameLen caps a task name (the task and shadow headers, and the
	// v1 body's task), in bytes. Celery names are dotted Python paths;
	// 255 is AMQP's short-string limit.
	MaxNameLen = 255
	// MaxIDLen caps every id (id, root_id, parent_id, group) and the
	// correlation_id and reply_to properties, in bytes. Ids travel back as
	// AMQP short strings (correlation_id, the legacy amqp backend's queue
	// names), which hold at most 255 bytes.
	MaxIDLen = 255
	// MaxHeaderStringLen caps any other string or byte string in the
	// headers, at any depth (argsrepr, kwargsrepr, origin, stamps, custom
	// headers), in bytes. Celery cuts argsrepr and kwargsrepr at 1024.
	MaxHeaderStringLen = 64 << 10
	// MaxHeaderKeyLen caps a header name, as AMQP's short string does.
	MaxHeaderKeyLen = 255
	// MaxHeadersSize caps the headers as a whole: the sum of the lengths
	// of every key and string, plus 8 bytes for every other value. Over
	// AMQP the header frame must fit RabbitMQ's frame_max (128 KiB by
	// default); other transports have no such bound.
	MaxHeadersSize = 1 << 20
)

// Checks shared by names and ids: text a log line, a metric label or a
// result key can carry as is.
func checkText(what string, s string, max int) error {
	if len(s) > max {
		return fmt.Errorf("%s is %d bytes long, more than %d", what, len(s), max)
	}
	if !utf8.ValidString(s) {
		return fmt.Errorf("%s %s is not valid UTF-8", what, quoteShort(s))
	}
	for _, r := range s {
		if unicode.IsControl(r) {
			return fmt.Errorf("%s %s holds a control character", what, quoteShort(s))
		}
	}
	return nil
}

// quoteShort quotes s for an error message, cut to 64 bytes, so that a
// hostile value is shown escaped and bounded.
func quoteShort(s string) string {
	if len(s) > 64 {
		return fmt.Sprintf("%q...", s[:64])
	}
	return fmt.Sprintf("%q", s)
}

// nameField reads a task name header: a string (or null) within MaxNameLen.
func nameField(name string, v any) (string, error) {
	s, err := stringField(name, v)
	if err != nil {
		return "", err
	}
	if err := checkText(fmt.Sprintf("%q", name), s, MaxNameLen); err != nil {
		return "", err
	}
	return s, nil
}

// idField reads an id header: a string (or null) within MaxIDLen.
func idField(name string, v any) (string, error) {
	s, err := stringField(name, v)
	if err != nil {
		return "", err
	}
	if err := checkText(fmt.Sprintf("%q", name), s, MaxIDLen); err != nil {
		return "", err
	}
	return s, nil
}

// usableName returns v when it is a task name Decode would accept, else "".
func usableName(v any) string {
	s, _ := v.(string)
	if checkText("", s, MaxNameLen) != nil {
		return ""
	}
	return s
}

// usableID returns v when it is an id Decode would accept, else "".
func usableID(v any) string {
	s, _ := v.(string)
	if checkText("", s, MaxIDLen) != nil {
		return ""
	}
	return s
}

// errHeadersTooLarge is wrapped when MaxHeadersSize is exceeded.
var errHeadersTooLarge = fmt.Errorf("headers larger than %d bytes", MaxHeadersSize)

// checkHeaders checks the (normalized) header table: keys and strings
// valid UTF-8 and within their caps at any depth, numbers finite or
// integral, the whole within MaxHeadersSize. Types of the headers Celery
// defines are checked when they are read (readHeaders).
func checkHeaders(h map[string]any) error {
	size := 0
	for k, v := range h {
		if err := checkKey(k); err != nil {
			return err
		}
		size += len(k)
		if err := checkValue(fmt.Sprintf("header %q", k), v, &size); err != nil {
			return err
		}
	}
	return nil
}

func checkKey(k string) error {
	if len(k) > MaxHeaderKeyLen {
		return fmt.Errorf("header name %s is %d bytes long, more than %d", quoteShort(k), len(k), MaxHeaderKeyLen)
	}
	if !utf8.ValidString(k) {
		return fmt.Errorf("header name %s is not valid UTF-8", quoteShort(k))
	}
	return nil
}

// checkValue checks one header value and adds its size to *size.
func checkValue(what string, v any, size *int) error {
	add := func(n int) error {
		*size += n
		if *size > MaxHeadersSize {
			return errHeadersTooLarge
		}
		return nil
	}
	switch v := v.(type) {
	case string:
		if len(v) > MaxHeaderStringLen {
			return fmt.Errorf("%s is %d bytes long, more than %d", what, len(v), MaxHeaderStringLen)
		}
		if !utf8.ValidString(v) {
			return fmt.Errorf("%s %s is not valid UTF-8", what, quoteShort(v))
		}
		return add(len(v))
	case []byte:
		if len(v) > MaxHeaderStringLen {
			return fmt.Errorf("%s is %d bytes long, more than %d", what, len(v), MaxHeaderStringLen)
		}
		return add(len(v))
	case float64:
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return fmt.Errorf("%s is %v", what, v)
		}
		return add(8)
	case map[string]any:
		for k, x := range v {
			if err := checkKey(k); err != nil {
				return fmt.Errorf("%s: %w", what, err)
			}
			if err := add(len(k)); err != nil {
				return err
			}
			if err := checkValue(what, x, size); err != nil {
				return err
			}
		}
		return add(8)
	case []any:
		for _, x := range v {
			if err := checkValue(what, x, size); err != nil {
				return err
			}
		}
		return add(8)
	case nil, bool, int64, time.Time:
		return add(8)
	}
	// normalizeValue leaves other types as they are (decimal values,
	// unknown table types): kept in ExtraHeaders, counted as a number.
	return add(8)
}

// checkProperties checks the AMQP properties Decode returns or uses.
func checkProperties(env Envelope) error {
	for _, p := range []struct {
		name  string
		value string
	}{
		{"correlation_id", env.CorrelationID},
		{"reply_to", env.ReplyTo},
	} {
		if err := checkText("property "+p.name, p.value, MaxIDLen); err != nil {
			return err
		}
	}
	for _, p := range []struct {
		name  string
		value string
	}{
		{"content_type", env.ContentType},
		{"content_encoding", env.ContentEncoding},
		{"expiration", env.Expiration},
	} {
		if err := checkText("property "+p.name, p.value, MaxNameLen); err != nil {
			return err
		}
	}
	return nil
}

// usableProperty returns s when it passes checkProperties' test for ids.
func usableProperty(s string) string {
	if checkText("", s, MaxIDLen) != nil {
		return ""
	}
	return s
}
