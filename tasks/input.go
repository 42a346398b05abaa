package tasks

import (
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// source is where an original comes from, once checked: either an http(s)
// URL or a regular, non-empty local file inside one of the input roots.
type source struct {
	url  string // set for a remote original
	path string // set for a local original: cleaned, symlinks resolved
}

// resolveSource checks the url of a workflow. http and https URLs are
// accepted as they are; file:// URLs and absolute paths only when they name
// a regular, non-empty file inside one of Deps.InputRoots (compared after
// cleaning and resolving symbolic links, so ".." and links cannot leave a
// root). Anything else is refused with an error wrapping ErrBadInput.
func (p *Pipeline) resolveSource(raw string) (source, error) {
	if raw == "" {
		return source{}, fmt.Errorf("empty url: %w", ErrBadInput)
	}
	path := raw
	if !strings.HasPrefix(raw, "/") {
		u, err := url.Parse(raw)
		if err != nil {
			return source{}, fmt.Errorf("url %q: %w: %w", raw, err, ErrBadInput)
		}
		switch u.Scheme {
		case "http", "https":
			if u.Host == "" {
				return source{}, fmt.Errorf("url %q has no host: %w", u.Redacted(), ErrBadInput)
			}
			return source{url: u.String()}, nil
		case "file":
			if u.Host != "" && u.Host != "localhost" {
				return source{}, fmt.Errorf("url %q names another host: %w", raw, ErrBadInput)
			}
			path = u.Path
		case "":
			return source{}, fmt.Errorf("url %q is neither an http(s) URL nor an absolute path: %w", raw, ErrBadInput)
		default:
			return source{}, fmt.Errorf("url %q: scheme %q is not allowed (http, https, file): %w", u.Redacted(), u.Scheme, ErrBadInput)
		}
	}
	local, err := p.allowedLocalFile(path)
	if err != nil {
		return source{}, err
	}
	return source{path: local}, nil
}

// allowedLocalFile resolves path and checks that it is a regular, non-empty
// file inside an input root.
func (p *Pipeline) allowedLocalFile(path string) (string, error) {
	if len(p.deps.InputRoots) == 0 {
		return "", fmt.Errorf("local input %q refused: this worker allows no local inputs (--input-roots): %w", path, ErrBadInput)
	}
	if !filepath.IsAbs(path) {
		return "", fmt.Errorf("local input %q is not an absolute path: %w", path, ErrBadInput)
	}
	resolved, err := filepath.EvalSymlinks(filepath.Clean(path))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return "", fmt.Errorf("local input %q does not exist: %w", path, ErrBadInput)
		}
		return "", fmt.Errorf("local input %q: %w: %w", path, err, ErrBadInput)
	}
	inside := false
	for _, root := range p.deps.InputRoots {
		r, err := filepath.EvalSymlinks(filepath.Clean(root))
		if err == nil && within(r, resolved) {
			inside = true
			break
		}
	}
	if !inside {
		return "", fmt.Errorf("local input %q is outside the allowed input roots %q: %w", path, p.deps.InputRoots, ErrBadInput)
	}
	info, err := os.Stat(resolved)
	if err != nil {
		return "", fmt.Errorf("local input %q: %w: %w", path, err, ErrBadInput)
	}
	if err := checkRegularNonEmpty(path, info); err != nil {
		return "", err
	}
	return resolved, nil
}

// openLocal opens a resolved local input without following a symbolic link
// swapped in since it was checked, and checks the opened file again.
func openLocal(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return nil, fmt.Errorf("open local input %q: %w: %w", path, err, ErrBadInput)
	}
	info, err := f.Stat()
	if err == nil {
		err = checkRegularNonEmpty(path, info)
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

func checkRegularNonEmpty(path string, info fs.FileInfo) error {
	if !info.Mode().IsRegular() {
		return fmt.Errorf("local input %q is not a regular file: %w", path, ErrBadInput)
	}
	if info.Size() == 0 {
		return fmt.Errorf("local input %q is empty: %w", path, ErrBadInput)
	}
	return nil
}
