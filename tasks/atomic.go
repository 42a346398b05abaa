package tasks

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// Every output appears under its final name in one rename, so that a step
// that crashes or runs twice (acks_late redelivers it) never leaves a half
// written file where a later step or a player reads it.

// writeFileAtomic writes data to a temporary file next to path, syncs it and
// renames it over path.
func writeFileAtomic(path string, data []byte) error {
	_, err := copyInto(path, bytes.NewReader(data))
	return err
}

// Temporary names are locked (flock) by the run writing them until it is
// done, so that a run killed halfway (kill -9, a power cut) leaves an
// unlocked temporary behind, which the next run of the step removes; a
// temporary still locked belongs to a live run (the same step redelivered
// while it still runs elsewhere) and is left alone.

// tempSibling removes the stale temporary files of path, creates an empty
// one next to it, named so that no step mistakes it for an output, and
// returns its name and the function that releases its lock. It fails when
// the temporary cannot be locked: without the lock, the next run of the
// step would take this live temporary for a stale one and remove it.
func tempSibling(path string) (string, func(), error) {
	return lockedTemp(path, createTempFile, flockExclusive)
}

// tempDirSibling removes the stale temporary directories of dir and
// creates an empty one next to it, locked until release is called. It
// fails when the lock cannot be taken, as tempSibling does.
func tempDirSibling(dir string) (string, func(), error) {
	return lockedTemp(dir, createTempDir, flockExclusive)
}

// lockFunc takes the lock that marks an open temporary as in use without
// waiting for it; tests pass one that fails.
type lockFunc func(f *os.File) error

// flockExclusive is the lockFunc of the tasks: flock(LOCK_EX|LOCK_NB).
func flockExclusive(f *os.File) error {
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if !errors.Is(err, syscall.EINTR) {
			return err
		}
	}
}

// tempAttempts is how many fresh temporaries lockedTemp tries when a
// concurrent sweep takes the one it just created.
const tempAttempts = 3

// lockedTemp sweeps the stale temporaries of path, creates a new one with
// create and locks it with lock.
//
// The errors of lock do not all mean the same. EWOULDBLOCK on a temporary
// created a moment ago means that a concurrent run of the same step (a
// redelivery) swept it between its creation and its lock: that run holds
// the lock and is removing the temporary, so a new one is made. Any other
// error (ENOLCK from an NFS mount without a lock manager, EOPNOTSUPP or
// EINVAL from a file system that has no flock, EBADF, ...) says that locks
// do not work here at all, and the step fails: going on would let any
// concurrent or later run remove this temporary while it is written, and
// a silent failure is what let that pass before. A lock that succeeds on a
// temporary already swept (its name removed or reused) is also retried.
func lockedTemp(path string, create func(path string) (*os.File, error), lock lockFunc) (string, func(), error) {
	sweepStale(path)
	for attempt := 1; ; attempt++ {
		f, err := create(path)
		if err != nil {
			return "", nil, err
		}
		name := f.Name()
		err = lock(f)
		if err == nil && stillNamed(name, f) {
			return name, func() { f.Close() }, nil
		}
		f.Close()
		if err != nil && !errors.Is(err, syscall.EWOULDBLOCK) {
			os.RemoveAll(name)
			return "", nil, fmt.Errorf("lock the temporary %s: %w (file locks do not work on this file system; on NFS, run the lock service)", name, err)
		}
		if attempt == tempAttempts {
			return "", nil, fmt.Errorf("temporary for %s: swept by a concurrent run %d times in a row", path, attempt)
		}
	}
}

// createTempFile creates an empty temporary file next to path.
func createTempFile(path string) (*os.File, error) {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return nil, fmt.Errorf("temporary file for %s: %w", path, err)
	}
	return f, nil
}

