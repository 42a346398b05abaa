package tasks

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestLockedTempFailsWhenLocksFail injects the errors flock gives where
// locks do not work: the step fails with the errno and leaves no
// temporary behind.
func TestLockedTempFailsWhenLocksFail(t *testing.T) {
	t.Parallel()
	creators := map[string]func(string) (*os.File, error){"file": createTempFile, "dir": createTempDir}
	for _, errno := range []syscall.Errno{syscall.ENOLCK, syscall.EOPNOTSUPP, syscall.EINVAL, syscall.EBADF} {
		for kind, create := range creators {
			dir := t.TempDir()
			calls := 0
			failing := func(*os.File) error { calls++; return errno }
			name, release, err := lockedTemp(filepath.Join(dir, "out.mp4"), create, failing)
			if err == nil {
				release()
				t.Errorf("%s with lock error %v: got %s, want an error", kind, errno, name)
				continue
			}
			if !errors.Is(err, errno) || !strings.Contains(err.Error(), "file locks do not work") {
				t.Errorf("%s with lock error %v: error %q", kind, errno, err)
			}
			if calls != 1 {
				t.Errorf("%s with lock error %v: locked %d times, want 1 (no retry)", kind, errno, calls)
			}
			if entries, _ := os.ReadDir(dir); len(entries) != 0 {
				t.Errorf("%s with lock error %v left %v", kind, errno, entries)
			}
		}
	}
}

// TestLockedTempRetriesASweptTemporary: EWOULDBLOCK on a fresh temporary
// means a concurrent run is sweeping it; a new one is made, a bounded
// number of times.
func TestLockedTempRetriesASweptTemporary(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	dest := filepath.Join(dir, "out.mp4")
	calls := 0
	sweptOnce := func(f *os.File) error {
		calls++
		if calls == 1 {
			os.Remove(f.Name()) // what the sweeping run does next
			return syscall.EWOULDBLOCK
		}
		return flockExclusive(f)
	}
	name, release, err := lockedTemp(dest, createTempFile, sweptOnce)
	if err != nil {
		t.Fatal(err)
	}
	if calls != 2 {
		t.Errorf("locked %d times, want 2", calls)
	}
	// The temporary is held: a sweep leaves it alone.
	sweepStale(dest)
	if _, err := os.Stat(name); err != nil {
		t.Errorf("a sweep removed the held temporary: %v", err)
	}
	release()
	sweepStale(dest)
	if _, err := os.Stat(name); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a sweep kept the released temporary: %v", err)
	}

	// A lock that succeeds on a name already swept is retried too.
	calls = 0
	renamedAway := func(f *os.File) error {
		calls++
		if calls == 1 {
			os.Remove(f.Name())
		}
		return flockExclusive(f)
	}
	name, release, err = lockedTemp(dest, createTempFile, renamedAway)
	if err != nil || calls != 2 {
		t.Fatalf("lockedTemp after a swept name: %v, %d locks", err, calls)
	}
	if _, err := os.Stat(name); err != nil {
		t.Errorf("returned temporary %s: %v", name, err)
	}
	release()

	always := func(f *os.File) error { return syscall.EWOULDBLOCK }
	if _, _, err := lockedTemp(dest, createTempDir, always); err == nil || !strings.Contains(err.Error(), "swept by a concurrent run") {
		t.Errorf("lockedTemp with a lock always taken: %v", err)
	}
}
