package protocol

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf16"
	"unicode/utf8"
)

// maxJSONDepth bounds how deeply arrays and objects may nest, in both
// directions, so that hostile input cannot exhaust the stack.
const maxJSONDepth = 512

// maxIntDigits is the longest integer literal Python (>= 3.11) converts;
// longer ones raise ValueError there, and are an error here too.
const maxIntDigits = 4300

// UnmarshalJSON decodes JSON as Python's json module and kombu read it.
//
// Objects become map[string]any and arrays []any. Integer literals become
// int64, or json.Number when they do not fit; every other number becomes
// float64, so 2 and 2.0 stay apart. The tokens NaN, Infinity and -Infinity
// are accepted. kombu (>= 5.3) {"__type__": T, "__value__": V} envelopes are
// decoded: datetime and date to time.Time (UTC), time to its string, uuid to
// its canonical string, decimal to json.Number, bytes and base64 to []byte;
// any other T is an error, as in kombu.
//
// The input must be valid UTF-8 with nothing after the value but white space.
func UnmarshalJSON(data []byte) (any, error) {
	if !utf8.Valid(data) {
		return nil, errors.New("protocol: json: invalid UTF-8")
	}
	d := jsonDecoder{data: data}
	d.skipSpace()
	v, err := d.value()
	if err != nil {
		return nil, err
	}
	d.skipSpace()
	if d.pos != len(d.data) {
		return nil, d.errorf("extra data after the value")
	}
	return v, nil
}

// jsonDecoder is a recursive-descent parser over one JSON document.
type jsonDecoder struct {
	data  []byte
	pos   int
	depth int
}

func (d *jsonDecoder) errorf(format string, args ...any) error {
	return fmt.Errorf("protocol: json: offset %d: %s", d.pos, fmt.Sprintf(format, args...))
}

func (d *jsonDecoder) skipSpace() {
	for d.pos < len(d.data) {
		switch d.data[d.pos] {
		case ' ', '\t', '\n', '\r':
			d.pos++
		default:
			return
		}
	}
}

// literal consumes word if the input continues with it.
func (d *jsonDecoder) literal(word string) bool {
	if bytes.HasPrefix(d.data[d.pos:], []byte(word)) {
		d.pos += len(word)
		return true
	}
	return false
}

func (d *jsonDecoder) value() (any, error) {
	if d.pos >= len(d.data) {
		return nil, d.errorf("unexpected end of input")
	}
	switch c := d.data[d.pos]; {
	case c == '{':
		return d.object()
	case c == '[':
		return d.array()
	case c == '"':
		return d.string()
	case d.literal("true"):
		return true, nil
	case d.literal("false"):
		return false, nil
	case d.literal("null"):
		return nil, nil
	case d.literal("NaN"):
		return math.NaN(), nil
	case d.literal("Infinity"):
		return math.Inf(1), nil
	case d.literal("-Infinity"):
		return math.Inf(-1), nil
	case c == '-' || (c >= '0' && c <= '9'):
		return d.number()
	default:
		return nil, d.errorf("unexpected character %q", c)
	}
}

func (d *jsonDecoder) enter() error {
	d.depth++
	if d.depth > maxJSONDepth {
		return d.errorf("nested deeper than %d", maxJSONDepth)
	}
	return nil
}