// createTempDir creates an empty temporary directory next to dir, readable
// by all once renamed into place, and opens it.
func createTempDir(dir string) (*os.File, error) {
	tmp, err := os.MkdirTemp(filepath.Dir(dir), "."+filepath.Base(dir)+".tmp-*")
	if err != nil {
		return nil, fmt.Errorf("temporary directory for %s: %w", dir, err)
	}
	if err := os.Chmod(tmp, 0o755); err != nil {
		os.RemoveAll(tmp)
		return nil, fmt.Errorf("temporary directory for %s: %w", dir, err)
	}
	f, err := os.Open(tmp)
	if err != nil {
		os.RemoveAll(tmp)
		return nil, fmt.Errorf("temporary directory for %s: %w", dir, err)
	}
	return f, nil
}

// stillNamed reports whether name is still the file f has open.
func stillNamed(name string, f *os.File) bool {
	a, err := os.Stat(name)
	if err != nil {
		return false
	}
	b, err := f.Stat()
	return err == nil && os.SameFile(a, b)
}

// sweepStale removes the temporaries of path that no live run holds. A
// temporary it cannot lock, whatever the reason, is left alone: where
// locks do not work, lockedTemp fails the step instead.
func sweepStale(path string) {
	pattern := filepath.Join(filepath.Dir(path), "."+globEscape(filepath.Base(path))+".tmp-*")
	names, _ := filepath.Glob(pattern)
	for _, name := range names {
		f, err := os.Open(name)
		if err != nil {
			continue
		}
		if syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) == nil {
			os.RemoveAll(name)
		}
		f.Close()
	}
}

// globEscape quotes the characters filepath.Match treats specially.
func globEscape(s string) string {
	var b []byte
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '*', '?', '[', '\\':
			b = append(b, '\\')
		}
		b = append(b, s[i])
	}
	return string(b)
}

// replaceDir puts the finished directory tmp in place of dir: an existing
// dir is first moved aside and removed afterwards, so dir always holds one
// complete build. Two runs of the same step (a message redelivered while
// the first run still goes on) may race here; the last one wins, and
// neither fails.
func replaceDir(tmp, dir string) error {
	var err error
	for range 5 {
		if err = replaceDirOnce(tmp, dir); err == nil || !errors.Is(err, errDirTaken) {
			return err
		}
	}
	return err
}

// errDirTaken is wrapped when another run put dir back between our move
// aside and our rename.
var errDirTaken = errors.New("directory taken meanwhile")

func replaceDirOnce(tmp, dir string) error {
	var old string
	if _, err := os.Lstat(dir); err == nil {
		aside, release, err := tempDirSibling(dir)
		if err != nil {
			return err
		}
		defer release()
		old = filepath.Join(aside, "old")
		defer os.RemoveAll(aside)
		if err := os.Rename(dir, old); err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				old = "" // another run moved it first
			} else {
				return fmt.Errorf("move %s aside: %w", dir, err)
			}
		}
	}
	if err := os.Rename(tmp, dir); err != nil {
		if errors.Is(err, syscall.ENOTEMPTY) || errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("rename %s to %s: %w: %w", tmp, dir, errDirTaken, err)
		}
		if old != "" {
			os.Rename(old, dir) // best effort: put the previous build back
		}
		return fmt.Errorf("rename %s to %s: %w", tmp, dir, err)
	}
	return nil
}

// copyInto writes r to a temporary file next to dest and renames it to dest.
func copyInto(dest string, r io.Reader) (int64, error) {
	tmp, release, err := tempSibling(dest)
	if err != nil {
		return 0, err
	}
	defer release()
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		os.Remove(tmp)
		return 0, fmt.Errorf("write %s: %w", dest, err)
	}
	n, err := io.Copy(f, r)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(tmp, 0o644)
	}
	if err == nil {
		err = os.Rename(tmp, dest)
	}
	if err != nil {
		os.Remove(tmp)
		return 0, fmt.Errorf("write %s: %w", dest, err)
	}
	return n, nil
}
