package protocol

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Limits of the argsrepr and kwargsrepr headers, as in Celery's
// app.amqp (argsrepr_maxsize, kwargsrepr_maxsize) and utils.saferepr.
const (
	reprMaxLen    = 1024
	reprMaxLevels = 3
)

// PythonRepr renders a decoded value as Celery's saferepr does for the
// argsrepr and kwargsrepr headers: None, True and False, 'single-quoted'
// strings, [lists] and {dicts} (with sorted keys, as Go maps have no order),
// containers nested deeper than 3 levels shown as [...], and the whole cut
// after about 1024 characters with ", ..." and the closing brackets.
//
// Like saferepr (and unlike repr), strings only get their single quotes
// escaped.
func PythonRepr(v any) string {
	w := reprWriter{budget: reprMaxLen}
	w.value(v)
	return w.sb.String()
}

// ArgsRepr renders task arguments as Python's saferepr of the args tuple:
// "()", "(2,)", "(2, 2)".
func ArgsRepr(args []any) string {
	w := reprWriter{budget: reprMaxLen}
	w.tuple(args)
	return w.sb.String()
}

// reprWriter is a port of celery.utils.saferepr's token stream: every token
// is cut to the characters left in budget, and once the budget is spent the
// next token becomes ", ..." followed by the closing brackets still pending.
type reprWriter struct {
	sb      strings.Builder
	budget  int
	level   int
	closers []string // closing brackets still to be written, outermost first
	stopped bool
}

// token writes render(budget) unless the budget is spent; it reports whether
// writing may go on.
func (w *reprWriter) token(render func(budget int) string) bool {
	if w.stopped {
		return false
	}
	if w.budget <= 0 {
		w.sb.WriteString(", ...")
		for i := len(w.closers) - 1; i >= 0; i-- {
			w.sb.WriteString(w.closers[i])
		}
		w.stopped = true
		return false
	}
	s := render(w.budget)
	w.sb.WriteString(s)
	w.budget -= utf8.RuneCountInString(s)
	return true
}

// literal writes punctuation, which saferepr never cuts.
func (w *reprWriter) literal(s string) bool {
	return w.token(func(int) string { return s })
}

// plain writes a scalar's text, cut like any saferepr token.
func (w *reprWriter) plain(s string) bool {
	return w.token(func(budget int) string { return truncateText(s, budget) })
}

func (w *reprWriter) quoted(s string) bool {
	return w.token(func(budget int) string { return quoteText(s, budget) })
}

func (w *reprWriter) value(v any) bool {
	switch v := v.(type) {
	case nil:
		return w.plain("None")
	case bool:
		if v {
			return w.plain("True")
		}
		return w.plain("False")
	case string:
		return w.quoted(v)
	case []byte:
		return w.token(func(budget int) string { return reprBytes(v, budget) })
	case int64:
		return w.plain(strconv.FormatInt(v, 10))
	case int:
		return w.plain(strconv.Itoa(v))
	case float64:
		return w.plain(reprFloat(v))
	case json.Number:
		return w.plain(string(v))
	case time.Time:
		return w.plain(reprDatetime(v))
	case []any:
		return w.container("[", "]", len(v), func(i int) bool { return w.value(v[i]) })
	case map[string]any:
		keys := make([]string, 0, len(v))
		for k := range v {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		return w.dict(keys, func(k string) any { return v[k] })
	case Signature:
		// A Python Signature is a dict with its keys in this order.
		m := v.Map()
		keys := []string{"task", "args", "kwargs", "options", "subtask_type", "immutable"}
		var extra []string
		for k := range m {
			if !slices.Contains(keys, k) {
				extra = append(extra, k)
			}
		}
		sort.Strings(extra)
		return w.dict(append(keys, extra...), func(k string) any { return m[k] })
	case State:
		return w.quoted(string(v))
	}
	rv := reflect.ValueOf(v)
	switch rv.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return w.plain(strconv.FormatInt(rv.Int(), 10))
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		return w.plain(strconv.FormatUint(rv.Uint(), 10))
	case reflect.Float32, reflect.Float64:
		return w.plain(reprFloat(rv.Float()))
	case reflect.String:
		return w.quoted(rv.String())
	case reflect.Slice, reflect.Array:
		return w.container("[", "]", rv.Len(), func(i int) bool { return w.value(rv.Index(i).Interface()) })
	}
	return w.plain(fmt.Sprint(v))
}

