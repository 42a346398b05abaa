//go:build integration

package redis_test

import (
	"context"
	"fmt"
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/vhg/vhg-worker/protocol"
	"github.com/vhg/vhg-worker/worker"
	"github.com/vhg/vhg-worker/worker/redis"
	"github.com/vhg/vhg-worker/worker/tlstest"
)

// startTLSRedis starts a private redis-server (Debian's is built with
// TLS) that listens only on a TLS port of 127.0.0.1 and requires a client
// certificate signed by the test's CA. It is stopped at cleanup.
func startTLSRedis(t *testing.T, f tlstest.Files) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_, port, _ := net.SplitHostPort(addr)
	ln.Close()
	dir := t.TempDir()
	cmd := exec.Command("redis-server", "--port", "0", "--tls-port", port, "--bind", "127.0.0.1",
		"--tls-cert-file", f.ServerCert, "--tls-key-file", f.ServerKey, "--tls-ca-cert-file", f.CA,
		"--tls-auth-clients", "yes", "--save", "", "--appendonly", "no", "--dir", dir)
	var log strings.Builder
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Start(); err != nil {
		t.Fatalf("redis-server: %v (run make setup)", err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-done
		if t.Failed() {
			t.Logf("redis-server log:\n%s", log.String())
		}
	})
	for {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			return addr
		}
		select {
		case <-done:
			t.Fatalf("redis-server with TLS did not start:\n%s", log.String())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// TestRedissCertificates stores a result over rediss:// with Celery's URL
// options (CA, client certificate and key), and shows that a wrong CA, a
// wrong server name and a missing client certificate are start-up errors.
func TestRedissCertificates(t *testing.T) {
	t.Parallel()
	f := tlstest.Make(t, t.TempDir())
	addr := startTLSRedis(t, f)
	ctx := context.Background()
	query := fmt.Sprintf("ssl_cert_reqs=CERT_REQUIRED&ssl_ca_certs=%s&ssl_certfile=%s&ssl_keyfile=%s", f.CA, f.ClientCert, f.ClientKey)
	b, err := redis.New(ctx, redis.Config{URL: "rediss://" + addr + "/0?" + query})
	if err != nil {
		t.Fatalf("rediss:// with the right CA and client certificate: %v", err)
	}
	defer b.Close()
	meta := protocol.ResultMeta{TaskID: worker.NewTaskID(), Status: protocol.StateSuccess, Result: 42}
	if err := b.Store(ctx, meta, worker.ReplyRoute{}); err != nil {
		t.Fatal(err)
	}
	got, err := b.Result(ctx, meta.TaskID)
	if err != nil || got.Status != protocol.StateSuccess {
		t.Fatalf("result read back over TLS: %+v %v", got, err)
	}
	// The same through Config.TLS (the worker's --result-backend-ssl-* flags).
	b2, err := redis.New(ctx, redis.Config{URL: "rediss://localhost:" + addr[strings.LastIndex(addr, ":")+1:] + "/0",
		TLS: worker.TLSFiles{CA: f.CA, Cert: f.ClientCert, Key: f.ClientKey}})
	if err != nil {
		t.Fatalf("rediss:// by host name with Config.TLS: %v", err)
	}
	b2.Close()
	for _, c := range []struct{ name, url, want string }{
		{"other CA", fmt.Sprintf("rediss://%s/0?ssl_ca_certs=%s&ssl_certfile=%s&ssl_keyfile=%s", addr, f.OtherCA, f.ClientCert, f.ClientKey), "unknown authority"},
		{"wrong name", fmt.Sprintf("rediss://%s/0?ssl_server_hostname=redis.example&%s", addr, query), "redis.example"},
		{"no client certificate", fmt.Sprintf("rediss://%s/0?ssl_ca_certs=%s", addr, f.CA), "connect to"},
		{"ssl options on redis://", fmt.Sprintf("redis://%s/0?%s", addr, query), "need a rediss:// URL"},
	} {
		t.Run(c.name, func(t *testing.T) {
			b, err := redis.New(ctx, redis.Config{URL: c.url, RetryFor: -1})
			if err == nil {
				b.Close()
				t.Fatal("connected")
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("err %v, want one saying %q", err, c.want)
			}
		})
	}
}
