package memory_test

import (
	"sync"
	"testing"

	"github.com/vhg/vhg-worker/worker"
	"github.com/vhg/vhg-worker/worker/backendtest"
	"github.com/vhg/vhg-worker/worker/brokertest"
	"github.com/vhg/vhg-worker/worker/memory"
)

func TestBrokerSuite(t *testing.T) {
	t.Parallel()
	// Brokers asked for by one test share their queues, like connections to
	// one RabbitMQ server; a memory Broker is that server.
	var mu sync.Mutex
	brokers := map[*testing.T]*memory.Broker{}
	brokertest.RunBrokerSuite(t, func(t *testing.T) worker.Broker {
		mu.Lock()
		defer mu.Unlock()
		if b, ok := brokers[t]; ok {
			return b
		}
		b := memory.NewBroker()
		brokers[t] = b
		return b
	})
}

func TestBackendSuite(t *testing.T) {
	t.Parallel()
	backendtest.RunBackendSuite(t, func(*testing.T) worker.Backend { return memory.NewBackend() })
}