func (d *jsonDecoder) object() (any, error) {
	if err := d.enter(); err != nil {
		return nil, err
	}
	d.pos++ // '{'
	obj := map[string]any{}
	d.skipSpace()
	if d.pos < len(d.data) && d.data[d.pos] == '}' {
		d.pos++
		d.depth--
		return obj, nil
	}
	for {
		d.skipSpace()
		if d.pos >= len(d.data) || d.data[d.pos] != '"' {
			return nil, d.errorf("expected a string key")
		}
		key, err := d.string()
		if err != nil {
			return nil, err
		}
		d.skipSpace()
		if d.pos >= len(d.data) || d.data[d.pos] != ':' {
			return nil, d.errorf("expected ':'")
		}
		d.pos++
		d.skipSpace()
		v, err := d.value()
		if err != nil {
			return nil, err
		}
		obj[key] = v // like Python, a repeated key keeps the last value
		d.skipSpace()
		if d.pos >= len(d.data) {
			return nil, d.errorf("unexpected end of input in object")
		}
		if d.data[d.pos] == '}' {
			d.pos++
			break
		}
		if d.data[d.pos] != ',' {
			return nil, d.errorf("expected ',' or '}'")
		}
		d.pos++
	}
	d.depth--
	if len(obj) == 2 {
		if typ, ok := obj["__type__"]; ok {
			if v, ok := obj["__value__"]; ok {
				return decodeKombuType(typ, v)
			}
		}
	}
	return obj, nil
}

func (d *jsonDecoder) array() (any, error) {
	if err := d.enter(); err != nil {
		return nil, err
	}
	d.pos++ // '['
	arr := []any{}
	d.skipSpace()
	if d.pos < len(d.data) && d.data[d.pos] == ']' {
		d.pos++
		d.depth--
		return arr, nil
	}
	for {
		d.skipSpace()
		v, err := d.value()
		if err != nil {
			return nil, err
		}
		arr = append(arr, v)
		d.skipSpace()
		if d.pos >= len(d.data) {
			return nil, d.errorf("unexpected end of input in array")
		}
		if d.data[d.pos] == ']' {
			d.pos++
			break
		}
		if d.data[d.pos] != ',' {
			return nil, d.errorf("expected ',' or ']'")
		}
		d.pos++
	}
	d.depth--
	return arr, nil
}

// string reads a string literal. Control characters must be escaped (Python's
// strict mode). A lone UTF-16 surrogate, which Python keeps but Go strings
// cannot hold, becomes U+FFFD.
func (d *jsonDecoder) string() (string, error) {
	d.pos++ // '"'
	var sb strings.Builder
	for {
		start := d.pos
		for d.pos < len(d.data) && d.data[d.pos] != '"' && d.data[d.pos] != '\\' && d.data[d.pos] >= 0x20 {
			d.pos++
		}
		sb.Write(d.data[start:d.pos])
		if d.pos >= len(d.data) {
			return "", d.errorf("unterminated string")
		}
		switch c := d.data[d.pos]; {
		case c == '"':
			d.pos++
			return sb.String(), nil
		case c < 0x20:
			return "", d.errorf("control character %q in string", c)
		}
		// A backslash escape.
		d.pos++
		if d.pos >= len(d.data) {
			return "", d.errorf("unterminated string")
		}
		c := d.data[d.pos]
		d.pos++
		switch c {
		case '"', '\\', '/':
			sb.WriteByte(c)
		case 'b':
			sb.WriteByte('\b')
		case 'f':
			sb.WriteByte('\f')
		case 'n':
			sb.WriteByte('\n')
		case 'r':
			sb.WriteByte('\r')
		case 't':
			sb.WriteByte('\t')
		case 'u':
			r, err := d.hex4()
			if err != nil {
				return "", err
			}
			if utf16.IsSurrogate(r) {
				if r2, ok := d.lowSurrogate(); ok {
					r = utf16.DecodeRune(r, r2)
				}
			}
			sb.WriteRune(r) // WriteRune writes U+FFFD for a lone surrogate
		default:
			return "", d.errorf("invalid escape '\\%c'", c)
		}
	}
}

func (d *jsonDecoder) hex4() (rune, error) {
	if d.pos+4 > len(d.data) {
		return 0, d.errorf("truncated \\u escape")
	}
	v, err := strconv.ParseUint(string(d.data[d.pos:d.pos+4]), 16, 32)
	if err != nil {
		return 0, d.errorf("invalid \\u escape")
	}
	d.pos += 4
	return rune(v), nil
}

