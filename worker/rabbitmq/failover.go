package rabbitmq

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/vhg/vhg-worker/worker"
)

// A broker URL may list several URLs separated by ";", as Celery's
// broker_url does ("amqp://h1//;amqp://h2//"): the nodes of one cluster.
// The broker connects to the first that answers and, when its connection
// is lost, moves on to the next one, round-robin (kombu's default
// failover strategy), re-declaring and consuming there.

// SplitURLs splits Celery's ";"-separated list of broker URLs. Empty
// entries are dropped.
func SplitURLs(raw string) []string {
	var out []string
	for _, s := range strings.Split(raw, ";") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

// endpoint is one URL of the list, ready to dial.
type endpoint struct {
	url    string      // as amqp091 parses it, without the ssl_* options
	shown  string      // redacted, for logs
	node   string      // host:port
	tlsCfg *tls.Config // for amqps://; nil otherwise
}

// endpoints parses the URL list, with the ssl_* query options of each
// URL over defaults.
func endpoints(raw string, defaults worker.TLSFiles) ([]endpoint, error) {
	urls := SplitURLs(raw)
	if len(urls) == 0 {
		urls = []string{DefaultURL}
	}
	out := make([]endpoint, 0, len(urls))
	for _, u := range urls {
		files, stripped, err := worker.TLSFromURL(u, defaults)
		if err != nil {
			return nil, fmt.Errorf("rabbitmq: %s: %w", Redact(u), err)
		}
		e := endpoint{url: amqpURL(stripped), shown: Redact(u)}
		uri, err := amqp.ParseURI(e.url)
		if err != nil {
			return nil, fmt.Errorf("rabbitmq: %s: %w", e.shown, err)
		}
		e.node = net.JoinHostPort(uri.Host, fmt.Sprint(uri.Port))
		if uri.Scheme == "amqps" {
			if e.tlsCfg, err = files.Config(); err != nil {
				return nil, fmt.Errorf("rabbitmq: %s: %w", e.shown, err)
			}
		} else if files != defaults {
			return nil, fmt.Errorf("rabbitmq: %s: ssl_* options need an amqps:// URL", e.shown)
		}
		out = append(out, e)
	}
	return out, nil
}

// dialEndpoint connects to one URL of the list.
func (b *Broker) dialEndpoint(e endpoint) (*amqp.Connection, error) {
	props := amqp.NewConnectionProperties()
	props.SetClientConnectionName(b.cfg.ConnectionName)
	cfg := amqp.Config{Heartbeat: b.cfg.Heartbeat, Properties: props, Locale: "en_US"}
	if e.tlsCfg != nil {
		// amqp091 writes the server name into the config it is given:
		// each dial gets its own copy.
		cfg.TLSClientConfig = e.tlsCfg.Clone()
	}
	conn, err := amqp.DialConfig(e.url, cfg)
	if err != nil {
		return nil, explainTLS(err)
	}
	return conn, nil
}

// explainTLS says in words what a failed certificate check means.
func explainTLS(err error) error {
	var unknown x509.UnknownAuthorityError
	var host x509.HostnameError
	switch {
	case errors.As(err, &unknown):
		return fmt.Errorf("TLS: the server's certificate is not signed by a trusted CA (check the CA file, ssl_ca_certs): %w", err)
	case errors.As(err, &host):
		return fmt.Errorf("TLS: the server's certificate is not valid for this host name (check the URL's host or ssl_server_hostname): %w", err)
	}
	return err
}

// dialFirst connects to the first URL of the list that answers, starting
// at the current one, trying each once. The error names every URL tried.
func (b *Broker) dialFirst() (*amqp.Connection, error) {
	var errs []error
	for range b.eps {
		b.mu.Lock()
		e := b.eps[b.cur]
		b.mu.Unlock()
		conn, err := b.dialEndpoint(e)
		if err == nil {
			return conn, nil
		}
		if len(b.eps) == 1 {
			return nil, err
		}
		errs = append(errs, fmt.Errorf("%s: %w", e.shown, err))
		b.next()
	}
	return nil, errors.Join(errs...)
}

// next moves to the next URL of the list (round-robin).
func (b *Broker) next() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.cur = (b.cur + 1) % len(b.eps)
}

// Node is the URL of the node the broker is connected to (or, while the
// connection is lost, will try next), without its password.
func (b *Broker) Node() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.eps[b.cur].shown
}

// NodeAddr is the host:port of that node.
func (b *Broker) NodeAddr() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.eps[b.cur].node
}

// DialURLs connects a plain amqp091 connection to the first URL of
// cfg.URL's list that answers, with cfg.TLS, cfg.ConnectionName and
// cfg.Heartbeat as Dial uses them (for code that reads a queue itself, as
// `vhg-worker submit --follow` reads a status queue); it does not
// reconnect. The error names every URL tried, without passwords.
func DialURLs(cfg Config) (*amqp.Connection, error) {
	if cfg.Heartbeat == 0 {
		cfg.Heartbeat = 60 * time.Second
	}
	if cfg.ConnectionName == "" {
		cfg.ConnectionName = "vhg-worker"
	}
	eps, err := endpoints(cfg.URL, cfg.TLS)
	if err != nil {
		return nil, err
	}
	b := &Broker{cfg: cfg, eps: eps}
	conn, err := b.dialFirst()
	if err != nil {
		return nil, fmt.Errorf("rabbitmq: connect to %s: %w", Redact(cfg.URL), err)
	}
	return conn, nil
}
