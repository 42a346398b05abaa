package worker

import (
	"fmt"
	"slices"
	"testing"
	"time"
)

func TestRevokedSetBoundsAndExpiry(t *testing.T) {
	t.Parallel()
	t0 := time.Unix(1000, 0)
	ids := func(s *revokedSet, now time.Time) []string {
		var out []string
		for _, e := range s.snapshot(now) {
			out = append(out, e.id)
		}
		return out
	}
	for _, c := range []struct {
		name  string
		run   func(s *revokedSet)
		at    time.Time
		want  []string
		count int // entries kept in order, to show it does not grow
	}{
		{name: "keeps what it was given", run: func(s *revokedSet) { s.add(t0, "a", "b") }, at: t0, want: []string{"a", "b"}},
		{name: "drops the oldest beyond maxLen", run: func(s *revokedSet) {
			s.add(t0, "a", "b", "c")
			s.add(t0.Add(time.Second), "d", "e")
		}, at: t0.Add(time.Second), want: []string{"b", "c", "d", "e"}},
		{name: "forgets after expires", run: func(s *revokedSet) {
			s.add(t0, "a")
			s.add(t0.Add(30*time.Minute), "b")
		}, at: t0.Add(time.Hour), want: []string{"b"}},
		{name: "a revoke again is kept from then on", run: func(s *revokedSet) {
			s.add(t0, "a", "b")
			s.add(t0.Add(50*time.Minute), "a")
		}, at: t0.Add(70 * time.Minute), want: []string{"a"}},
		{name: "revoking one id over and over does not grow it", run: func(s *revokedSet) {
			for i := range 1000 {
				s.add(t0.Add(time.Duration(i)*time.Millisecond), "same")
			}
		}, at: t0.Add(2 * time.Second), want: []string{"same"}, count: 70},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			s := newRevokedSet(4, time.Hour)
			c.run(s)
			if got := ids(s, c.at); !slices.Equal(got, c.want) {
				t.Errorf("ids = %v, want %v", got, c.want)
			}
			for _, id := range c.want {
				if !s.contains(c.at, id) {
					t.Errorf("contains(%s) = false", id)
				}
			}
			if c.count > 0 && len(s.order) > c.count {
				t.Errorf("%d entries kept for %d ids", len(s.order), len(s.added))
			}
		})
	}
}

func TestRevokedSetCelerySize(t *testing.T) {
	t.Parallel()
	s := newRevokedSet(revokedMaxLen, revokedExpires)
	t0 := time.Unix(1000, 0)
	for i := range revokedMaxLen + 10 {
		s.add(t0, fmt.Sprint(i))
	}
	if len(s.added) != revokedMaxLen || s.contains(t0, "9") || !s.contains(t0, "10") {
		t.Errorf("%d ids after %d revokes; first kept?", len(s.added), revokedMaxLen+10)
	}
	if s.contains(t0.Add(3*time.Hour), "10") {
		t.Error("an id is remembered after 3 hours")
	}
}
