// Package memory is an in-process broker and result backend for the
// worker: no network, no persistence. The "vhg-worker encode" command runs
// the whole pipeline on it, and tests use it as a fake that behaves like the
// real adapters (acks, requeues, chord joins).
package memory

import (
	"context"
	"errors"
	"sort"
	"sync"

	"github.com/vhg/vhg-worker/protocol"
	"github.com/vhg/vhg-worker/worker"
)

// Broker is an in-memory worker.Broker with one FIFO per routing key.
// Exchanges are ignored: a message goes to the queue named by its routing
// key. Published messages are also recorded for inspection.
type Broker struct {
	mu        sync.Mutex
	queues    map[string][]queued
	wake      chan struct{}
	published []Published
	tags      uint64 // delivery tags handed out
}

// queued is a message waiting in a queue; redelivered is set when a
// consumer rejected it with requeue, as AMQP's redelivered flag.
type queued struct {
	env         protocol.Envelope
	redelivered bool
	tag         uint64 // set when delivered
}

// Published is one message as it was published.
type Published struct {
	Route    worker.Route
	Envelope protocol.Envelope
}

var _ worker.Broker = (*Broker)(nil)

// NewBroker returns an empty Broker.
func NewBroker() *Broker {
	return &Broker{queues: make(map[string][]queued), wake: make(chan struct{})}
}

// Publish implements worker.Broker.
func (b *Broker) Publish(_ context.Context, to worker.Route, env protocol.Envelope) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.queues[to.RoutingKey] = append(b.queues[to.RoutingKey], queued{env: env})
	b.published = append(b.published, Published{Route: to, Envelope: env})
	close(b.wake)
	b.wake = make(chan struct{})
	return nil
}

// Published returns every message published so far, in order.
func (b *Broker) Published() []Published {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]Published(nil), b.published...)
}

// Len returns the number of messages waiting in a queue.
func (b *Broker) Len(queue string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.queues[queue])
}

// pop takes the first waiting message of any of the queues, or returns a
// channel closed at the next publish.
func (b *Broker) pop(queues []string) (queued, string, bool, <-chan struct{}) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, q := range queues {
		if msgs := b.queues[q]; len(msgs) > 0 {
			b.queues[q] = msgs[1:]
			b.tags++
			msg := msgs[0]
			msg.tag = b.tags
			return msg, q, true, nil
		}
	}
	return queued{}, "", false, b.wake
}

// Consume implements worker.Broker. prefetch bounds the unsettled
// deliveries, as a broker's QoS does.
func (b *Broker) Consume(ctx context.Context, queues []string, prefetch int) (<-chan worker.Delivery, error) {
	if prefetch <= 0 {
		prefetch = 1
	}
	out := make(chan worker.Delivery)
	credit := make(chan struct{}, prefetch)
	go func() {
		defer close(out)
		for {
			select {
			case credit <- struct{}{}:
			case <-ctx.Done():
				return
			}
			var (
				msg   queued
				queue string
			)
			for {
				var ok bool
				var wake <-chan struct{}
				msg, queue, ok, wake = b.pop(queues)
				if ok {
					break
				}
				select {
				case <-wake:
				case <-ctx.Done():
					return
				}
			}
			d := &delivery{broker: b, env: msg.env, queue: queue, credit: credit, redelivered: msg.redelivered, tag: msg.tag}
			select {
			case out <- d:
			case <-ctx.Done():
				_ = d.Reject(true)
				return
			}
		}
	}()
	return out, nil
}

// delivery is one unsettled message.
type delivery struct {
	broker *Broker
	env    protocol.Envelope
	queue  string
	credit chan struct{}

	tag uint64

	mu          sync.Mutex
	settled     bool
	redelivered bool
}

// ErrSettled is returned when a delivery is acked or rejected twice.
var ErrSettled = errors.New("memory: delivery already settled")

func (d *delivery) Envelope() protocol.Envelope { return d.env }

func (d *delivery) Info() worker.DeliveryInfo {
	return worker.DeliveryInfo{RoutingKey: d.queue, Redelivered: d.redelivered, DeliveryTag: d.tag}
}

func (d *delivery) settle() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.settled {
		return ErrSettled
	}
	d.settled = true
	<-d.credit
	return nil
}

func (d *delivery) Ack() error { return d.settle() }

