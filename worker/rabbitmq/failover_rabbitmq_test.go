//go:build integration

package rabbitmq_test

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vhg/vhg-worker/protocol"
	"github.com/vhg/vhg-worker/worker"
	"github.com/vhg/vhg-worker/worker/rabbitmq"
	"github.com/vhg/vhg-worker/worker/tlstest"
)

// These need the system RabbitMQ (the proxies lead to it) or openssl.

// proxy forwards TCP connections to RabbitMQ; cut closes them and, while
// down, refuses new ones: a node lost as seen from the client.
type proxy struct {
	ln    net.Listener
	to    string
	down  atomic.Bool
	mu    sync.Mutex
	conns []net.Conn
}

func newProxy(t *testing.T) *proxy {
	t.Helper()
	u, err := url.Parse(amqpURL())
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{ln: ln, to: u.Host}
	t.Cleanup(func() { ln.Close(); p.cut() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			if p.down.Load() {
				c.Close()
				continue
			}
			up, err := net.Dial("tcp", p.to)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, c, up)
			p.mu.Unlock()
			go func() { io.Copy(up, c); up.Close() }()
			go func() { io.Copy(c, up); c.Close() }()
		}
	}()
	return p
}

// url is the broker URL through the proxy.
func (p *proxy) url(t *testing.T) string {
	u, _ := url.Parse(amqpURL())
	u.Host = p.ln.Addr().String()
	return u.String()
}

func (p *proxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

// TestFailoverRoundRobin gives the broker two URLs (two proxies to the same
// RabbitMQ): it starts on the first; when that one is lost it consumes and
// publishes through the second; when the second is lost, through the
// first again. Node says where it is.
func TestFailoverRoundRobin(t *testing.T) {
	t.Parallel()
	a, b := newProxy(t), newProxy(t)
	var back atomic.Int32
	br, err := rabbitmq.Dial(rabbitmq.Config{URL: a.url(t) + ";" + b.url(t), ConnectionName: uniqueName(t, "failover"),
		MaxBackoff: time.Second, OnReconnect: func() { back.Add(1) }})
	if err != nil {
		unreachable(t, err)
	}
	t.Cleanup(func() { br.Close() })
	if br.NodeAddr() != a.ln.Addr().String() {
		t.Fatalf("connected to %s, want the first URL %s", br.NodeAddr(), a.ln.Addr())
	}
	queue := uniqueName(t, "q")
	deleteQueue(t, queue)
	ctx := testContext(t)
	deliveries, err := br.Consume(ctx, []string{queue}, 4)
	if err != nil {
		t.Fatal(err)
	}
	roundTrip := func(id string) {
		t.Helper()
		env, _ := protocol.Encode(&protocol.Message{ID: id, Task: "t"})
		if err := br.Publish(ctx, worker.QueueRoute(queue), env); err != nil {
			t.Fatalf("publish %s: %v", id, err)
		}
		for {
			select {
			case d, ok := <-deliveries:
				if !ok {
					t.Fatal("deliveries closed")
				}
				if d.Envelope().Headers["id"] != id {
					d.Ack()
					continue // a redelivery from before the cut
				}
				if err := d.Ack(); err != nil {
					t.Fatalf("ack %s: %v", id, err)
				}
				return
			case <-ctx.Done():
				t.Fatalf("%s not delivered", id)
			}
		}
	}
	roundTrip("on-a")
	for i, step := range []struct {
		lost, next *proxy
	}{{a, b}, {b, a}} {
		step.lost.down.Store(true)
		step.lost.cut()
		for back.Load() != int32(i+1) {
			time.Sleep(20 * time.Millisecond)
		}
		step.lost.down.Store(false)
		if br.NodeAddr() != step.next.ln.Addr().String() {
			t.Fatalf("after losing %s: on %s, want %s", step.lost.ln.Addr(), br.NodeAddr(), step.next.ln.Addr())
		}
		roundTrip("after-loss-" + step.lost.ln.Addr().String())
		if !strings.Contains(br.Node(), step.next.ln.Addr().String()) || strings.Contains(br.Node(), ":guest@") {
			t.Errorf("Node() = %q", br.Node())
		}
	}
}

// TestDialTLSChecks dials a TLS listener whose certificate the test's CA
// signs for localhost and 127.0.0.1: a wrong CA and a wrong name are
// start-up errors that say so. (The AMQP handshake after TLS is tested
// against RabbitMQ's TLS listener by the cluster tests.)
func TestDialTLSChecks(t *testing.T) {
	t.Parallel()
	f := tlstest.Make(t, t.TempDir())
	cert, err := tls.LoadX509KeyPair(f.ServerCert, f.ServerKey)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { c.(*tls.Conn).Handshake(); c.Close() }()
		}
	}()
	addr := ln.Addr().String()
	for _, c := range []struct {
		name, url string
		tls       worker.TLSFiles
		want      string
	}{
		{"other CA", "amqps://guest:secret@" + addr + "//", worker.TLSFiles{CA: f.OtherCA}, "not signed by a trusted CA"},
		{"other CA in the URL", "amqps://guest:secret@" + addr + "//?ssl_ca_certs=" + f.OtherCA, worker.TLSFiles{CA: f.CA}, "not signed by a trusted CA"},
		{"wrong name", "amqps://guest:secret@" + addr + "//", worker.TLSFiles{CA: f.CA, ServerName: "rabbit.example"}, "not valid for this host name"},
		{"missing CA file", "amqps://guest:secret@" + addr + "//", worker.TLSFiles{CA: "/nonexistent/ca.pem"}, "/nonexistent/ca.pem"},
		{"ssl options on amqp://", "amqp://guest:secret@" + addr + "//?ssl_ca_certs=" + f.CA, worker.TLSFiles{}, "need an amqps:// URL"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := rabbitmq.Dial(rabbitmq.Config{URL: c.url, TLS: c.tls})
			if err == nil || !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "secret") {
				t.Errorf("err %v, want one saying %q without the password", err, c.want)
			}
		})
	}
	// The right CA passes the certificate check: what fails then is the
	// AMQP handshake this listener does not speak.
	_, err = rabbitmq.Dial(rabbitmq.Config{URL: "amqps://guest:secret@" + addr + "//", TLS: worker.TLSFiles{CA: f.CA}})
	var cve *tls.CertificateVerificationError
	if err == nil || errors.As(err, &cve) || strings.Contains(err.Error(), "TLS:") {
		t.Errorf("with the right CA: %v, want a non-TLS error", err)
	}
}

// TestDialSkipsDeadFirstURL: at start-up a list whose first node is down
// connects to the next one, as Celery does.
func TestDialSkipsDeadFirstURL(t *testing.T) {
	t.Parallel()
	p := newProxy(t)
	br, err := rabbitmq.Dial(rabbitmq.Config{URL: "amqp://guest:secret@" + closedPort(t) + "//;" + p.url(t), ConnectionName: uniqueName(t, "first-down")})
	if err != nil {
		unreachable(t, err)
	}
	defer br.Close()
	if br.NodeAddr() != p.ln.Addr().String() {
		t.Errorf("connected to %s, want the second URL %s", br.NodeAddr(), p.ln.Addr())
	}
	info := br.Info()
	if alt, _ := info["alternates"].([]any); len(alt) != 1 || strings.Contains(fmt.Sprint(alt), "secret") {
		t.Errorf("Info alternates = %v, want the other URL without its password", info["alternates"])
	}
}
