package context

import (
	"errors"
	"testing"
)

func TestTargetWidth(t *testing.T) {
	t.Parallel()
	tests := []struct {
		trackW, trackH, targetH int
		want                    int
	}{
		{1280, 720, 144, 256},  // exact: 256
		{1280, 720, 240, 426},  // 426.67 rounds down to an even 426
		{1280, 720, 360, 640},  // exact
		{1280, 720, 720, 1280}, // same size
		{1920, 1080, 360, 640}, // 360/1080 is inexact in float64 but lands on 640
		{1920, 1080, 1080, 1920},
		{640, 360, 180, 320},
		{720, 576, 360, 450},   // 4:5 pixels: 450 exactly
		{1440, 1080, 156, 206}, // float64 gives 103.99999: Python says 206, so do we
		{720, 576, 184, 228},   // same effect: 229.99999 -> 228
		{1280, 544, 1080, 2540},
		{0, 720, 144, 0},
		{1280, 0, 144, 0},
		{1280, 720, 0, 0},
		{1280, 720, -144, 0},
	}
	for _, tt := range tests {
		if got := TargetWidth(tt.trackW, tt.trackH, tt.targetH); got != tt.want {
			t.Errorf("TargetWidth(%d, %d, %d) = %d, want %d", tt.trackW, tt.trackH, tt.targetH, got, tt.want)
		}
	}
}

func TestPathHelpers(t *testing.T) {
	t.Parallel()
	c := Context{KeyFolderOut: "/out/abc/", KeyTargetWidth: 640, KeyTargetHeight: int64(360)}
	tests := []struct {
		name string
		get  func() (string, error)
		want string
	}{
		{"DimAsString", c.DimAsString, "640x360"},
		{"SourceFolder", c.SourceFolder, "/out/abc/source"},
		{"TranscodedFolder", c.TranscodedFolder, "/out/abc/encoding"},
		{"TranscodedFile", c.TranscodedFile, "/out/abc/encoding/640x360.mp4"},
		{"HLSFolder", c.HLSFolder, "/out/abc/hls"},
		{"HLSGlobalPlaylist", c.HLSGlobalPlaylist, "/out/abc/hls/playlist.m3u8"},
		{"HLSTranscodedFolder", c.HLSTranscodedFolder, "/out/abc/hls/640x360"},
		{"HLSTranscodedPlaylist", c.HLSTranscodedPlaylist, "/out/abc/hls/640x360/playlist.m3u8"},
		{"DashFolder", c.DashFolder, "/out/abc/dash"},
		{"DashMPDFilePath", c.DashMPDFilePath, "/out/abc/dash/playlist.mpd"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := tt.get()
			if err != nil || got != tt.want {
				t.Errorf("%s() = %q, %v; want %q", tt.name, got, err, tt.want)
			}
		})
	}
}

func TestPathHelpersMissingKeys(t *testing.T) {
	t.Parallel()
	noFolder := Context{KeyTargetWidth: 640, KeyTargetHeight: 360}
	noSize := Context{KeyFolderOut: "/out/abc"}
	tests := []struct {
		name    string
		get     func() (string, error)
		wantKey string
	}{
		{"SourceFolder", noFolder.SourceFolder, KeyFolderOut},
		{"TranscodedFolder", noFolder.TranscodedFolder, KeyFolderOut},
		{"TranscodedFile/folder", noFolder.TranscodedFile, KeyFolderOut},
		{"TranscodedFile/size", noSize.TranscodedFile, KeyTargetWidth},
		{"HLSFolder", noFolder.HLSFolder, KeyFolderOut},
		{"HLSGlobalPlaylist", noFolder.HLSGlobalPlaylist, KeyFolderOut},
		{"HLSTranscodedFolder", noSize.HLSTranscodedFolder, KeyTargetWidth},
		{"HLSTranscodedPlaylist", noSize.HLSTranscodedPlaylist, KeyTargetWidth},
		{"DashFolder", noFolder.DashFolder, KeyFolderOut},
		{"DashMPDFilePath", noFolder.DashMPDFilePath, KeyFolderOut},
		{"DimAsString", noSize.DimAsString, KeyTargetWidth},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := tt.get()
			var ke *KeyError
			if !errors.As(err, &ke) || ke.Key != tt.wantKey || !errors.Is(err, ErrMissingKey) {
				t.Fatalf("%s() = %q, %v; want a missing-key error for %q", tt.name, got, err, tt.wantKey)
			}
		})
	}
}
