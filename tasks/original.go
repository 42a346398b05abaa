package tasks

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"syscall"

	vhgctx "github.com/vhg/vhg-worker/context"
)

// Where original_file may point.
//
// The Go download_file stores the source at <folder_out>/source/<id>, on
// the shared storage every step reads. The original Python download_file
// stored it at os.path.join(tempfile.mkdtemp(), id): <T>/tmpXXXXXXXX/<id>,
// where T is the Python worker's temporary directory (its first usable
// $TMPDIR, $TEMP, $TMP, /tmp, /var/tmp, /usr/tmp) and tmpXXXXXXXX a fresh
// 0700 directory. While both kinds of worker share a queue, a context may
// carry either, so a step accepts original_file when it is
//
//   - inside folder_out, or
//   - exactly <T>/tmpXXXXXXXX/<id> for one of Deps.SourceTempDirs, with
//     the context's own id as file name, a directory name mkdtemp can
//     produce, no symbolic link on the way (the directory and the file
//     are checked with lstat), the directory not writable by group or
//     others, and the file a regular one.
//
// Anything else (another directory, "..", a link, another id) is refused
// as bad input, as before. A temp path that does not exist here means that
// download_file ran on another host: the error says so, since that file
// lives on the other host's local disk.

// mkdtempName matches the directories Python's tempfile.mkdtemp() creates
// with its default prefix: "tmp" and 8 characters of
// "abcdefghijklmnopqrstuvwxyz0123456789_".
var mkdtempName = regexp.MustCompile(`^tmp[a-z0-9_]{8}$`)

// DefaultSourceTempDirs returns the directories Python's tempfile module
// tries, in its order: $TMPDIR, $TEMP, $TMP, /tmp, /var/tmp, /usr/tmp.
func DefaultSourceTempDirs() []string {
	var dirs []string
	seen := map[string]bool{}
	for _, d := range []string{os.Getenv("TMPDIR"), os.Getenv("TEMP"), os.Getenv("TMP"), "/tmp", "/var/tmp", "/usr/tmp"} {
		if d == "" || !filepath.IsAbs(d) {
			continue
		}
		d = filepath.Clean(d)
		if !seen[d] {
			seen[d] = true
			dirs = append(dirs, d)
		}
	}
	return dirs
}

// originalFile returns the context's original_file once it is a path a
// step may read (see above): it comes off the broker like the rest of the
// context.
func (p *Pipeline) originalFile(c vhgctx.Context) (string, error) {
	path, err := c.OriginalFile()
	if err != nil {
		return "", err
	}
	out, err := c.FolderOut()
	if err != nil {
		return "", err
	}
	if !filepath.IsAbs(path) || filepath.Clean(path) != path {
		return "", fmt.Errorf("original_file %q is not a clean absolute path: %w", path, ErrBadInput)
	}
	if within(filepath.Clean(out), path) {
		return path, nil
	}
	id, _ := c.ID()
	dir := filepath.Dir(path)
	root := filepath.Dir(dir)
	if id == "" || filepath.Base(path) != id || !mkdtempName.MatchString(filepath.Base(dir)) || !p.isSourceTempDir(root) {
		return "", fmt.Errorf("original_file %q is neither inside folder_out %q nor where the original download_file puts a source (<temp dir>/tmpXXXXXXXX/<id>, temp dirs %q): %w",
			path, out, p.deps.SourceTempDirs, ErrBadInput)
	}
	if err := checkMkdtemp(dir); err != nil {
		return "", err
	}
	info, err := os.Lstat(path)
	if err != nil {
		return "", fmt.Errorf("%w: %w", hostLocal(path, err), ErrBadInput)
	}
	if !info.Mode().IsRegular() {
		return "", fmt.Errorf("original_file %q is not a regular file: %w", path, ErrBadInput)
	}
	return path, nil
}

// isSourceTempDir reports whether dir is one of Deps.SourceTempDirs.
func (p *Pipeline) isSourceTempDir(dir string) bool {
	for _, d := range p.deps.SourceTempDirs {
		if filepath.Clean(d) == dir {
			return true
		}
	}
	return false
}

// checkMkdtemp checks that dir looks like a directory tempfile.mkdtemp()
// made: a real directory (not a link), that neither group nor others may
// write to.
func checkMkdtemp(dir string) error {
	info, err := os.Lstat(dir)
	if err != nil {
		return fmt.Errorf("%w: %w", hostLocal(dir, err), ErrBadInput)
	}
	if !info.IsDir() {
		return fmt.Errorf("original_file's directory %q is not a directory (a symbolic link?): %w", dir, ErrBadInput)
	}
	if info.Mode().Perm()&0o022 != 0 {
		return fmt.Errorf("original_file's directory %q is writable by others (mode %v), unlike what mkdtemp creates: %w", dir, info.Mode().Perm(), ErrBadInput)
	}
	return nil
}

// hostLocal explains why a source in a Python worker's temp dir cannot be
// read here.
func hostLocal(path string, err error) error {
	host, _ := os.Hostname()
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("original_file %q does not exist on this host (%s): download_file ran on another host and left the source in that host's local temp dir; "+
			"a Python worker's download is readable only on its own host (see README, Migrating from the Python workers)", path, host)
	case errors.Is(err, fs.ErrPermission) || errors.Is(err, syscall.EACCES):
		return fmt.Errorf("original_file %q on %s is not readable by this worker (uid %d): mkdtemp makes 0700 directories, so run the Go and Python workers as the same user: %w",
			path, host, os.Getuid(), err)
	}
	return fmt.Errorf("original_file %q on %s: %w", path, host, err)
}
