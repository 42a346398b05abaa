//go:build integration

package main

// These tests run "vhg-worker encode"'s code path with the real ffmpeg on
// clips made with ffmpeg.TestPatternArgs. They fail, not skip, when ffmpeg
// is missing.

import (
	"bytes"
	"encoding/xml"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vhg/vhg-worker/ffmpeg"
	"github.com/vhg/vhg-worker/protocol"
	"github.com/vhg/vhg-worker/tasks"
)

// encodeTestClip writes a 4 s test pattern (with a tone when audio is set).
func encodeTestClip(t *testing.T, path string, width, height int, audio bool) string {
	t.Helper()
	if _, err := exec.LookPath("ffmpeg"); err != nil {
		t.Fatal("ffmpeg is required by the encode tests and is not in PATH: apt-get install -y ffmpeg")
	}
	err := ffmpeg.Run(t.Context(), ffmpeg.TestPatternArgs(ffmpeg.TestPatternOptions{
		Output: path, Duration: 4 * time.Second, Width: width, Height: height, Audio: audio, Preset: "ultrafast",
	}), ffmpeg.RunOptions{})
	if err != nil {
		t.Fatalf("making the test clip: %v", err)
	}
	return path
}

func testRenditions(t *testing.T, s string) []tasks.Rendition {
	t.Helper()
	r, err := tasks.ParseRenditions(s)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// mpd is the part of a DASH manifest the test reads.
type mpd struct {
	Periods []struct {
		AdaptationSets []struct {
			ContentType     string `xml:"contentType,attr"`
			Representations []struct {
				ID        string `xml:"id,attr"`
				Width     int    `xml:"width,attr"`
				Height    int    `xml:"height,attr"`
				Bandwidth int    `xml:"bandwidth,attr"`
			} `xml:"Representation"`
		} `xml:"AdaptationSet"`
	} `xml:"Period"`
}

func TestEncodeWorkflow(t *testing.T) {
	t.Parallel()
	src := encodeTestClip(t, filepath.Join(t.TempDir(), "source clip.mp4"), 640, 360, true)
	out := t.TempDir()
	var lines bytes.Buffer
	res, err := encode(t.Context(), encodeConfig{
		Input:       src,
		Deps:        tasks.Deps{OutputDir: out, Renditions: testRenditions(t, "180:300,360:800"), Preset: "ultrafast"},
		Concurrency: 2,
		Out:         &lines,
	})
	if err != nil {
		t.Fatalf("encode: %v\n%s", err, lines.String())
	}
	t.Logf("status lines:\n%s", lines.String())

	// The master lists both variants, and each variant has its size.
	master, err := os.ReadFile(res.Master)
	if err != nil {
		t.Fatal(err)
	}
	wantMaster := "#EXTM3U\n#EXT-X-VERSION:3\n" +
		"#EXT-X-STREAM-INF:BANDWIDTH=428000,RESOLUTION=320x180,CODECS=\"avc1.4d401f,mp4a.40.2\"\n320x180/playlist.m3u8\n" +
		"#EXT-X-STREAM-INF:BANDWIDTH=928000,RESOLUTION=640x360,CODECS=\"avc1.4d401f,mp4a.40.2\"\n640x360/playlist.m3u8\n"
	if string(master) != wantMaster {
		t.Errorf("master:\n%s\nwant:\n%s", master, wantMaster)
	}
	for _, size := range []struct{ w, h int }{{320, 180}, {640, 360}} {
		variant := filepath.Join(filepath.Dir(res.Master), strconv.Itoa(size.w)+"x"+strconv.Itoa(size.h), "playlist.m3u8")
		probe, err := ffmpeg.ProbeFormats(t.Context(), variant, []string{"hls", "mpegts"})
		if err != nil {
			t.Fatalf("probe %s: %v", variant, err)
		}
		v, ok := probe.Video()
		if !ok || v.Width != size.w || v.Height != size.h {
			t.Errorf("%s: video %+v, want %dx%d", variant, v, size.w, size.h)
		}
		if _, ok := probe.Audio(); !ok {
			t.Errorf("%s has no audio", variant)
		}
	}

	// The MPD has one video representation per rendition and the audio.
	data, err := os.ReadFile(res.MPD)
	if err != nil {
		t.Fatal(err)
	}
	var m mpd
	if err := xml.Unmarshal(data, &m); err != nil {
		t.Fatalf("parse %s: %v", res.MPD, err)
	}
	var video []string
	audio := 0
	for _, p := range m.Periods {
		for _, set := range p.AdaptationSets {
			for _, r := range set.Representations {
				if set.ContentType == "audio" {
					audio++
					continue
				}
				video = append(video, strconv.Itoa(r.Width)+"x"+strconv.Itoa(r.Height))
			}
		}
	}
	if strings.Join(video, ",") != "320x180,640x360" || audio != 1 {
		t.Errorf("MPD representations: video %v, %d audio; want 320x180,640x360 and 1 audio\n%s", video, audio, data)
	}

	// Statuses: PROGRESS (monotonic per rendition), a PARTIAL per
	// rendition, COMPLETE last, all for the root task.
	s := res.Statuses
	partial, progress := 0, map[string]float64{}
	for i, meta := range s {
		if meta.TaskID != res.TaskID {
			t.Errorf("status %d is for %s, want the root %s", i, meta.TaskID, res.TaskID)
		}
		r, _ := meta.Result.(map[string]any)
		switch meta.Status {
		case tasks.StateProgress:
			rendition, _ := r["rendition"].(string)
			p := toFloat(r["percent"])
			if p < progress[rendition] || p > 100 {
				t.Errorf("PROGRESS of %s went from %v to %v", rendition, progress[rendition], p)
			}
			progress[rendition] = p
		case tasks.StatePartial:
			partial++
			if hls, _ := r["hls"].(string); !strings.HasSuffix(hls, "/playlist.m3u8") || !fileExists(hls) {
				t.Errorf("PARTIAL hls = %v", r["hls"])
			}
		case tasks.StateComplete:
			if i != len(s)-1 {
				t.Errorf("COMPLETE is status %d of %d, want the last", i+1, len(s))
			}
		default:
			t.Errorf("unexpected status %s: %v", meta.Status, meta.Result)
		}
	}
	if partial != 2 || len(progress) != 2 || s[len(s)-1].Status != tasks.StateComplete {
		t.Errorf("%d PARTIAL, PROGRESS for %v, last %s; want 2 PARTIAL, 2 renditions in progress, COMPLETE last", partial, progress, s[len(s)-1].Status)
	}
	for rendition, p := range progress {
		if p != 100 {
			t.Errorf("PROGRESS of %s ended at %v, want 100", rendition, p)
		}
	}
}

// TestEncodeBadInputs gives encode inputs that cannot be encoded: each ends
// with a FAILURE status whose message says why, and nothing is written.
func TestEncodeBadInputs(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.NotFoundHandler())
	t.Cleanup(srv.Close)
	outside := filepath.Join(t.TempDir(), "outside.mp4")
	encodeTestClip(t, outside, 640, 360, false)

	tests := []struct {
		name       string
		input      func(dir string) string
		renditions string
		wantErr    string
	}{
		{name: "404 URL", input: func(string) string { return srv.URL + "/missing.mp4" }, wantErr: "404 Not Found"},
		{name: "not a video", input: func(dir string) string {
			p := filepath.Join(dir, "notes.mp4")
			os.WriteFile(p, []byte("just text, no video\n"), 0o644)
			return p
		}, wantErr: "not a media file"},
		{name: "audio only", input: func(dir string) string {
			p := filepath.Join(dir, "tone.m4a")
			argv := []string{"ffmpeg", "-hide_banner", "-nostdin", "-y", "-f", "lavfi", "-i", "sine=duration=2", "-c:a", "aac", "-f", "mp4", "file:" + p}
			if err := ffmpeg.Run(t.Context(), argv, ffmpeg.RunOptions{}); err != nil {
				t.Fatal(err)
			}
			return p
		}, wantErr: "has no video stream"},
		{name: "zero bytes", input: func(dir string) string {
			p := filepath.Join(dir, "empty.mp4")
			os.WriteFile(p, nil, 0o644)
			return p
		}, wantErr: "is empty"},
		{name: "outside the input roots", input: func(dir string) string {
			p := filepath.Join(dir, "link.mp4")
			os.Symlink(outside, p)
			return p
		}, wantErr: "outside the allowed input roots"},
		{name: "smaller than every rendition", input: func(dir string) string {
			return encodeTestClip(t, filepath.Join(dir, "tiny.mp4"), 320, 180, false)
		}, renditions: "360:800,720:2500", wantErr: "refusing to upscale"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			out := t.TempDir()
			renditions := tt.renditions
			if renditions == "" {
				renditions = "180:300,360:800"
			}
			var lines bytes.Buffer
			res, err := encode(t.Context(), encodeConfig{
				Input: tt.input(t.TempDir()),
				Deps:  tasks.Deps{OutputDir: out, Renditions: testRenditions(t, renditions), Preset: "ultrafast"},
				Out:   &lines,
			})
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("encode error = %v, want %q\n%s", err, tt.wantErr, lines.String())
			}
			if len(res.Statuses) != 1 || res.Statuses[0].Status != protocol.StateFailure || res.Statuses[0].TaskID != res.TaskID {
				t.Fatalf("statuses = %+v, want one FAILURE for the root", res.Statuses)
			}
			r := res.Statuses[0].Result.(map[string]any)
			if !strings.Contains(r["error"].(string), tt.wantErr) || r["exc_type"] != "ValueError" || r["task_id"] != res.TaskID {
				t.Errorf("FAILURE result = %v", r)
			}
			if !strings.HasPrefix(lines.String(), "FAILURE") {
				t.Errorf("printed %q, want a FAILURE line", lines.String())
			}
			if entries, _ := os.ReadDir(out); len(entries) != 0 {
				t.Errorf("a refused input wrote into the output directory: %v", entries)
			}
		})
	}
}

func toFloat(v any) float64 {
	switch n := v.(type) {
	case int:
		return float64(n)
	case int64:
		return float64(n)
	case float64:
		return n
	}
	return -1
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}
