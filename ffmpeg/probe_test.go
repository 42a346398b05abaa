package ffmpeg

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestParseProbeGolden(t *testing.T) {
	t.Parallel()
	captures, err := filepath.Glob(filepath.Join("testdata", "probe", "*.json"))
	if err != nil || len(captures) == 0 {
		t.Fatalf("no captures in testdata/probe: %v", err)
	}
	for _, path := range captures {
		name := strings.TrimSuffix(filepath.Base(path), ".json")
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			r, err := ParseProbe(data)
			if err != nil {
				t.Fatalf("ParseProbe: %v", err)
			}
			got, err := json.MarshalIndent(r, "", "\t")
			if err != nil {
				t.Fatal(err)
			}
			checkGolden(t, filepath.Join("probe", name), append(got, '\n'))
		})
	}
}

func TestProbeResultStreams(t *testing.T) {
	t.Parallel()
	tests := []struct {
		capture    string
		wantVideo  int // index of the stream Video returns; -1 for none
		wantAudio  int // index of the stream Audio returns; -1 for none
		wantWidth  int
		wantLength time.Duration
	}{
		{"testpattern", 0, 1, 640, 3 * time.Second},
		{"cover_art", 0, 1, 640, 3 * time.Second},               // the cover comes last
		{"mp3_cover_art", -1, 0, 0, 1044898 * time.Microsecond}, // only a cover
		{"matroska", 0, 2, 64, 3080 * time.Millisecond},         // the PNG is plain video here
	}
	for _, tt := range tests {
		t.Run(tt.capture, func(t *testing.T) {
			t.Parallel()
			data, err := os.ReadFile(filepath.Join("testdata", "probe", tt.capture+".json"))
			if err != nil {
				t.Fatal(err)
			}
			r, err := ParseProbe(data)
			if err != nil {
				t.Fatal(err)
			}
			if r.Duration != tt.wantLength {
				t.Errorf("Duration = %v, want %v", r.Duration, tt.wantLength)
			}
			v, ok := r.Video()
			if got := map[bool]int{true: v.Index, false: -1}[ok]; got != tt.wantVideo {
				t.Errorf("Video() index = %d, want %d", got, tt.wantVideo)
			}
			if v.Width != tt.wantWidth {
				t.Errorf("Video().Width = %d, want %d", v.Width, tt.wantWidth)
			}
			a, ok := r.Audio()
			if got := map[bool]int{true: a.Index, false: -1}[ok]; got != tt.wantAudio {
				t.Errorf("Audio() index = %d, want %d", got, tt.wantAudio)
			}
		})
	}
}

func TestParseProbeAttachedPictureFirst(t *testing.T) {
	t.Parallel()
	data := `{"streams": [
		{"index": 0, "codec_type": "video", "codec_name": "mjpeg", "width": 600, "height": 600, "disposition": {"attached_pic": 1}},
		{"index": 1, "codec_type": "video", "codec_name": "h264", "width": 1280, "height": 720, "duration": "N/A"}
	], "format": {"format_name": "mov,mp4,m4a,3gp,3g2,mj2"}}`
	r, err := ParseProbe([]byte(data))
	if err != nil {
		t.Fatal(err)
	}
	v, ok := r.Video()
	if !ok || v.Index != 1 || v.Width != 1280 || v.Duration != 0 {
		t.Errorf("Video() = %+v, %t; want stream 1, 1280 wide, no duration", v, ok)
	}
	if _, ok := r.Audio(); ok {
		t.Errorf("Audio() found a stream in a file without audio")
	}
}

func TestParseProbeErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, data, wantErr string
	}{
		{"empty", ``, "ffmpeg: parse ffprobe output: unexpected end of JSON input"},
		{"not json", `Invalid data found when processing input`, "ffmpeg: parse ffprobe output: invalid character"},
		{"no format", `{"streams": []}`, "ffmpeg: parse ffprobe output: no format section"},
		{"bad duration", `{"format": {"duration": "three"}}`, `ffmpeg: parse ffprobe output: format duration: strconv.ParseFloat: parsing "three"`},
		{"negative duration", `{"format": {"duration": "-1"}}`, `format duration: "-1" is out of range`},
		{"huge duration", `{"format": {"duration": "1e300"}}`, `format duration: "1e300" is out of range`},
		{"bad stream duration", `{"format": {}, "streams": [{"index": 3, "duration": "x"}]}`, "stream 3 duration"},
		{"bad bitrate", `{"format": {}, "streams": [{"index": 0, "bit_rate": "fast"}]}`, "stream 0 bit_rate"},
		{"width as string", `{"format": {}, "streams": [{"width": "640"}]}`, "ffmpeg: parse ffprobe output: json: cannot unmarshal"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r, err := ParseProbe([]byte(tt.data))
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("ParseProbe(%q) = %+v, %v; want an error containing %q", tt.data, r, err, tt.wantErr)
			}
		})
	}
}

func FuzzParseProbe(f *testing.F) {
	captures, _ := filepath.Glob(filepath.Join("testdata", "probe", "*.json"))
	for _, path := range captures {
		data, err := os.ReadFile(path)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := ParseProbe(data)
		if err != nil {
			return
		}
		if r.Duration < 0 {
			t.Errorf("negative duration %v", r.Duration)
		}
		for _, s := range r.Streams {
			if s.Duration < 0 {
				t.Errorf("stream %d: negative duration %v", s.Index, s.Duration)
			}
		}
		r.Video()
		r.Audio()
	})
}
