package protocol

import (
	"reflect"
	"strings"
	"testing"
	"time"
)

// TestControlRequestFromCapture reads the mingle hello a Python 5.2.6
// worker broadcast at start-up, and writes it back byte for byte.
func TestControlRequestFromCapture(t *testing.T) {
	t.Parallel()
	var line *traceLine
	for _, l := range readTrace(t) {
		if l.exchange == ControlExchange {
			line = &l
			break
		}
	}
	if line == nil {
		t.Fatal("no pidbox request in the capture")
	}
	headers := line.properties["headers"].(map[string]any)
	req, err := ParseControlRequest(headers, []byte(line.body))
	if err != nil {
		t.Fatal(err)
	}
	want := ControlRequest{
		Method:    "hello",
		Arguments: map[string]any{"from_node": "celery@vm", "revoked": map[string]any{}},
		Ticket:    "b052c025-3a4c-40b5-b5aa-5ad8849dfb7f",
		ReplyTo:   &ControlReplyTo{Exchange: ControlReplyExchange, RoutingKey: "8cb2bb31-1d21-3794-a845-f51b0526acef"},
		Clock:     1,
		Expires:   req.Expires,
	}
	if !reflect.DeepEqual(req, want) {
		t.Errorf("parsed %+v\nwant   %+v", req, want)
	}
	if !req.Expires.Equal(time.Unix(1795782177, 139273000)) {
		t.Errorf("expires %v", req.Expires)
	}
	body, err := req.JSON()
	if err != nil {
		t.Fatal(err)
	}
	if string(body) != line.body {
		t.Errorf("JSON():\n got  %s\n want %s", body, line.body)
	}
}

func TestParseControlRequest(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name    string
		headers map[string]any
		body    string
		want    ControlRequest
		err     string
	}{
		{name: "cast without reply (E13 revoke)",
			headers: map[string]any{"clock": int64(1), "expires": 1795782429.17},
			body:    `{"method":"revoke","arguments":{"task_id":"ee31","terminate":false,"signal":"SIGTERM"},"destination":null,"pattern":null,"matcher":null}`,
			want: ControlRequest{Method: "revoke", Arguments: map[string]any{"task_id": "ee31", "terminate": false, "signal": "SIGTERM"},
				Clock: 1, Expires: time.Unix(1795782429, 170000000)}},
		{name: "destination and pattern",
			headers: map[string]any{"clock": int32(5), "expires": int8(0)},
			body:    `{"method":"ping","arguments":null,"destination":["a@h","b@h"],"pattern":"a*","matcher":"glob"}`,
			want: ControlRequest{Method: "ping", Arguments: map[string]any{}, Destination: []string{"a@h", "b@h"},
				Pattern: "a*", Matcher: "glob", Clock: 5}},
		{name: "destination as a string", body: `{"method":"ping","destination":"a@h"}`,
			want: ControlRequest{Method: "ping", Arguments: map[string]any{}, Destination: []string{"a@h"}}},
		{name: "not an object", body: `[1]`, err: "not an object"},
		{name: "no method", body: `{"arguments":{}}`, err: "no method"},
		{name: "bad arguments", body: `{"method":"ping","arguments":[1]}`, err: "arguments is a []interface {}"},
		{name: "bad destination", body: `{"method":"ping","destination":[1]}`, err: "destination holds a int64"},
		{name: "not JSON", body: `{`, err: "protocol: control request: protocol: json"},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			got, err := ParseControlRequest(c.headers, []byte(c.body))
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("error %v, want %q", err, c.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, c.want) {
				t.Errorf("got  %+v\nwant %+v", got, c.want)
			}
		})
	}
}

func TestControlRequestExpired(t *testing.T) {
	t.Parallel()
	now := time.Unix(1000, 0)
	for _, c := range []struct {
		expires time.Time
		want    bool
	}{
		{time.Time{}, false},
		{now.Add(time.Second), false},
		{now.Add(-time.Second), true},
	} {
		if got := (ControlRequest{Expires: c.expires}).Expired(now); got != c.want {
			t.Errorf("Expired with expires %v = %v, want %v", c.expires, got, c.want)
		}
	}
}

func TestControlReplyJSON(t *testing.T) {
	t.Parallel()
	got, err := ControlReplyJSON("w1@host", map[string]any{"ok": "pong"})
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"w1@host": {"ok": "pong"}}`; string(got) != want {
		t.Errorf("got %s, want %s", got, want)
	}
	if ControlQueue("w1@host") != "w1@host.celery.pidbox" {
		t.Errorf("ControlQueue = %s", ControlQueue("w1@host"))
	}
}
