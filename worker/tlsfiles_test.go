package worker_test

import (
	"strings"
	"testing"

	"github.com/vhg/vhg-worker/worker"
)

func TestTLSFromURL(t *testing.T) {
	t.Parallel()
	defaults := worker.TLSFiles{CA: "/flag/ca.pem"}
	for _, c := range []struct {
		name, url string
		want      worker.TLSFiles
		wantURL   string
		wantErr   string
	}{
		{"no query", "amqps://u:p@h:5671//", defaults, "amqps://u:p@h:5671//", ""},
		{"celery options", "rediss://:pw@h:6380/0?ssl_cert_reqs=CERT_REQUIRED&ssl_ca_certs=/c/ca.pem&ssl_certfile=/c/cl.pem&ssl_keyfile=/c/cl.key",
			worker.TLSFiles{CA: "/c/ca.pem", Cert: "/c/cl.pem", Key: "/c/cl.key"}, "rediss://:pw@h:6380/0", ""},
		{"redis-py spelling", "rediss://h/0?ssl_cert_reqs=none", worker.TLSFiles{CA: "/flag/ca.pem", SkipVerify: true}, "rediss://h/0", ""},
		{"server name, other options kept", "amqps://h//?heartbeat=10&ssl_server_hostname=rabbit.example",
			worker.TLSFiles{CA: "/flag/ca.pem", ServerName: "rabbit.example"}, "amqps://h//?heartbeat=10", ""},
		{"bad cert_reqs", "rediss://h/0?ssl_cert_reqs=maybe", defaults, "", "ssl_cert_reqs"},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, gotURL, err := worker.TLSFromURL(c.url, defaults)
			if c.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), c.wantErr) {
					t.Fatalf("err %v, want one naming %s", err, c.wantErr)
				}
				return
			}
			if err != nil || got != c.want || gotURL != c.wantURL {
				t.Errorf("got %+v %q %v, want %+v %q", got, gotURL, err, c.want, c.wantURL)
			}
		})
	}
}
