package redis_test

import (
	"testing"

	"github.com/vhg/vhg-worker/worker/redis"
)

// TestGlobalKeyPrefix checks Celery's rule for global_keyprefix
// (backends/base.py _add_global_keyprefix): "_" is added unless the prefix
// ends in one of ":_-.".
func TestGlobalKeyPrefix(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"":         "",
		"tenant1":  "tenant1_",
		"tenant1:": "tenant1:",
		"tenant1_": "tenant1_",
		"tenant1-": "tenant1-",
		"tenant1.": "tenant1.",
		"a/b":      "a/b_",
	} {
		if got := redis.GlobalKeyPrefix(in); got != want {
			t.Errorf("GlobalKeyPrefix(%q) = %q, want %q", in, got, want)
		}
	}
}