func (w *reprWriter) tuple(items []any) bool {
	closer := ")"
	if len(items) == 1 {
		closer = ",)"
	}
	return w.container("(", closer, len(items), func(i int) bool { return w.value(items[i]) })
}

func (w *reprWriter) dict(keys []string, value func(string) any) bool {
	return w.container("{", "}", len(keys), func(i int) bool {
		return w.quoted(keys[i]) && w.literal(": ") && w.value(value(keys[i]))
	})
}

// container writes open, the n items separated by ", ", and close; past
// reprMaxLevels it writes "[...]" instead, as saferepr does.
func (w *reprWriter) container(open, close string, n int, item func(i int) bool) bool {
	if w.level >= reprMaxLevels {
		return w.plain(open + "..." + close)
	}
	w.closers = append(w.closers, close)
	if !w.literal(open) {
		return false
	}
	w.level++
	for i := range n {
		if !item(i) {
			return false
		}
		if i < n-1 && !w.literal(", ") {
			return false
		}
	}
	// saferepr takes the closing bracket off its stream before it checks
	// the budget, so a cut right here loses this bracket; so do we.
	w.closers = w.closers[:len(w.closers)-1]
	w.level--
	return w.literal(close)
}

// truncateText is celery.utils.text.truncate: a text of maxlen characters
// or more is cut to maxlen, then back to its last space, and gets "...".
func truncateText(s string, maxlen int) string {
	if maxlen <= 0 || utf8.RuneCountInString(s) < maxlen {
		return s
	}
	runes := []rune(s)
	cut := string(runes[:maxlen])
	if i := strings.LastIndex(cut, " "); i >= 0 {
		cut = cut[:i]
	}
	return cut + "..."
}

// quoteText is saferepr's _format_chars for str.
func quoteText(s string, maxlen int) string {
	return "'" + strings.ReplaceAll(truncateText(s, maxlen), "'", `\'`) + "'"
}

// StrRepr is Python's repr() of a str, which exception reprs use
// (ValueError("could not convert string to float: 'x'")): unlike saferepr
// it picks " when the text holds ' and no ", and escapes control
// characters.
func StrRepr(s string) string {
	quote := byte('\'')
	if strings.Contains(s, "'") && !strings.Contains(s, `"`) {
		quote = '"'
	}
	var b strings.Builder
	b.WriteByte(quote)
	for _, r := range s {
		switch {
		case r == rune(quote) || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		case r == '\t':
			b.WriteString(`\t`)
		case r < 0x20 || r == 0x7f:
			fmt.Fprintf(&b, `\x%02x`, r)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte(quote)
	return b.String()
}

// reprBytes is saferepr's _format_binary_bytes: b'<utf-8 text or hex>'.
func reprBytes(b []byte, maxlen int) string {
	suffix := ""
	if maxlen > 0 && len(b) > maxlen {
		b, suffix = b[:maxlen], "..."
	}
	text := string(b)
	if !utf8.Valid(b) {
		text = hex.EncodeToString(b)
	}
	return "b'" + text + suffix + "'"
}

// reprFloat is Python's str(float).
func reprFloat(f float64) string {
	switch {
	case math.IsNaN(f):
		return "nan"
	case math.IsInf(f, 1):
		return "inf"
	case math.IsInf(f, -1):
		return "-inf"
	}
	return formatPythonFloat(f)
}

// reprDatetime is Python's repr of an aware datetime.
func reprDatetime(t time.Time) string {
	fields := []int{t.Year(), int(t.Month()), t.Day(), t.Hour(), t.Minute(), t.Second(), t.Nanosecond() / 1000}
	// Python drops a zero microsecond, then a zero second.
	for range 2 {
		if fields[len(fields)-1] == 0 {
			fields = fields[:len(fields)-1]
		}
	}
	parts := make([]string, len(fields))
	for i, f := range fields {
		parts[i] = strconv.Itoa(f)
	}
	tz := "datetime.timezone.utc"
	if _, offset := t.Zone(); offset != 0 {
		tz = fmt.Sprintf("datetime.timezone(datetime.timedelta(seconds=%d))", offset)
	}
	return "datetime.datetime(" + strings.Join(parts, ", ") + ", tzinfo=" + tz + ")"
}
