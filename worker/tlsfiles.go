package worker

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
)

// TLSFiles are the TLS settings of a broker or backend connection, as
// Celery spells them in broker_use_ssl and in the query of a rediss:// URL.
// Every zero value has the meaning given.
type TLSFiles struct {
	// CA is a PEM file of the certificate authorities that sign the
	// server's certificate (ssl_ca_certs); empty means the system's.
	CA string
	// Cert and Key are the PEM files of the client certificate and its
	// key (ssl_certfile, ssl_keyfile); empty means no client certificate.
	// Either both or neither.
	Cert, Key string
	// ServerName is the name the server's certificate must carry
	// (ssl_server_hostname); empty means the host of the URL.
	ServerName string
	// SkipVerify accepts any server certificate (ssl_cert_reqs=CERT_NONE):
	// the traffic is encrypted but the server is not authenticated. False
	// means the certificate and the name are checked.
	SkipVerify bool
}

// The query options of a URL that TLSFromURL reads, with Celery's names
// (kombu's for rediss://; the same keys stand for broker_use_ssl's in an
// amqps:// URL).
const (
	TLSQueryCA         = "ssl_ca_certs"
	TLSQueryCert       = "ssl_certfile"
	TLSQueryKey        = "ssl_keyfile"
	TLSQueryCertReqs   = "ssl_cert_reqs"
	TLSQueryServerName = "ssl_server_hostname"
)

// TLSFromURL reads the ssl_* query options of raw over defaults and
// returns them with raw stripped of them (what the client library dials).
// ssl_cert_reqs takes Python's CERT_REQUIRED, CERT_OPTIONAL (checked as
// required: a server always presents a certificate) or CERT_NONE, or the
// same in lower case without the prefix, as redis-py does.
func TLSFromURL(raw string, defaults TLSFiles) (TLSFiles, string, error) {
	f := defaults
	u, err := url.Parse(raw)
	if err != nil || u.RawQuery == "" {
		return f, raw, nil
	}
	q := u.Query()
	found := false
	for _, k := range []struct {
		key string
		to  *string
	}{{TLSQueryCA, &f.CA}, {TLSQueryCert, &f.Cert}, {TLSQueryKey, &f.Key}, {TLSQueryServerName, &f.ServerName}} {
		if q.Has(k.key) {
			*k.to, found = q.Get(k.key), true
			q.Del(k.key)
		}
	}
	if q.Has(TLSQueryCertReqs) {
		found = true
		switch v := strings.ToLower(strings.TrimPrefix(strings.ToUpper(q.Get(TLSQueryCertReqs)), "CERT_")); v {
		case "required", "optional":
			f.SkipVerify = false
		case "none":
			f.SkipVerify = true
		default:
			return f, raw, fmt.Errorf("%s=%q: want CERT_REQUIRED, CERT_OPTIONAL or CERT_NONE", TLSQueryCertReqs, q.Get(TLSQueryCertReqs))
		}
		q.Del(TLSQueryCertReqs)
	}
	if !found {
		return f, raw, nil
	}
	u.RawQuery = q.Encode()
	return f, u.String(), nil
}

// Config loads the files into a client tls.Config. A missing or
// unreadable file is an error that names it.
func (f TLSFiles) Config() (*tls.Config, error) {
	c := &tls.Config{ServerName: f.ServerName, InsecureSkipVerify: f.SkipVerify, MinVersion: tls.VersionTLS12}
	if f.CA != "" {
		pem, err := os.ReadFile(f.CA)
		if err != nil {
			return nil, fmt.Errorf("tls: CA file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("tls: CA file %s holds no PEM certificate", f.CA)
		}
		c.RootCAs = pool
	}
	switch {
	case f.Cert != "" && f.Key != "":
		cert, err := tls.LoadX509KeyPair(f.Cert, f.Key)
		if err != nil {
			return nil, fmt.Errorf("tls: client certificate: %w", err)
		}
		c.Certificates = []tls.Certificate{cert}
	case f.Cert != "" || f.Key != "":
		return nil, errors.New("tls: a client certificate needs both the certificate and the key file")
	}
	return c, nil
}

// IsZero reports whether nothing is set.
func (f TLSFiles) IsZero() bool { return f == TLSFiles{} }