// lowSurrogate consumes a following \uDC00-\uDFFF escape, if there is one.
func (d *jsonDecoder) lowSurrogate() (rune, bool) {
	if d.pos+6 > len(d.data) || d.data[d.pos] != '\\' || d.data[d.pos+1] != 'u' {
		return 0, false
	}
	v, err := strconv.ParseUint(string(d.data[d.pos+2:d.pos+6]), 16, 32)
	if err != nil || v < 0xDC00 || v > 0xDFFF {
		return 0, false
	}
	d.pos += 6
	return rune(v), true
}

// number reads -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][-+]?[0-9]+)?, Python's
// number grammar.
func (d *jsonDecoder) number() (any, error) {
	start := d.pos
	d.literal("-")
	switch {
	case d.literal("0"):
	case d.pos < len(d.data) && d.data[d.pos] >= '1' && d.data[d.pos] <= '9':
		d.skipDigits()
	default:
		return nil, d.errorf("invalid number")
	}
	isFloat := false
	if d.pos+1 < len(d.data) && d.data[d.pos] == '.' && isDigit(d.data[d.pos+1]) {
		isFloat = true
		d.pos++
		d.skipDigits()
	}
	if d.pos < len(d.data) && (d.data[d.pos] == 'e' || d.data[d.pos] == 'E') {
		save := d.pos
		d.pos++
		if !d.literal("+") {
			d.literal("-")
		}
		if d.pos < len(d.data) && isDigit(d.data[d.pos]) {
			isFloat = true
			d.skipDigits()
		} else {
			d.pos = save // not an exponent after all; the caller will fail
		}
	}
	text := string(d.data[start:d.pos])
	if isFloat {
		f, err := strconv.ParseFloat(text, 64)
		if err != nil && !errors.Is(err, strconv.ErrRange) {
			return nil, d.errorf("invalid number %q", text)
		}
		return f, nil // out of range: ±Inf or 0, as Python's float()
	}
	if n, err := strconv.ParseInt(text, 10, 64); err == nil {
		return n, nil
	}
	if len(text) > maxIntDigits {
		return nil, d.errorf("integer literal longer than %d digits", maxIntDigits)
	}
	return json.Number(text), nil
}

func (d *jsonDecoder) skipDigits() {
	for d.pos < len(d.data) && isDigit(d.data[d.pos]) {
		d.pos++
	}
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// decodeKombuType turns a kombu {"__type__": typ, "__value__": v} envelope
// into a Go value.
func decodeKombuType(typ, v any) (any, error) {
	name, _ := typ.(string)
	text, isText := v.(string)
	switch {
	case name == "datetime" && isText, name == "date" && isText:
		t, err := parseISOTime(text)
		if err != nil {
			return nil, fmt.Errorf("protocol: json: kombu %s: %w", name, err)
		}
		return t, nil
	case name == "time" && isText:
		return text, nil
	case name == "uuid":
		if m, ok := v.(map[string]any); ok {
			text, isText = m["hex"].(string)
		}
		if !isText {
			return nil, errors.New("protocol: json: kombu uuid: value is not a hex string")
		}
		return canonicalUUID(text)
	case name == "decimal" && isText:
		return decodeDecimal(text)
	case name == "bytes" && isText:
		return []byte(text), nil
	case name == "base64" && isText:
		b, err := base64.StdEncoding.DecodeString(text)
		if err != nil {
			return nil, fmt.Errorf("protocol: json: kombu base64: %w", err)
		}
		return b, nil
	case name == "datetime", name == "date", name == "time", name == "decimal",
		name == "bytes", name == "base64":
		return nil, fmt.Errorf("protocol: json: kombu %s: value is %T, not a string", name, v)
	default:
		return nil, fmt.Errorf("protocol: json: unsupported kombu __type__ %v", typ)
	}
}

// canonicalUUID formats any form Python's uuid.UUID(hex) accepts as
// 8-4-4-4-12 lower-case hex.
func canonicalUUID(s string) (string, error) {
	h := strings.TrimPrefix(strings.TrimPrefix(s, "urn:"), "uuid:")
	h = strings.Trim(h, "{}")
	h = strings.ReplaceAll(h, "-", "")
	raw, err := hex.DecodeString(h)
	if err != nil || len(raw) != 16 {
		return "", fmt.Errorf("protocol: json: kombu uuid: bad hex %q", s)
	}
	h = hex.EncodeToString(raw)
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32], nil
}

