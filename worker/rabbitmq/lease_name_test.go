package rabbitmq

import (
	"strings"
	"testing"
)

// TestIsLeaseName: only names of newLeaseName's form are leases; a forged
// lease header of any other form is ignored.
func TestIsLeaseName(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		want bool
	}{
		{newLeaseName("3f2c1a5e-8b7d-4c6e-9a1f-0d2e3c4b5a69"), true},
		{newLeaseName(strings.Repeat("x", 300)), true},
		{newLeaseName("id with spaces/and\xffbytes"), true},
		{newLeaseName(""), true},
		{"abc.0123456789ab", true},
		{"", false},
		{"abc", false},
		{"abc.0123456789AB", false},
		{"abc.0123456789a", false},
		{"abc.0123456789abc", false},
		{"abc.01234567890g", false},
		{strings.Repeat("l", 300), false},
		{strings.Repeat("l", 65) + ".0123456789ab", false},
		{"l\xff.0123456789ab", false},
		{"a.b.0123456789ab", false},
		{"a b.0123456789ab", false},
	} {
		if got := isLeaseName(tc.name); got != tc.want {
			t.Errorf("isLeaseName(%q) = %t, want %t", tc.name, got, tc.want)
		}
	}
}
