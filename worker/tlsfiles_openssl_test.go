//go:build integration

package worker_test

import (
	"strings"
	"testing"

	"github.com/vhg/vhg-worker/worker"
	"github.com/vhg/vhg-worker/worker/tlstest"
)

// Certificates made by openssl (tlstest): an integration test.

func TestTLSFilesConfig(t *testing.T) {
	t.Parallel()
	f := tlstest.Make(t, t.TempDir())
	c, err := worker.TLSFiles{CA: f.CA, Cert: f.ClientCert, Key: f.ClientKey, ServerName: "x"}.Config()
	if err != nil || c.RootCAs == nil || len(c.Certificates) != 1 || c.ServerName != "x" || c.InsecureSkipVerify {
		t.Fatalf("config %+v, %v", c, err)
	}
	for _, c := range []struct {
		files worker.TLSFiles
		want  string
	}{
		{worker.TLSFiles{CA: "/nonexistent/ca.pem"}, "/nonexistent/ca.pem"},
		{worker.TLSFiles{CA: f.ClientKey}, "no PEM certificate"},
		{worker.TLSFiles{Cert: f.ClientCert}, "both"},
	} {
		if _, err := c.files.Config(); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: err %v, want one saying %q", c.files, err, c.want)
		}
	}
}
