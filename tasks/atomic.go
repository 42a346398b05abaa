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
// returns its name and the function that releases its lock.
func tempSibling(path string) (string, func(), error) {
	sweepStale(path)
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return "", nil, fmt.Errorf("temporary file for %s: %w", path, err)
	}
	syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
	return f.Name(), func() { f.Close() }, nil
}

// tempDirSibling removes the stale temporary directories of dir and
// creates an empty one next to it, locked until release is called.
func tempDirSibling(dir string) (string, func(), error) {
	sweepStale(dir)
	tmp, err := os.MkdirTemp(filepath.Dir(dir), "."+filepath.Base(dir)+".tmp-*")
	if err != nil {
		return "", nil, fmt.Errorf("temporary directory for %s: %w", dir, err)
	}
	if err := os.Chmod(tmp, 0o755); err != nil {
		os.RemoveAll(tmp)
		return "", nil, fmt.Errorf("temporary directory for %s: %w", dir, err)
	}
	f, err := os.Open(tmp)
	if err != nil {
		os.RemoveAll(tmp)
		return "", nil, fmt.Errorf("temporary directory for %s: %w", dir, err)
	}
	syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
	return tmp, func() { f.Close() }, nil
}

// sweepStale removes the temporaries of path that no live run holds.
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
