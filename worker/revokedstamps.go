package worker

import (
	"reflect"
	"sort"
	"sync"

	"github.com/vhg/vhg-worker/protocol"
)

// revokedStamps holds the stamps revoked with revoke_by_stamped_headers:
// stamp name -> the revoked values. As Celery 5.6's worker_state.
// revoked_stamps it lives in memory only, is never forgotten and is not
// shared through mingle.
type revokedStamps struct {
	mu       sync.Mutex
	byHeader map[string][]any
}

// add appends values to each stamp's revoked values.
func (s *revokedStamps) add(headers map[string][]any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.byHeader == nil {
		s.byHeader = map[string][]any{}
	}
	for h, values := range headers {
		s.byHeader[h] = append(s.byHeader[h], values...)
	}
}

// match reports whether m is revoked by one of its stamps, and which stamp
// and value, as Celery 5.6's Request.revoked reads it: the first of the
// message's stamped_headers that has revoked values decides; a list stamp
// matches when one of its values is revoked.
func (s *revokedStamps) match(m *protocol.Message) (header string, value any, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, h := range m.StampedHeaders {
		revoked, found := s.byHeader[h]
		if !found {
			continue
		}
		stamp := m.Stamps[h]
		if list, isList := stamp.([]any); isList {
			for _, v := range list {
				if containsValue(revoked, v) {
					return h, v, true
				}
			}
			return "", nil, false
		}
		return h, stamp, containsValue(revoked, stamp)
	}
	return "", nil, false
}

// stampsMatch returns the values of want that m's stamps hold, by stamp
// name (the terminate side of revoke_by_stamped_headers: any overlap of a
// stamp's values with the revoked ones).
func stampsMatch(m *protocol.Message, want map[string][]any) map[string][]any {
	var out map[string][]any
	for h, values := range want {
		stamp, ok := m.Stamps[h]
		if !ok {
			continue
		}
		actual, isList := stamp.([]any)
		if !isList {
			actual = []any{stamp}
		}
		for _, v := range actual {
			if containsValue(values, v) {
				if out == nil {
					out = map[string][]any{}
				}
				if !containsValue(out[h], v) {
					out[h] = append(out[h], v)
				}
			}
		}
	}
	return out
}

func containsValue(list []any, v any) bool {
	for _, x := range list {
		if reflect.DeepEqual(x, v) {
			return true
		}
	}
	return false
}

// RevokeByStampedHeaders revokes every task stamped with one of the given
// values (stamp name -> values), as the revoke_by_stamped_headers control
// command does: such a request is discarded when it arrives or before it
// runs, as a revoked id is. With terminate, the running ones stamped so
// are cancelled with ErrRevoked; it returns the stamp values it terminated
// tasks for.
func (s *Server) RevokeByStampedHeaders(headers map[string][]any, terminate bool, signum int) map[string][]any {
	s.revokedStamps.add(headers)
	if !terminate {
		return nil
	}
	s.mu.Lock()
	var ids []string
	terminated := map[string][]any{}
	for id, rt := range s.running {
		matched := stampsMatch(rt.r.msg, headers)
		if len(matched) > 0 {
			ids = append(ids, id)
		}
		for h, values := range matched {
			for _, v := range values {
				if !containsValue(terminated[h], v) {
					terminated[h] = append(terminated[h], v)
				}
			}
		}
	}
	s.mu.Unlock()
	sort.Strings(ids)
	for _, id := range ids {
		s.terminate(id, signum)
	}
	return terminated
}
