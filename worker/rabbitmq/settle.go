package rabbitmq

import (
	"cmp"
	"slices"
	"sync"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/sirupsen/logrus"
)

// ackDelay is the longest an acknowledgement waits to go out with others.
const ackDelay = time.Millisecond

// settler acknowledges the deliveries of one consuming channel in batches.
//
// Writing one basic.ack per message costs the worker a frame and a system
// call, and RabbitMQ the same again; at thousands of tasks a second that is
// a good part of the work. So an acknowledgement waits (at most ackDelay,
// or until half the prefetch window is waiting) and goes out with the
// others as one basic.ack with multiple=true.
//
// A multiple ack settles every outstanding delivery up to its tag, so it
// may only cover tags that are settled already: delivery tags on a channel
// are 1, 2, 3, ... in delivery order, and a multiple ack is sent for the
// longest run of settled tags from the lowest unsettled one. A delivery
// still running (acks_late) or not yet handed to the worker leaves a gap;
// acknowledgements past the gap go out one by one, so a long task never
// holds the others back. Rejects go out at once. Every settlement of the
// channel goes through here, and every write is made under mu, so that a
// multiple ack can never overtake the reject of a tag it covers.
type settler struct {
	ch    *amqp.Channel
	batch int // acks waiting that make a flush
	log   logrus.FieldLogger

	mu      sync.Mutex
	next    uint64              // the lowest tag not known settled on the wire
	waiting map[uint64]struct{} // acks not yet written
	written spans               // tags >= next settled on the wire
	timer   *time.Timer         // flushes waiting acks after ackDelay
	armed   bool
}

func newSettler(ch *amqp.Channel, prefetch int, log logrus.FieldLogger) *settler {
	batch := min(max(prefetch/2, 1), 64)
	if prefetch == 0 { // no limit
		batch = 64
	}
	s := &settler{ch: ch, batch: batch, log: log, next: 1, waiting: make(map[uint64]struct{}, batch)}
	s.timer = time.AfterFunc(time.Hour, s.flush)
	s.timer.Stop()
	return s
}

// ack settles tag; it goes out with the next flush.
func (s *settler) ack(tag uint64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ch.IsClosed() {
		return amqp.ErrClosed
	}
	s.waiting[tag] = struct{}{}
	if len(s.waiting) >= s.batch {
		s.flushLocked()
		return nil
	}
	if !s.armed {
		s.armed = true
		s.timer.Reset(ackDelay)
	}
	return nil
}

// reject rejects tag now, with or without requeue.
func (s *settler) reject(tag uint64, requeue bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.ch.Reject(tag, requeue); err != nil {
		return err
	}
	s.written.add(tag)
	if hi, ok := s.written.startingAt(s.next); ok {
		s.next = hi + 1
		s.written.dropBelow(s.next)
	}
	return nil
}

// flush writes the acks waiting.
func (s *settler) flush() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.flushLocked()
}

func (s *settler) flushLocked() {
	s.armed = false
	s.timer.Stop()
	if len(s.waiting) == 0 {
		return
	}
	// The settled run from next: one multiple ack up to its last waiting
	// tag.
	var last uint64
	for {
		if hi, ok := s.written.startingAt(s.next); ok {
			s.next = hi + 1
			continue
		}
		if _, ok := s.waiting[s.next]; ok {
			delete(s.waiting, s.next)
			last = s.next
			s.next++
			continue
		}
		break
	}
	var err error
	if last != 0 {
		err = s.ch.Ack(last, true)
	}
	// Past the gap, one by one.
	for tag := range s.waiting {
		if err == nil {
			err = s.ch.Ack(tag, false)
			s.written.add(tag)
		}
		delete(s.waiting, tag)
	}
	s.written.dropBelow(s.next)
	if err != nil {
		// The channel is gone: RabbitMQ requeues whatever it did not
		// see acknowledged, and the worker sees those messages again.
		s.log.WithError(err).Debug("acknowledgements lost with their channel")
	}
}

// spans is a sorted set of delivery tags kept as disjoint, non-adjacent
// ranges: the tags settled past a gap are mostly one range, however many.
type spans []span

type span struct{ lo, hi uint64 }

// add puts tag in the set.
func (ss *spans) add(tag uint64) {
	s := *ss
	i, _ := slices.BinarySearchFunc(s, tag, func(r span, t uint64) int { return cmp.Compare(r.lo, t) })
	// s[i-1].lo < tag <= s[i].lo
	joinsLeft := i > 0 && s[i-1].hi+1 >= tag
	joinsRight := i < len(s) && s[i].lo <= tag+1
	switch {
	case joinsLeft && s[i-1].hi >= tag, joinsRight && s[i].lo == tag:
		// already in
	case joinsLeft && joinsRight:
		s[i-1].hi = s[i].hi
		s = slices.Delete(s, i, i+1)
	case joinsLeft:
		s[i-1].hi = tag
	case joinsRight:
		s[i].lo = tag
	default:
		s = slices.Insert(s, i, span{tag, tag})
	}
	*ss = s
}

// startingAt reports the end of the range that holds tag.
func (ss spans) startingAt(tag uint64) (hi uint64, ok bool) {
	i, found := slices.BinarySearchFunc(ss, tag, func(r span, t uint64) int { return cmp.Compare(r.lo, t) })
	switch {
	case found:
		return ss[i].hi, true
	case i > 0 && ss[i-1].hi >= tag:
		return ss[i-1].hi, true
	}
	return 0, false
}

// dropBelow removes every tag below tag.
func (ss *spans) dropBelow(tag uint64) {
	s := *ss
	i := 0
	for i < len(s) && s[i].hi < tag {
		i++
	}
	s = s[i:]
	if len(s) > 0 && s[0].lo < tag {
		s[0].lo = tag
	}
	*ss = s
}
