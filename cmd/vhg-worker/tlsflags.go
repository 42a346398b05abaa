package main

import (
	"flag"

	"github.com/vhg/vhg-worker/worker"
)

// tlsFlags are the TLS settings of the broker (Celery's broker_use_ssl)
// and of a rediss:// result backend (Celery's redis_backend_use_ssl).
// The ssl_* query options of a URL override them for that URL.
type tlsFlags struct {
	broker  worker.TLSFiles
	backend worker.TLSFiles
}

func (t *tlsFlags) add(fs *flag.FlagSet) {
	for _, s := range []struct {
		prefix, what, scheme string
		files                *worker.TLSFiles
	}{
		{"broker", "broker", "amqps://", &t.broker},
		{"result-backend", "result backend", "rediss://", &t.backend},
	} {
		fs.StringVar(&s.files.CA, s.prefix+"-ssl-ca", "",
			"PEM file of the CAs that sign the "+s.what+"'s certificate, for "+s.scheme+" URLs (URL option ssl_ca_certs; empty: the system's)")
		fs.StringVar(&s.files.Cert, s.prefix+"-ssl-cert", "", "PEM client certificate for the "+s.what+" (URL option ssl_certfile)")
		fs.StringVar(&s.files.Key, s.prefix+"-ssl-key", "", "PEM key of that client certificate (URL option ssl_keyfile)")
		fs.StringVar(&s.files.ServerName, s.prefix+"-ssl-server-name", "",
			"name the "+s.what+"'s certificate must carry (URL option ssl_server_hostname; empty: the URL's host)")
	}
}
