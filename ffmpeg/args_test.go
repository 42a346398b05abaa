package ffmpeg

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite the testdata/*.golden files")

// checkGolden compares got with testdata/<name>.golden, or rewrites the file
// with -update.
func checkGolden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if string(got) != string(want) {
		t.Errorf("%s differs from %s (go test -update rewrites it):\ngot:\n%s\nwant:\n%s", name, path, got, want)
	}
}

func TestArgsGolden(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		argv []string
	}{
		{"transcode_audio", TranscodeArgs(TranscodeOptions{
			Input: "/out/abc/source/original.mkv", Output: "/out/abc/encoding/640x360.mp4",
			Width: 640, Height: 360, BitrateKbps: 800, SegmentSeconds: 4, Audio: true,
		})},
		{"transcode_copy_audio", TranscodeArgs(TranscodeOptions{
			Input: "/out/abc/source/original.mp4", Output: "/out/abc/encoding/256x144.mp4",
			Width: 256, Height: 144, BitrateKbps: 100, SegmentSeconds: 4, Audio: true, CopyAudio: true,
		})},
		{"transcode_no_audio", TranscodeArgs(TranscodeOptions{
			Input: "/out/abc/source/original.mkv", Output: "/out/abc/encoding/1280x720.mp4",
			Width: 1280, Height: 720, BitrateKbps: 2500, SegmentSeconds: 4, Preset: "ultrafast",
		})},
		{"transcode_no_segments", TranscodeArgs(TranscodeOptions{
			Input: "in.mp4", Output: "out.mp4", Width: 320, Height: 180, BitrateKbps: 300,
		})},
		{"ladder_audio", LadderArgs(LadderOptions{
			Input: "/in/clip.mp4", SegmentSeconds: 4, Audio: true,
			Renditions: []Rendition{{"/out/256x144.mp4", 256, 144, 100}, {"/out/640x360.mp4", 640, 360, 400}},
		})},
		{"ladder_no_audio", LadderArgs(LadderOptions{
			Input: "/in/clip.mp4", SegmentSeconds: 2, Preset: "ultrafast",
			Renditions: []Rendition{{"/out/1280x720.mp4", 1280, 720, 2500}},
		})},
		{"hls", HLSArgs(HLSOptions{
			Input:          "/out/abc/encoding/640x360.mp4",
			PlaylistPath:   "/out/abc/hls/640x360/playlist.m3u8",
			SegmentPattern: "/out/abc/hls/640x360/chunks_name%03d.ts",
			SegmentSeconds: 4,
		})},
		{"dash_audio", DASHArgs(DASHOptions{
			Inputs:  []string{"/out/abc/encoding/1280x720.mp4", "/out/abc/encoding/640x360.mp4"},
			MPDPath: "/out/abc/dash/playlist.mpd", SegmentSeconds: 4, Audio: true,
		})},
		{"dash_no_audio", DASHArgs(DASHOptions{
			Inputs:  []string{"/out/abc/encoding/640x360.mp4"},
			MPDPath: "/out/abc/dash/playlist.mpd", SegmentSeconds: 2,
		})},
		{"probe_file", probeArgs(fileURL("/out/abc/source/abc"), []string{"file"}, sourceFormats, 0)},
		{"probe_url", probeArgs("https://example.com/in.mp4", []string{"http", "https", "tcp", "tls"}, sourceFormats, time.Minute)},
		{"testpattern_audio", TestPatternArgs(TestPatternOptions{
			Output: "/tmp/src.mp4", Duration: 3 * time.Second, Width: 640, Height: 360, Audio: true,
		})},
		{"testpattern_no_audio", TestPatternArgs(TestPatternOptions{
			Output: "/tmp/src.mp4", Duration: 1500 * time.Millisecond, Width: 320, Height: 180, Preset: "ultrafast",
		})},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if tt.argv[0] != "ffmpeg" && tt.argv[0] != "ffprobe" {
				t.Errorf("argv[0] = %q, want ffmpeg or ffprobe", tt.argv[0])
			}
			checkGolden(t, tt.name, []byte(strings.Join(tt.argv, "\n")+"\n"))
		})
	}
}

// TestArgsHostilePaths checks that a path, whatever it looks like, changes
// exactly one argument: the file: URL that holds it. So it is never read as
// an option or a protocol, and never split into words.
func TestArgsHostilePaths(t *testing.T) {
	t.Parallel()
	const placeholder = "/placeholder.mp4"
	builders := map[string]func(path string) []string{
		"transcode input": func(p string) []string {
			return TranscodeArgs(TranscodeOptions{Input: p, Output: "out.mp4", Width: 2, Height: 2, BitrateKbps: 1, Audio: true})
		},
		"transcode output": func(p string) []string {
			return TranscodeArgs(TranscodeOptions{Input: "in.mp4", Output: p, Width: 2, Height: 2, BitrateKbps: 1})
		},
		"hls input": func(p string) []string {
			return HLSArgs(HLSOptions{Input: p, PlaylistPath: "p.m3u8", SegmentPattern: "s%03d.ts", SegmentSeconds: 1})
		},
		"hls playlist": func(p string) []string {
			return HLSArgs(HLSOptions{Input: "in.mp4", PlaylistPath: p, SegmentPattern: "s%03d.ts", SegmentSeconds: 1})
		},
		"hls segments": func(p string) []string {
			return HLSArgs(HLSOptions{Input: "in.mp4", PlaylistPath: "p.m3u8", SegmentPattern: p, SegmentSeconds: 1})
		},
		"dash input": func(p string) []string {
			return DASHArgs(DASHOptions{Inputs: []string{"in.mp4", p}, MPDPath: "p.mpd", SegmentSeconds: 1, Audio: true})
		},
		"dash mpd": func(p string) []string {
			return DASHArgs(DASHOptions{Inputs: []string{"in.mp4"}, MPDPath: p, SegmentSeconds: 1})
		},
		"testpattern": func(p string) []string {
			return TestPatternArgs(TestPatternOptions{Output: p, Duration: time.Second, Width: 2, Height: 2, Audio: true})
		},
	}
	hostile := []string{
		"-i",
		"-y /etc/passwd",
		"http://evil.example/x.mp4",
		"concat:/etc/passwd|/etc/shadow",
		"a b; rm -rf ~ $(reboot) `id` | tee x",
		"file:already.mp4",
		"../../etc/passwd",
		"new\nline",
		"",
	}
	for name, build := range builders {
		base := build(placeholder)
		i := slices.Index(base, "file:"+placeholder)
		if i < 0 {
			t.Fatalf("%s: argv %q has no file:%s", name, base, placeholder)
		}
		for _, p := range hostile {
			want := slices.Clone(base)
			want[i] = "file:" + p
			if got := build(p); !slices.Equal(got, want) {
				t.Errorf("%s with path %q:\n got %q\nwant %q", name, p, got, want)
			}
		}
	}
}

func TestAudioCopyable(t *testing.T) {
	t.Parallel()
	aac := Stream{CodecType: "audio", CodecName: "aac", Profile: "LC", Channels: 2, BitRate: 128092}
	tests := []struct {
		name string
		edit func(*Stream)
		want bool
	}{
		{"ffmpeg's AAC at 128k", func(*Stream) {}, true},
		{"mono at 64k", func(s *Stream) { s.Channels, s.BitRate = 1, 64000 }, true},
		{"2% over", func(s *Stream) { s.BitRate = 130560 }, true},
		{"more than 2% over", func(s *Stream) { s.BitRate = 130561 }, false},
		{"unknown bitrate", func(s *Stream) { s.BitRate = 0 }, false},
		{"5.1", func(s *Stream) { s.Channels = 6 }, false},
		{"no channels reported", func(s *Stream) { s.Channels = 0 }, false},
		{"HE-AAC", func(s *Stream) { s.Profile = "HE-AAC" }, false},
		{"MP3", func(s *Stream) { s.CodecName, s.Profile = "mp3", "" }, false},
		{"not audio", func(s *Stream) { s.CodecType = "video" }, false},
	}
	for _, tt := range tests {
		s := aac
		tt.edit(&s)
		if got := AudioCopyable(s); got != tt.want {
			t.Errorf("%s: AudioCopyable(%+v) = %t, want %t", tt.name, s, got, tt.want)
		}
	}
}

func TestTranscodeArgsBitrate(t *testing.T) {
	t.Parallel()
	for _, kbps := range []int{100, 800, 2500} {
		argv := TranscodeArgs(TranscodeOptions{Input: "i", Output: "o", Width: 2, Height: 2, BitrateKbps: kbps})
		want := map[string]string{
			"-b:v":     fmt.Sprintf("%dk", kbps),
			"-maxrate": fmt.Sprintf("%dk", kbps),
			"-bufsize": fmt.Sprintf("%dk", 2*kbps),
		}
		for flag, value := range want {
			i := slices.Index(argv, flag)
			if i < 0 || i+1 >= len(argv) || argv[i+1] != value {
				t.Errorf("BitrateKbps %d: %s is not followed by %s in %q", kbps, flag, value, argv)
			}
		}
	}
}

func TestFormatAllowed(t *testing.T) {
	t.Parallel()
	tests := []struct {
		formatName string
		want       bool
	}{
		{"mov,mp4,m4a,3gp,3g2,mj2", true},
		{"matroska,webm", true},
		{"mpegts", true},
		{"hls", false},
		{"concat", false},
		{"dash", false},
		{"image2", false},
		{"tty", false},
		{"mpegtsraw", false},
		{"", false},
	}
	for _, tt := range tests {
		if got := formatAllowed(tt.formatName, sourceFormats); got != tt.want {
			t.Errorf("formatAllowed(%q) = %t, want %t", tt.formatName, got, tt.want)
		}
	}
}
