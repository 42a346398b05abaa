//go:build integration

package ffmpeg

import (
	"bytes"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// makeSecret writes a small MPEG-TS clip of one flat colour, magenta, that
// no test pattern contains: a frame of it in an output means the secret
// was read.
func makeSecret(t *testing.T, path string) {
	t.Helper()
	argv := []string{"ffmpeg", "-hide_banner", "-nostdin", "-y",
		"-f", "lavfi", "-i", "color=c=0xFF00FF:size=64x48:rate=25:duration=1",
		"-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-f", "mpegts", fileURL(path)}
	if err := Run(t.Context(), argv, RunOptions{}); err != nil {
		t.Fatalf("making the secret: %v", err)
	}
}

// firstFrameIsMagenta decodes the first frame of a media file (any
// demuxer) and reports whether its first pixel is magenta.
func firstFrameIsMagenta(t *testing.T, path string) bool {
	t.Helper()
	var rgb bytes.Buffer
	argv := []string{"ffmpeg", "-hide_banner", "-nostdin", "-v", "error", "-i", fileURL(path),
		"-frames:v", "1", "-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:1"}
	if err := run(t.Context(), argv, &rgb, 0); err != nil || rgb.Len() < 3 {
		t.Logf("decoding %s: %v (%d bytes)", path, err, rgb.Len())
		return false
	}
	p := rgb.Bytes()
	return p[0] > 200 && p[1] < 50 && p[2] > 200
}

// TestHostileInputsRefused feeds playlists and concat lists named like
// videos, naming a local secret clip, to Probe and to the transcode: both
// refuse them with ErrInputRefused and nothing of the secret is written.
// A control run without the whitelists shows each input does reach the
// secret when nothing stops it.
func TestHostileInputsRefused(t *testing.T) {
	t.Parallel()
	requireFFmpeg(t)
	dir := t.TempDir()
	secret := filepath.Join(dir, "secret.ts")
	makeSecret(t, secret)
	hostile := map[string]string{
		// An HLS playlist may name any file by its absolute path.
		"hls.mp4": "#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXTINF:1,\n" + secret + "\n#EXT-X-ENDLIST\n",
		// A concat list may name a file next to it.
		"concat.mp4": "ffconcat version 1.0\nfile secret.ts\n",
	}
	for name, content := range hostile {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			input := filepath.Join(dir, name)
			if err := os.WriteFile(input, []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
			if !firstFrameIsMagenta(t, input) {
				t.Fatalf("control: ffmpeg without whitelists does not reach the secret through %s; the test proves nothing", name)
			}

			_, err := Probe(t.Context(), input)
			if !errors.Is(err, ErrInputRefused) || !strings.Contains(err.Error(), "input refused: Format not on whitelist") {
				t.Errorf("Probe(%s) = %v, want an error wrapping ErrInputRefused naming the whitelist", name, err)
			}

			output := filepath.Join(dir, name+".out.mp4")
			err = Run(t.Context(), TranscodeArgs(TranscodeOptions{
				Input: input, Output: output, Width: 64, Height: 48, BitrateKbps: 100, Preset: "ultrafast",
			}), RunOptions{})
			var exitErr *ExitError
			if !errors.As(err, &exitErr) || !errors.Is(err, ErrInputRefused) {
				t.Errorf("transcode of %s = %v, want an *ExitError wrapping ErrInputRefused", name, err)
			}
			if _, err := os.Stat(output); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("transcode of %s wrote %s (%v)", name, output, err)
			}
		})
	}
}

