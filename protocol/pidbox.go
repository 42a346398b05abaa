package protocol

import (
	"errors"
	"fmt"
	"math"
	"time"
)

// Remote control ("pidbox", kombu/pidbox.py) exchanges: requests are
// broadcast on a fanout exchange, replies go to a direct one.
const (
	ControlExchange      = "celery.pidbox"
	ControlReplyExchange = "reply.celery.pidbox"
)

// ControlQueue is a node's mailbox queue, bound to ControlExchange:
// "celery@host.celery.pidbox".
func ControlQueue(node string) string { return node + ".celery.pidbox" }

// ControlRequest is one remote control command, as `celery inspect`,
// `celery control` and Flower broadcast it.
type ControlRequest struct {
	Method    string
	Arguments map[string]any // never nil after ParseControlRequest
	// Destination lists the node names the request is for; empty means
	// every node (unless Pattern is set).
	Destination []string
	// Pattern and Matcher select nodes by name when Destination is empty:
	// Matcher "glob" (fnmatch) or "pcre" (a regular expression matched at
	// the start of the name).
	Pattern string
	Matcher string
	// Ticket identifies the request in replies; ReplyTo is nil when no
	// reply is wanted (a cast).
	Ticket  string
	ReplyTo *ControlReplyTo
	// Clock is the sender's Lamport clock (header "clock"); Expires the
	// time after which the request must be dropped (header "expires"; zero
	// means never).
	Clock   uint64
	Expires time.Time
}

// ControlReplyTo is where a reply goes: an exchange (normally
// ControlReplyExchange) and the requesting client's routing key.
type ControlReplyTo struct {
	Exchange   string
	RoutingKey string
}

// Expired reports whether the request's expiry time has passed at now.
func (r ControlRequest) Expired(now time.Time) bool {
	return !r.Expires.IsZero() && now.After(r.Expires)
}

// ParseControlRequest reads a request from its AMQP headers and JSON body:
//
//	{"method": "ping", "arguments": {}, "destination": null, "pattern": null,
//	 "matcher": null, "ticket": "<uuid>",
//	 "reply_to": {"exchange": "reply.celery.pidbox", "routing_key": "<oid>"}}
func ParseControlRequest(headers map[string]any, body []byte) (ControlRequest, error) {
	var r ControlRequest
	v, err := UnmarshalJSON(body)
	if err != nil {
		return r, fmt.Errorf("protocol: control request: %w", err)
	}
	m, ok := v.(map[string]any)
	if !ok {
		return r, errors.New("protocol: control request: body is not an object")
	}
	if r.Method, ok = m["method"].(string); !ok || r.Method == "" {
		return r, errors.New("protocol: control request: no method")
	}
	switch args := m["arguments"].(type) {
	case map[string]any:
		r.Arguments = args
	case nil:
		r.Arguments = map[string]any{}
	default:
		return r, fmt.Errorf("protocol: control request %s: arguments is a %T, not an object", r.Method, args)
	}
	switch dest := m["destination"].(type) {
	case nil:
	case string:
		r.Destination = []string{dest}
	case []any:
		for _, d := range dest {
			name, ok := d.(string)
			if !ok {
				return r, fmt.Errorf("protocol: control request %s: destination holds a %T", r.Method, d)
			}
			r.Destination = append(r.Destination, name)
		}
	default:
		return r, fmt.Errorf("protocol: control request %s: destination is a %T", r.Method, dest)
	}
	r.Pattern, _ = m["pattern"].(string)
	r.Matcher, _ = m["matcher"].(string)
	r.Ticket, _ = m["ticket"].(string)
	if rt, ok := m["reply_to"].(map[string]any); ok {
		exchange, _ := rt["exchange"].(string)
		key, _ := rt["routing_key"].(string)
		r.ReplyTo = &ControlReplyTo{Exchange: exchange, RoutingKey: key}
	}
	if n, ok := intValue(headers["clock"]); ok && n > 0 {
		r.Clock = uint64(n)
	}
	if f, ok := floatValue(headers["expires"]); ok && f > 0 && !math.IsInf(f, 0) {
		r.Expires = fromUnixSeconds(f)
	} else if n, ok := intValue(headers["expires"]); ok && n > 0 {
		r.Expires = time.Unix(n, 0)
	}
	return r, nil
}

// JSON encodes the request body as kombu's Mailbox publishes it.
func (r ControlRequest) JSON() ([]byte, error) {
	var dest any
	if r.Destination != nil {
		list := make([]any, len(r.Destination))
		for i, d := range r.Destination {
			list[i] = d
		}
		dest = list
	}
	args := r.Arguments
	if args == nil {
		args = map[string]any{}
	}
	keys := []string{"method", "arguments", "destination", "pattern", "matcher"}
	values := []any{r.Method, args, dest, nullIfEmpty(r.Pattern), nullIfEmpty(r.Matcher)}
	if r.ReplyTo != nil {
		keys = append(keys, "ticket", "reply_to")
		values = append(values, r.Ticket, map[string]any{"exchange": r.ReplyTo.Exchange, "routing_key": r.ReplyTo.RoutingKey})
	}
	enc := jsonEncoder{}
	if err := enc.encodeOrdered(keys, values); err != nil {
		return nil, err
	}
	return enc.buf.Bytes(), nil
}

// ControlReplyJSON encodes a node's reply: {"<node>": result}.
func ControlReplyJSON(node string, result any) ([]byte, error) {
	b, err := MarshalJSON(map[string]any{node: result})
	if err != nil {
		return nil, fmt.Errorf("protocol: control reply: %w", err)
	}
	return b, nil
}
