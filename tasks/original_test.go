package tasks

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestOriginalFileLayouts checks which original_file paths a step reads:
// the Go layout under folder_out and the original Python layout
// <temp dir>/tmpXXXXXXXX/<id>, and nothing else.
func TestOriginalFileLayouts(t *testing.T) {
	t.Parallel()
	out, temp, other := t.TempDir(), t.TempDir(), t.TempDir()
	p := New(Deps{OutputDir: out, SourceTempDirs: []string{temp}})
	const id = "0123456789abcdef0123456789abcdef"
	folder := filepath.Join(out, id)
	write := func(path string) string {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	goLayout := write(filepath.Join(folder, "source", id))
	pyLayout := write(filepath.Join(temp, "tmpa1b2_c3d", id))
	wrongID := write(filepath.Join(temp, "tmpzzzzzzzz", "another"))
	notMkdtemp := write(filepath.Join(temp, "mydir", id))
	elsewhere := write(filepath.Join(other, "tmpa1b2c3d4", id))
	open := write(filepath.Join(temp, "tmpopenopen", id))
	os.Chmod(filepath.Dir(open), 0o777)
	linkedDir := filepath.Join(temp, "tmplinklink")
	os.Symlink(filepath.Dir(pyLayout), linkedDir)
	linkedFile := filepath.Join(temp, "tmpfilelink", id)
	os.MkdirAll(filepath.Dir(linkedFile), 0o700)
	os.Symlink("/etc/passwd", linkedFile)

	for _, tc := range []struct {
		name, path, want string // want "" means accepted
	}{
		{"go layout", goLayout, ""},
		{"python layout", pyLayout, ""},
		{"another id", wrongID, "neither inside folder_out"},
		{"not an mkdtemp name", notMkdtemp, "neither inside folder_out"},
		{"not a temp dir", elsewhere, "neither inside folder_out"},
		{"system file", "/etc/passwd", "neither inside folder_out"},
		{"dot dot", temp + "/tmpa1b2_c3d/../tmpa1b2_c3d/" + id, "not a clean absolute path"},
		{"relative", "tmpa1b2_c3d/" + id, "not a clean absolute path"},
		{"directory writable by others", open, "writable by others"},
		{"linked directory", filepath.Join(linkedDir, id), "not a directory"},
		{"linked file", linkedFile, "not a regular file"},
		{"download ran on another host", filepath.Join(temp, "tmpgonegone", id), "does not exist on this host"},
	} {
		got, err := p.originalFile(map[string]any{"folder_out": folder, "id": id, "original_file": tc.path})
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case tc.want == "" && got != tc.path:
			t.Errorf("%s: got %q", tc.name, got)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want) || !errors.Is(err, ErrBadInput)):
			t.Errorf("%s: err = %v, want %q (bad input)", tc.name, err, tc.want)
		}
	}
	host, _ := os.Hostname()
	_, err := p.originalFile(map[string]any{"folder_out": folder, "id": id, "original_file": filepath.Join(temp, "tmpgonegone", id)})
	if err == nil || !strings.Contains(err.Error(), host) || !strings.Contains(err.Error(), "download_file ran on another host") {
		t.Errorf("missing temp source: %v, want the host name and where download_file ran", err)
	}
}

func TestDefaultSourceTempDirs(t *testing.T) {
	t.Setenv("TMPDIR", "/scratch/tmp/")
	t.Setenv("TEMP", "relative")
	t.Setenv("TMP", "/tmp")
	got := strings.Join(DefaultSourceTempDirs(), ",")
	if want := "/scratch/tmp,/tmp,/var/tmp,/usr/tmp"; got != want {
		t.Errorf("DefaultSourceTempDirs() = %s, want %s", got, want)
	}
}
