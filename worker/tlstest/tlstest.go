// Package tlstest makes the certificates of TLS tests with openssl: a CA,
// a server certificate it signs for localhost and 127.0.0.1, a client
// certificate, and a second, unrelated CA that must be refused.
package tlstest

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// Files are the PEM files Make writes.
type Files struct {
	CA, ServerCert, ServerKey, ClientCert, ClientKey string
	// OtherCA signs nothing here: a client that trusts only it refuses
	// the server.
	OtherCA string
}

// Make writes the certificates into dir (the caller's t.TempDir() or a
// directory the servers can read). A failing openssl fails the test.
func Make(t testing.TB, dir string) Files {
	t.Helper()
	p := func(name string) string { return filepath.Join(dir, name) }
	f := Files{CA: p("ca.pem"), ServerCert: p("server.pem"), ServerKey: p("server.key"),
		ClientCert: p("client.pem"), ClientKey: p("client.key"), OtherCA: p("other-ca.pem")}
	ext := p("server.ext")
	if err := os.WriteFile(ext, []byte("subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	clientExt := p("client.ext")
	if err := os.WriteFile(clientExt, []byte("extendedKeyUsage=clientAuth\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	run := func(args ...string) {
		t.Helper()
		cmd := exec.Command("openssl", args...)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("openssl %v: %v\n%s", args, err, out)
		}
	}
	for _, ca := range []struct{ cert, key, cn string }{{f.CA, p("ca.key"), "vhg test CA"}, {f.OtherCA, p("other-ca.key"), "vhg other CA"}} {
		run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN="+ca.cn,
			"-keyout", ca.key, "-out", ca.cert)
	}
	for _, leaf := range []struct{ cert, key, cn, ext string }{
		{f.ServerCert, f.ServerKey, "localhost", ext},
		{f.ClientCert, f.ClientKey, "vhg-worker", clientExt},
	} {
		csr := leaf.cert + ".csr"
		run("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN="+leaf.cn, "-keyout", leaf.key, "-out", csr)
		run("x509", "-req", "-in", csr, "-CA", f.CA, "-CAkey", p("ca.key"), "-CAcreateserial",
			"-days", "2", "-extfile", leaf.ext, "-out", leaf.cert)
	}
	// The servers may run as another user than the test (RabbitMQ reads
	// them as the test's user here, but keep them readable).
	for _, k := range []string{f.ServerKey, f.ClientKey} {
		os.Chmod(k, 0o644)
	}
	return f
}
