package context

import (
	"errors"
	"fmt"
	"path/filepath"
	"regexp"
	"strings"
)

// ErrUnsafePath is wrapped by every error Validate returns.
var ErrUnsafePath = errors.New("unsafe path")

// idPattern is what an id may look like: a uuid4 hex, or any short token of
// letters, digits, '_' and '-'.
var idPattern = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// Validate checks the parts of the context that become file names, before a
// task touches the file system:
//
//   - folder_out must be an absolute path that, once cleaned, lies strictly
//     inside outputRoot (so "/out/../etc" and "/etc" are refused for root
//     "/out"); outputRoot must be absolute.
//   - folder_out must not hold control characters (a newline would break
//     playlists and logs) or '%' (ffmpeg's HLS muxer reads it as a pattern in
//     segment paths).
//   - id, when present, must match ^[A-Za-z0-9_-]{1,64}$.
//
// Shell metacharacters in folder_out are allowed: no command goes through a
// shell, and ffmpeg gets every path as a file: URL. Symbolic links are not
// resolved; the output root is the worker's own configuration.
//
// Every error wraps ErrUnsafePath; a missing folder_out is also a *KeyError.
func (c Context) Validate(outputRoot string) error {
	if outputRoot == "" || !filepath.IsAbs(outputRoot) {
		return fmt.Errorf("context: output root %q is not an absolute path: %w", outputRoot, ErrUnsafePath)
	}
	root := filepath.Clean(outputRoot)

	out, err := c.FolderOut()
	if err != nil {
		return fmt.Errorf("%w (%w)", err, ErrUnsafePath)
	}
	if !filepath.IsAbs(out) {
		return fmt.Errorf("context: folder_out %q is not an absolute path: %w", out, ErrUnsafePath)
	}
	if i := strings.IndexFunc(out, func(r rune) bool { return r < 0x20 || r == 0x7f || r == '%' }); i >= 0 {
		return fmt.Errorf("context: folder_out %q holds %q: %w", out, out[i], ErrUnsafePath)
	}
	prefix := root
	if !strings.HasSuffix(prefix, string(filepath.Separator)) { // root "/" is already a prefix
		prefix += string(filepath.Separator)
	}
	if clean := filepath.Clean(out); !strings.HasPrefix(clean, prefix) {
		return fmt.Errorf("context: folder_out %q is not inside %q: %w", out, root, ErrUnsafePath)
	}

	if v, ok := c[KeyID]; ok && v != nil {
		id, err := c.String(KeyID)
		if err != nil {
			return fmt.Errorf("%w (%w)", err, ErrUnsafePath)
		}
		if !idPattern.MatchString(id) {
			return fmt.Errorf("context: id %q does not match %s: %w", id, idPattern, ErrUnsafePath)
		}
	}
	return nil
}
