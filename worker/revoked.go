package worker

import (
	"sync"
	"time"
)

// The bounds of the revoked set, as Celery's worker/state.py sets them.
const (
	revokedMaxLen  = 50000
	revokedExpires = 3 * time.Hour
)

// revokedSet holds the ids of revoked tasks, like Celery's LimitedSet: at
// most maxLen ids, each forgotten after expires. Revokes live in memory
// only, as in Celery; other workers share theirs through the hello command.
type revokedSet struct {
	maxLen  int
	expires time.Duration

	mu    sync.Mutex
	added map[string]time.Time // id -> when it was (last) revoked
	order []revokedEntry       // oldest first; may hold stale entries
}

type revokedEntry struct {
	id    string
	added time.Time
}

func newRevokedSet(maxLen int, expires time.Duration) *revokedSet {
	return &revokedSet{maxLen: maxLen, expires: expires, added: make(map[string]time.Time)}
}

// add revokes ids at now; an id revoked again is kept from now on.
func (s *revokedSet) add(now time.Time, ids ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, id := range ids {
		if prev, ok := s.added[id]; ok && prev.Equal(now) {
			continue
		}
		s.added[id] = now
		s.order = append(s.order, revokedEntry{id, now})
	}
	s.purge(now)
}

// contains reports whether id is revoked and not yet forgotten.
func (s *revokedSet) contains(now time.Time, id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.purge(now)
	_, ok := s.added[id]
	return ok
}

// snapshot returns the ids with the time each was revoked, oldest first.
func (s *revokedSet) snapshot(now time.Time) []revokedEntry {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.purge(now)
	out := make([]revokedEntry, 0, len(s.added))
	for _, e := range s.order {
		if s.added[e.id].Equal(e.added) {
			out = append(out, e)
		}
	}
	return out
}

// purge forgets the oldest ids beyond maxLen and those older than expires.
// s.mu must be held.
func (s *revokedSet) purge(now time.Time) {
	drop := 0
	for drop < len(s.order) {
		e := s.order[drop]
		current, ok := s.added[e.id]
		switch {
		case !ok || !current.Equal(e.added):
			// Stale: the id was revoked again later (or already dropped).
		case len(s.added) > s.maxLen || now.Sub(e.added) >= s.expires:
			delete(s.added, e.id)
		default:
			s.order = s.order[drop:]
			s.compact()
			return
		}
		drop++
	}
	s.order = s.order[:0]
}

// compact rebuilds order without stale entries once they outnumber the
// live ones, so that revoking one id over and over does not grow it.
func (s *revokedSet) compact() {
	if len(s.order) <= 2*len(s.added)+64 {
		return
	}
	live := make([]revokedEntry, 0, len(s.added))
	for _, e := range s.order {
		if s.added[e.id].Equal(e.added) {
			live = append(live, e)
		}
	}
	s.order = live
}
