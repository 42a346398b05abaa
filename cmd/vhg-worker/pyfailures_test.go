package main

import "testing"

func TestDecodeEvents(t *testing.T) {
	t.Parallel()
	for body, want := range map[string]int{
		`{"type": "task-failed", "uuid": "a"}`:                                           1,
		`[{"type": "task-received", "uuid": "a"}, {"type": "task-failed", "uuid": "a"}]`: 2, // task.multi
		`"not an event"`: 0,
		`not json`:       0,
	} {
		if got := decodeEvents([]byte(body)); len(got) != want {
			t.Errorf("decodeEvents(%s) = %d events, want %d", body, len(got), want)
		}
	}
}