// decodeDecimal turns a Python Decimal string into json.Number, or into a
// float64 for the special values json.Number cannot hold.
func decodeDecimal(s string) (any, error) {
	text := strings.TrimSpace(s)
	if v, err := UnmarshalJSON([]byte(text)); err == nil {
		switch v.(type) {
		case int64, json.Number:
			return json.Number(text), nil
		case float64:
			// A finite literal, or one too large for float64 (1e400), keeps
			// its digits; NaN and Infinity are handled below.
			if isDigit(text[0]) || (len(text) > 1 && text[0] == '-' && isDigit(text[1])) {
				return json.Number(text), nil
			}
		}
	}
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "nan", "snan", "-nan", "-snan", "+nan":
		return math.NaN(), nil
	case "inf", "infinity", "+inf", "+infinity":
		return math.Inf(1), nil
	case "-inf", "-infinity":
		return math.Inf(-1), nil
	}
	return nil, fmt.Errorf("protocol: json: kombu decimal: bad value %q", s)
}

// MarshalJSON encodes v as Python's json.dumps (through kombu 5.2) would
// encode the equivalent Python value: ", " and ": " separators, non-ASCII
// escaped, NaN and ±Infinity as bare tokens, floats always with a '.' or an
// exponent so they stay floats in Python (2.0, 1e+16).
//
// Supported: nil, bool, string, every int, uint and float type, json.Number
// (written verbatim), time.Time (isoformat string, as kombu 5.2 has no
// __type__ envelopes), []byte (a string when it is valid UTF-8, else a kombu
// base64 envelope), Signature, ExceptionInfo, ResultMeta, State, and maps with
// string keys (written with sorted keys), slices and arrays of any of these.
// A nil map or slice is written as null, as encoding/json does.
// Anything else (structs, json.Marshaler) goes through encoding/json.
func MarshalJSON(v any) ([]byte, error) {
	e := jsonEncoder{}
	if err := e.encode(v); err != nil {
		return nil, err
	}
	return e.buf.Bytes(), nil
}

// jsonEncoder writes one JSON document into buf.
type jsonEncoder struct {
	buf   bytes.Buffer
	depth int
}

func (e *jsonEncoder) encode(v any) error {
	switch v := v.(type) {
	case nil:
		e.buf.WriteString("null")
	case bool:
		e.buf.WriteString(strconv.FormatBool(v))
	case string:
		writeJSONString(&e.buf, v)
	case json.Number:
		if v == "" {
			e.buf.WriteString("0")
		} else {
			e.buf.WriteString(string(v))
		}
	case float64:
		e.buf.WriteString(formatJSONFloat(v))
	case float32:
		e.buf.WriteString(formatJSONFloat(float64(v)))
	case int64:
		e.buf.WriteString(strconv.FormatInt(v, 10))
	case int:
		e.buf.WriteString(strconv.Itoa(v))
	case time.Time:
		writeJSONString(&e.buf, formatISOTime(v))
	case []byte:
		if utf8.Valid(v) {
			writeJSONString(&e.buf, string(v))
		} else {
			e.buf.WriteString(`{"__type__": "base64", "__value__": "`)
			e.buf.WriteString(base64.StdEncoding.EncodeToString(v))
			e.buf.WriteString(`"}`)
		}
	case State:
		writeJSONString(&e.buf, string(v))
	case Signature:
		return e.encode(v.Map())
	case *Signature:
		if v == nil {
			e.buf.WriteString("null")
			return nil
		}
		return e.encode(v.Map())
	case ExceptionInfo:
		return e.encodeOrdered([]string{"exc_type", "exc_message", "exc_module"},
			[]any{v.Type, v.messageList(), v.Module})
	case ResultMeta:
		keys, values := v.fields()
		return e.encodeOrdered(keys, values)
	case map[string]any:
		if v == nil {
			e.buf.WriteString("null")
			return nil
		}
		return e.encodeMap(v)
	case []any:
		if v == nil {
			e.buf.WriteString("null")
			return nil
		}
		return e.encodeList(len(v), func(i int) any { return v[i] })
	case json.Marshaler:
		return e.encodeWithStdlib(v)
	default:
		return e.encodeReflect(v)
	}
	return nil
}