// TestSourceFormatsRead checks that every container of SourceFormats that
// ffmpeg can write is still read by Probe and by the transcode.
func TestSourceFormatsRead(t *testing.T) {
	t.Parallel()
	requireFFmpeg(t)
	dir := t.TempDir()
	containers := []struct{ muxer, video, wantFormat string }{
		{"mp4", "libx264", "mov,mp4,m4a,3gp,3g2,mj2"},
		{"mov", "libx264", "mov,mp4,m4a,3gp,3g2,mj2"},
		{"matroska", "libx264", "matroska,webm"},
		{"webm", "libvpx-vp9", "matroska,webm"},
		{"mpegts", "libx264", "mpegts"},
		{"avi", "mpeg4", "avi"},
		{"flv", "flv", "flv"},
		{"mpeg", "mpeg2video", "mpeg"},
		{"asf", "wmv2", "asf"},
		{"ogg", "libtheora", "ogg"},
	}
	for _, c := range containers {
		t.Run(c.muxer, func(t *testing.T) {
			t.Parallel()
			src := filepath.Join(dir, "src."+c.muxer)
			argv := []string{"ffmpeg", "-hide_banner", "-nostdin", "-y",
				"-f", "lavfi", "-i", "testsrc2=size=64x48:rate=25:duration=1",
				"-c:v", c.video, "-pix_fmt", "yuv420p", "-f", c.muxer, fileURL(src)}
			if err := Run(t.Context(), argv, RunOptions{}); err != nil {
				t.Fatalf("writing %s: %v", c.muxer, err)
			}
			r, err := Probe(t.Context(), src)
			if err != nil {
				t.Fatalf("Probe(%s): %v", c.muxer, err)
			}
			if r.FormatName != c.wantFormat {
				t.Errorf("format_name = %q, want %q", r.FormatName, c.wantFormat)
			}
			out := filepath.Join(dir, c.muxer+".out.mp4")
			err = Run(t.Context(), TranscodeArgs(TranscodeOptions{
				Input: src, Output: out, Width: 32, Height: 24, BitrateKbps: 50, Preset: "ultrafast",
			}), RunOptions{})
			if err != nil {
				t.Errorf("transcode of %s: %v", c.muxer, err)
			}
		})
	}
}

// TestProbeURLRefusesPlaylist serves an HLS playlist naming a segment on
// the same server: ProbeURL refuses the playlist and never asks for the
// segment, which ffprobe fetches when the format is not restricted.
func TestProbeURLRefusesPlaylist(t *testing.T) {
	t.Parallel()
	requireFFmpeg(t)
	var segmentHits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/video.mp4":
			fmt.Fprintf(w, "#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXTINF:1,\nhttp://%s/internal/secret.ts\n#EXT-X-ENDLIST\n", r.Host)
		default:
			segmentHits.Add(1)
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(srv.Close)

	// Control: the same probe without the format whitelist follows it.
	control := []string{"ffprobe", "-v", "error", "-protocol_whitelist", "http,https,tcp,tls", "-show_format", srv.URL + "/video.mp4"}
	_ = run(t.Context(), control, nil, 0)
	if segmentHits.Load() == 0 {
		t.Fatal("control: ffprobe did not follow the playlist; the test proves nothing")
	}
	segmentHits.Store(0)

	_, err := ProbeURL(t.Context(), srv.URL+"/video.mp4", 0)
	if !errors.Is(err, ErrInputRefused) {
		t.Errorf("ProbeURL(playlist) = %v, want an error wrapping ErrInputRefused", err)
	}
	if n := segmentHits.Load(); n != 0 {
		t.Errorf("ProbeURL fetched %d URLs the playlist names", n)
	}
}

// TestProbeFormatsPlaylist: a caller that wrote an HLS playlist probes it
// by naming the demuxers it needs.
func TestProbeFormatsPlaylist(t *testing.T) {
	t.Parallel()
	requireFFmpeg(t)
	dir := t.TempDir()
	src := makeTestPattern(t, dir, TestPatternOptions{Output: "src.mp4", Duration: time.Second, Width: 64, Height: 48})
	playlist := filepath.Join(dir, "playlist.m3u8")
	err := Run(t.Context(), HLSArgs(HLSOptions{Input: src, PlaylistPath: playlist,
		SegmentPattern: filepath.Join(dir, "chunk%03d.ts"), SegmentSeconds: 1}), RunOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Probe(t.Context(), playlist); !errors.Is(err, ErrInputRefused) {
		t.Errorf("Probe(playlist) = %v, want it refused", err)
	}
	r, err := ProbeFormats(t.Context(), playlist, []string{"hls", "mpegts"})
	if err != nil {
		t.Fatal(err)
	}
	if v, ok := r.Video(); !ok || v.Width != 64 || r.FormatName != "hls" {
		t.Errorf("ProbeFormats(playlist) = %+v", r)
	}
}
