package rabbitmq

import (
	"fmt"
	"testing"
)

func TestSpans(t *testing.T) {
	var s spans
	for _, tag := range []uint64{5, 7, 6, 10, 3, 9, 9, 1, 2} {
		s.add(tag)
	}
	if got, want := fmt.Sprint(s), "[{1 3} {5 7} {9 10}]"; got != want {
		t.Fatalf("spans = %s, want %s", got, want)
	}
	for tag, want := range map[uint64]uint64{1: 3, 2: 3, 3: 3, 4: 0, 6: 7, 8: 0, 10: 10, 11: 0} {
		if hi, _ := s.startingAt(tag); hi != want {
			t.Errorf("startingAt(%d) = %d, want %d", tag, hi, want)
		}
	}
	s.add(4)
	s.add(8)
	if got, want := fmt.Sprint(s), "[{1 10}]"; got != want {
		t.Fatalf("spans = %s, want %s", got, want)
	}
	s.dropBelow(6)
	if got, want := fmt.Sprint(s), "[{6 10}]"; got != want {
		t.Fatalf("after dropBelow(6) spans = %s, want %s", got, want)
	}
	s.dropBelow(11)
	if len(s) != 0 {
		t.Fatalf("after dropBelow(11) spans = %v, want none", s)
	}
}
