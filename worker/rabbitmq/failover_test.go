package rabbitmq_test

import (
	"fmt"
	"net"
	"strings"
	"testing"

	"github.com/vhg/vhg-worker/worker/rabbitmq"
)

func TestRedactEveryURL(t *testing.T) {
	t.Parallel()
	got := rabbitmq.Redact("amqp://guest:secret1@h:5998//;amqp://guest:secret2@h:5672//")
	if strings.Contains(got, "secret") || got != "amqp://guest:xxxxx@h:5998//;amqp://guest:xxxxx@h:5672//" {
		t.Errorf("Redact = %q", got)
	}
	if got := rabbitmq.SplitURLs(" amqp://a// ; ;amqp://b//;"); strings.Join(got, ",") != "amqp://a//,amqp://b//" {
		t.Errorf("SplitURLs = %q", got)
	}
}

// closedPort is a local port nothing listens on.
func closedPort(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// TestDialErrorMasksEveryPassword is issue 15's report: the start-up error
// of a list masked the first password and printed the second.
func TestDialErrorMasksEveryPassword(t *testing.T) {
	t.Parallel()
	_, err := rabbitmq.Dial(rabbitmq.Config{URL: "amqp://guest:secret1@" + closedPort(t) + "//;amqp://guest:secret2@" + closedPort(t) + "//"})
	if err == nil {
		t.Fatal("Dial succeeded on closed ports")
	}
	if strings.Contains(err.Error(), "secret") || strings.Count(err.Error(), "connection refused") != 2 {
		t.Errorf("error shows a password or not each URL's error: %v", err)
	}
}

func ExampleRedact() {
	// Celery's list of a cluster's nodes, as -b takes it.
	fmt.Println(rabbitmq.Redact("amqp://vhg:s3cret@rabbit1:5672//;amqps://vhg:s3cret@rabbit2:5671//?ssl_ca_certs=/etc/vhg/ca.pem"))
	// Output: amqp://vhg:xxxxx@rabbit1:5672//;amqps://vhg:xxxxx@rabbit2:5671//?ssl_ca_certs=/etc/vhg/ca.pem
}