func (e *jsonEncoder) encodeMap(m map[string]any) error {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	values := make([]any, len(keys))
	for i, k := range keys {
		values[i] = m[k]
	}
	return e.encodeOrdered(keys, values)
}

// enter counts one more level of nesting. The limit is a little above
// UnmarshalJSON's, so that everything it decodes can be written back even
// when re-wrapped (a v1 message re-encoded as v2 nests its embed one level
// deeper); it also stops cycles.
func (e *jsonEncoder) enter() error {
	e.depth++
	if e.depth > maxJSONDepth+16 {
		return fmt.Errorf("protocol: json: value nested deeper than %d (a cycle?)", maxJSONDepth+16)
	}
	return nil
}

// encodeOrdered writes an object with the given keys in the given order.
func (e *jsonEncoder) encodeOrdered(keys []string, values []any) error {
	if err := e.enter(); err != nil {
		return err
	}
	defer func() { e.depth-- }()
	e.buf.WriteByte('{')
	for i, k := range keys {
		if i > 0 {
			e.buf.WriteString(", ")
		}
		writeJSONString(&e.buf, k)
		e.buf.WriteString(": ")
		if err := e.encode(values[i]); err != nil {
			return err
		}
	}
	e.buf.WriteByte('}')
	return nil
}

func (e *jsonEncoder) encodeList(n int, item func(int) any) error {
	if err := e.enter(); err != nil {
		return err
	}
	defer func() { e.depth-- }()
	e.buf.WriteByte('[')
	for i := range n {
		if i > 0 {
			e.buf.WriteString(", ")
		}
		if err := e.encode(item(i)); err != nil {
			return err
		}
	}
	e.buf.WriteByte(']')
	return nil
}

// encodeReflect handles named and composite types by their kind: other int
// and float types, maps with string keys, slices, arrays and pointers.
func (e *jsonEncoder) encodeReflect(v any) error {
	rv := reflect.ValueOf(v)
	switch rv.Kind() {
	case reflect.Bool:
		e.buf.WriteString(strconv.FormatBool(rv.Bool()))
	case reflect.String:
		writeJSONString(&e.buf, rv.String())
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		e.buf.WriteString(strconv.FormatInt(rv.Int(), 10))
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		e.buf.WriteString(strconv.FormatUint(rv.Uint(), 10))
	case reflect.Float32, reflect.Float64:
		e.buf.WriteString(formatJSONFloat(rv.Float()))
	case reflect.Pointer, reflect.Interface:
		if rv.IsNil() {
			e.buf.WriteString("null")
			return nil
		}
		return e.encode(rv.Elem().Interface())
	case reflect.Map:
		if rv.Type().Key().Kind() != reflect.String {
			return e.encodeWithStdlib(v)
		}
		if rv.IsNil() {
			e.buf.WriteString("null")
			return nil
		}
		m := make(map[string]any, rv.Len())
		for it := rv.MapRange(); it.Next(); {
			m[it.Key().String()] = it.Value().Interface()
		}
		return e.encodeMap(m)
	case reflect.Slice, reflect.Array:
		if rv.Kind() == reflect.Slice && rv.IsNil() {
			e.buf.WriteString("null")
			return nil
		}
		return e.encodeList(rv.Len(), func(i int) any { return rv.Index(i).Interface() })
	default:
		return e.encodeWithStdlib(v)
	}
	return nil
}

