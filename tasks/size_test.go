package tasks

import (
	"errors"
	"strings"
	"testing"

	vhgctx "github.com/vhg/vhg-worker/context"
)

func TestTargetSize(t *testing.T) {
	t.Parallel()
	tests := []struct {
		trackW, trackH, target int
		want                   int
		wantErr                string
	}{
		{1280, 720, 144, 256, ""}, // the captured workflow
		{1280, 720, 240, 426, ""},
		{640, 360, 180, 320, ""},
		{640, 360, 360, 640, ""},
		{1920, 1080, 720, 1280, ""},
		{1440, 1080, 156, 206, ""}, // float rounding, as in Python
		{720, 576, 360, 450, ""},
		{640, 360, 720, 0, "refusing to upscale"},
		{640, 360, 361, 0, "not a positive even number"},
		{640, 360, -2, 0, "not a positive even number"},
	}
	for _, tt := range tests {
		c := vhgctx.Context{vhgctx.KeyTrackWidth: tt.trackW, vhgctx.KeyTrackHeight: tt.trackH, vhgctx.KeyTargetHeight: tt.target}
		got, err := targetSize(c)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !errors.Is(err, ErrBadInput) {
				t.Errorf("targetSize(%dx%d -> %d) = %d, %v; want error %q", tt.trackW, tt.trackH, tt.target, got, err, tt.wantErr)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("targetSize(%dx%d -> %d) = %d, %v; want %d", tt.trackW, tt.trackH, tt.target, got, err, tt.want)
		}
	}
}

func TestTargetSizeMissingTrack(t *testing.T) {
	t.Parallel()
	_, err := targetSize(vhgctx.Context{vhgctx.KeyTargetHeight: 360})
	if !errors.Is(err, vhgctx.ErrMissingKey) {
		t.Fatalf("targetSize without track size: %v, want ErrMissingKey", err)
	}
}
