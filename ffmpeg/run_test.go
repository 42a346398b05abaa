package ffmpeg

import (
	"errors"
	"strings"
	"testing"
)

func TestExitErrorMessage(t *testing.T) {
	t.Parallel()
	tests := []struct {
		err  ExitError
		want string
	}{
		{ExitError{Code: 1, Stderr: "[in#0] something\nfile:/nope.mp4: No such file or directory\n"},
			"ffmpeg: exit status 1: file:/nope.mp4: No such file or directory"},
		{ExitError{Code: 255, Stderr: "frame=1 fps=0\rframe=2 fps=0\rExiting normally, received signal 15.\r\n\n"},
			"ffmpeg: exit status 255: Exiting normally, received signal 15."},
		{ExitError{Code: 1}, "ffmpeg: exit status 1"},
		{ExitError{Code: -1, Stderr: "\n \n"}, "ffmpeg: exit status -1"},
	}
	for _, tt := range tests {
		if got := tt.err.Error(); got != tt.want {
			t.Errorf("Error() = %q, want %q", got, tt.want)
		}
	}
}

func TestTailBuffer(t *testing.T) {
	t.Parallel()
	b := &tailBuffer{max: 8}
	for _, s := range []string{"abc", "defgh", "ijklmnopqrstuvwxyz", "", "12"} {
		if n, err := b.Write([]byte(s)); n != len(s) || err != nil {
			t.Fatalf("Write(%q) = %d, %v", s, n, err)
		}
	}
	if got := b.String(); got != "uvwxyz12" {
		t.Errorf("String() = %q, want %q", got, "uvwxyz12")
	}
}

func TestRunNotFound(t *testing.T) {
	t.Parallel()
	err := Run(t.Context(), []string{"vhg-no-such-ffmpeg", "-version"}, RunOptions{})
	if !errors.Is(err, ErrNotFound) {
		t.Fatalf("Run = %v, want ErrNotFound", err)
	}
	if want := "ffmpeg: vhg-no-such-ffmpeg not found in PATH (apt-get install ffmpeg)"; err.Error() != want {
		t.Errorf("Error() = %q, want %q", err, want)
	}
}

func TestRunEmpty(t *testing.T) {
	t.Parallel()
	if err := Run(t.Context(), nil, RunOptions{}); err == nil || !strings.HasPrefix(err.Error(), "ffmpeg: ") {
		t.Fatalf("Run(nil) = %v, want an ffmpeg: error", err)
	}
}
