package worker

import "sync"

// recentAcksLen bounds Server.recentAcks: far more than the messages whose
// acknowledgements can be in flight when a connection is lost (a few
// prefetch windows).
const recentAcksLen = 8192

// recentAcks remembers the last messages acknowledged here, with their
// delivery. An acknowledgement is not confirmed by AMQP: written just
// before the connection (or the broker node) goes away, it may never be
// processed, and the broker then delivers the message again although its
// task ran here (or started after an early ack). Such a message comes back
// redelivered while the delivery it was acknowledged on is stale; the
// broker never redelivers a message whose acknowledgement it processed,
// so that pair proves the acknowledgement was lost, and the Server settles
// the message without running it again (settledBefore).
type recentAcks struct {
	mu    sync.Mutex
	order []string // FIFO of keys, at most recentAcksLen
	byKey map[string]StaleDelivery
}

func newRecentAcks() *recentAcks {
	return &recentAcks{byKey: make(map[string]StaleDelivery)}
}

// add records that the message key was acknowledged on d.
func (a *recentAcks) add(key string, d StaleDelivery) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if _, ok := a.byKey[key]; !ok {
		if len(a.order) == recentAcksLen {
			delete(a.byKey, a.order[0])
			a.order = a.order[1:]
		}
		a.order = append(a.order, key)
	}
	a.byKey[key] = d
}

// lost reports whether the message key was acknowledged here on a
// delivery whose connection has since been lost.
func (a *recentAcks) lost(key string) bool {
	a.mu.Lock()
	d, ok := a.byKey[key]
	a.mu.Unlock()
	return ok && d.Stale()
}