func (d *delivery) Reject(requeue bool) error {
	if err := d.settle(); err != nil {
		return err
	}
	if requeue {
		b := d.broker
		b.mu.Lock()
		b.queues[d.queue] = append([]queued{{env: d.env, redelivered: true}}, b.queues[d.queue]...)
		close(b.wake)
		b.wake = make(chan struct{})
		b.mu.Unlock()
	}
	return nil
}

// Backend is an in-memory result backend with a native chord join.
type Backend struct {
	mu      sync.Mutex
	results map[string]protocol.ResultMeta
	history []protocol.ResultMeta
	chords  map[string]*chordState
	changed chan struct{}
}

type chordState struct {
	size  int
	extra int // results added by AddToChord
	parts map[string]worker.ChordPart
}

var (
	_ worker.Backend       = (*Backend)(nil)
	_ worker.ResultReader  = (*Backend)(nil)
	_ worker.ChordJoiner   = (*Backend)(nil)
	_ worker.ChordExtender = (*Backend)(nil)
)

// NewBackend returns an empty Backend.
func NewBackend() *Backend {
	return &Backend{results: make(map[string]protocol.ResultMeta), chords: make(map[string]*chordState), changed: make(chan struct{})}
}

// Store implements worker.Backend; like Redis, it never overwrites SUCCESS.
func (b *Backend) Store(_ context.Context, meta protocol.ResultMeta, _ worker.ReplyRoute) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.history = append(b.history, meta)
	if old, ok := b.results[meta.TaskID]; ok && old.Status == protocol.StateSuccess {
		return nil
	}
	b.results[meta.TaskID] = meta
	close(b.changed)
	b.changed = make(chan struct{})
	return nil
}

// Result implements worker.ResultReader.
func (b *Backend) Result(_ context.Context, taskID string) (protocol.ResultMeta, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if m, ok := b.results[taskID]; ok {
		return m, nil
	}
	return protocol.ResultMeta{TaskID: taskID, Status: protocol.StatePending}, nil
}

// History returns every state stored, in order (including custom states
// and the ones not kept because SUCCESS was final).
func (b *Backend) History() []protocol.ResultMeta {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]protocol.ResultMeta(nil), b.history...)
}

// Wait blocks until taskID has a ready state or ctx is done.
func (b *Backend) Wait(ctx context.Context, taskID string) (protocol.ResultMeta, error) {
	for {
		b.mu.Lock()
		m, ok := b.results[taskID]
		changed := b.changed
		b.mu.Unlock()
		if ok && m.Status.Ready() {
			return m, nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return protocol.ResultMeta{}, ctx.Err()
		}
	}
}

// Changed returns a channel closed at the next Store.
func (b *Backend) Changed() <-chan struct{} {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.changed
}

// SetChordSize implements worker.ChordJoiner.
func (b *Backend) SetChordSize(_ context.Context, groupID string, size int) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	c := b.chord(groupID)
	c.size = size
	return nil
}

func (b *Backend) chord(groupID string) *chordState {
	c, ok := b.chords[groupID]
	if !ok {
		c = &chordState{parts: make(map[string]worker.ChordPart)}
		b.chords[groupID] = c
	}
	return c
}

// JoinChordPart implements worker.ChordJoiner. A part stored twice under
// the same task id counts once.
func (b *Backend) JoinChordPart(_ context.Context, groupID string, part worker.ChordPart, fallbackSize int) ([]worker.ChordPart, bool, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	c := b.chord(groupID)
	c.parts[part.TaskID] = part
	size := c.size
	if size == 0 {
		size = fallbackSize
	}
	if size == 0 || len(c.parts) < size+c.extra {
		return nil, false, nil
	}
	parts := make([]worker.ChordPart, 0, len(c.parts))
	for _, p := range c.parts {
		parts = append(parts, p)
	}
	sort.SliceStable(parts, func(i, j int) bool { return less(parts[i].Index, parts[j].Index) })
	delete(b.chords, groupID)
	return parts, true, nil
}

// AddToChord implements worker.ChordExtender: the chord of groupID waits
// for one more result.
func (b *Backend) AddToChord(_ context.Context, groupID string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.chord(groupID).extra++
	return nil
}

// less orders group indexes with nil last.
func less(a, b *int) bool {
	switch {
	case a == nil:
		return false
	case b == nil:
		return true
	default:
		return *a < *b
	}
}
