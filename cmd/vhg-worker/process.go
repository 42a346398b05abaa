package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// The process options of `celery worker` that a service manager's unit
// passes: --workdir, --umask, --pidfile and --logfile.

// applyProcessOptions changes directory and umask, before anything reads a
// relative path or creates a file.
func (f workerFlags) applyProcessOptions() error {
	if f.workdir != "" {
		if err := os.Chdir(f.workdir); err != nil {
			return fmt.Errorf("--workdir: %w", err)
		}
	}
	if f.umask != "" {
		mask, err := strconv.ParseUint(f.umask, 8, 32)
		if err != nil || mask > 0o777 {
			return fmt.Errorf("--umask: want an octal mask such as 022, not %q", f.umask)
		}
		syscall.Umask(int(mask))
	}
	return nil
}

// openLogFile opens --logfile for appending, its name expanded as Celery
// expands it for the node.
func openLogFile(pattern, node string) (*os.File, error) {
	name, err := expandNodeFile(pattern, node)
	if err != nil {
		return nil, err
	}
	return os.OpenFile(name, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
}

// writePidFile writes this process's id to --pidfile, its name expanded
// for the node, and returns the function that removes it. As Celery's
// Pidfile does, it refuses to start while the file names a live process
// and replaces a stale one.
func writePidFile(pattern, node string) (release func(), err error) {
	name, err := expandNodeFile(pattern, node)
	if err != nil {
		return nil, err
	}
	for range 2 {
		f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
		if errors.Is(err, fs.ErrExist) {
			if pid, alive := pidFileOwner(name); alive {
				return nil, fmt.Errorf("%s names process %d, which is running: is another worker using this pidfile?", name, pid)
			}
			if err := os.Remove(name); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return nil, fmt.Errorf("stale pidfile: %w", err)
			}
			continue
		}
		if err != nil {
			return nil, err
		}
		_, werr := fmt.Fprintf(f, "%d\n", os.Getpid())
		if cerr := f.Close(); werr == nil {
			werr = cerr
		}
		if werr != nil {
			os.Remove(name)
			return nil, werr
		}
		abs, _ := filepath.Abs(name)
		return func() { os.Remove(abs) }, nil
	}
	return nil, fmt.Errorf("%s: created by another process while starting", name)
}

// pidFileOwner reads the pid in a pidfile and whether that process runs.
func pidFileOwner(name string) (int, bool) {
	data, err := os.ReadFile(name)
	if err != nil {
		return 0, false
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil || pid <= 0 || pid == os.Getpid() {
		return pid, false
	}
	// Signal 0 checks existence; EPERM means it exists under another user.
	err = syscall.Kill(pid, 0)
	return pid, err == nil || errors.Is(err, syscall.EPERM)
}