// encodeWithStdlib falls back to encoding/json, for structs with json tags
// and json.Marshaler implementations.
func (e *jsonEncoder) encodeWithStdlib(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("protocol: json: %w", err)
	}
	e.buf.Write(b)
	return nil
}

// writeJSONString writes s as a JSON string the way Python does with
// ensure_ascii: everything outside printable ASCII is \u-escaped, characters
// beyond the BMP as a surrogate pair. Invalid UTF-8 is written as U+FFFD.
func writeJSONString(buf *bytes.Buffer, s string) {
	const hexDigits = "0123456789abcdef"
	buf.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"':
			buf.WriteString(`\"`)
		case r == '\\':
			buf.WriteString(`\\`)
		case r == '\n':
			buf.WriteString(`\n`)
		case r == '\r':
			buf.WriteString(`\r`)
		case r == '\t':
			buf.WriteString(`\t`)
		case r == '\b':
			buf.WriteString(`\b`)
		case r == '\f':
			buf.WriteString(`\f`)
		case r >= 0x20 && r < 0x7f:
			buf.WriteByte(byte(r))
		default:
			units := []rune{r}
			if r > 0xFFFF {
				r1, r2 := utf16.EncodeRune(r)
				units = []rune{r1, r2}
			}
			for _, u := range units {
				buf.WriteString(`\u`)
				buf.WriteByte(hexDigits[u>>12&0xF])
				buf.WriteByte(hexDigits[u>>8&0xF])
				buf.WriteByte(hexDigits[u>>4&0xF])
				buf.WriteByte(hexDigits[u&0xF])
			}
		}
	}
	buf.WriteByte('"')
}

// formatJSONFloat writes f as Python's json module does: repr(f), with NaN,
// Infinity and -Infinity for the special values.
func formatJSONFloat(f float64) string {
	switch {
	case math.IsNaN(f):
		return "NaN"
	case math.IsInf(f, 1):
		return "Infinity"
	case math.IsInf(f, -1):
		return "-Infinity"
	}
	return formatPythonFloat(f)
}

// formatPythonFloat is Python's repr(float) for finite values: the shortest
// digits that round-trip, in positional notation when the decimal exponent
// is in [-4, 16), else as d.ddde+XX; always with a '.' or an exponent.
func formatPythonFloat(f float64) string {
	// 'e' with precision -1 gives the shortest digits: "-1.2345e+06".
	s := strconv.FormatFloat(f, 'e', -1, 64)
	mantissa, expText, _ := strings.Cut(s, "e")
	exp, _ := strconv.Atoi(expText)
	sign := ""
	if strings.HasPrefix(mantissa, "-") {
		sign, mantissa = "-", mantissa[1:]
	}
	digits := strings.Replace(mantissa, ".", "", 1)
	if exp < -4 || exp >= 16 {
		m := digits[:1]
		if len(digits) > 1 {
			m += "." + digits[1:]
		}
		expSign := "+"
		if exp < 0 {
			expSign, exp = "-", -exp
		}
		return fmt.Sprintf("%s%se%s%02d", sign, m, expSign, exp)
	}
	if exp < 0 {
		return sign + "0." + strings.Repeat("0", -exp-1) + digits
	}
	if len(digits) <= exp+1 {
		return sign + digits + strings.Repeat("0", exp+1-len(digits)) + ".0"
	}
	return sign + digits[:exp+1] + "." + digits[exp+1:]
}
