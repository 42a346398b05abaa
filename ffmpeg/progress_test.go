package ffmpeg

import (
	"math"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"
)

func TestProgressWriter(t *testing.T) {
	t.Parallel()
	// A real capture: TestPatternArgs at 1280x720 for 6 s, with
	// -progress pipe:1 -nostats added as Run adds them.
	capture, err := os.ReadFile(filepath.Join("testdata", "progress.txt"))
	if err != nil {
		t.Fatal(err)
	}
	want := []Progress{
		{Time: 0, Percent: 0, Speed: "0x"},
		{Time: 1920078 * time.Microsecond, Percent: 32.0013, Speed: "3.72x"},
		{Time: 5845333 * time.Microsecond, Percent: 97.422216666, Speed: "5.75x"},
		{Time: 6016000 * time.Microsecond, Percent: 100, Speed: "5.65x"},
	}
	tests := []struct {
		name  string
		chunk int // bytes per Write; 0 for the whole capture at once
	}{
		{"whole", 0},
		{"byte by byte", 1},
		{"odd chunks", 7},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var got []Progress
			w := &progressWriter{duration: 6 * time.Second, onProgress: func(p Progress) { got = append(got, p) }}
			chunk := tt.chunk
			if chunk == 0 {
				chunk = len(capture)
			}
			for rest := capture; len(rest) > 0; {
				n := min(chunk, len(rest))
				if m, err := w.Write(rest[:n]); m != n || err != nil {
					t.Fatalf("Write = %d, %v; want %d, nil", m, err, n)
				}
				rest = rest[n:]
			}
			if len(got) != len(want) {
				t.Fatalf("reports:\n got %+v\nwant %+v", got, want)
			}
			for i := range got {
				if got[i].Time != want[i].Time || got[i].Speed != want[i].Speed || math.Abs(got[i].Percent-want[i].Percent) > 1e-6 {
					t.Errorf("report %d = %+v, want %+v", i, got[i], want[i])
				}
			}
		})
	}
}

func TestProgressWriterEdgeCases(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		duration time.Duration
		input    string
		want     []Progress
	}{
		{
			name:     "negative and N/A times at the start",
			duration: 10 * time.Second,
			input:    "out_time_us=N/A\nspeed=N/A\nprogress=continue\nout_time_us=-23220\nout_time_ms=-23220\nprogress=continue\n",
			want:     []Progress{{Speed: "N/A"}, {}},
		},
		{
			name:     "time never goes backwards",
			duration: 10 * time.Second,
			input:    "out_time_us=5000000\nprogress=continue\nout_time_us=4000000\nprogress=continue\n",
			want:     []Progress{{Time: 5 * time.Second, Percent: 50}, {Time: 5 * time.Second, Percent: 50}},
		},
		{
			name:     "output longer than the source",
			duration: time.Second,
			input:    "out_time_us=1500000\nprogress=continue\n",
			want:     []Progress{{Time: 1500 * time.Millisecond, Percent: 100}},
		},
		{
			name:  "unknown duration",
			input: "out_time_ms=2000000\nspeed= 2.1x\r\nprogress=continue\nprogress=end\n",
			want:  []Progress{{Time: 2 * time.Second, Speed: "2.1x"}, {Time: 2 * time.Second, Percent: 100}},
		},
		{
			name:     "garbage and an unfinished block",
			duration: time.Second,
			input:    "no equals sign\n=\nout_time_us=zzz\nprogress=continue\nout_time_us=1",
			want:     []Progress{{}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var got []Progress
			w := &progressWriter{duration: tt.duration, onProgress: func(p Progress) { got = append(got, p) }}
			w.Write([]byte(tt.input))
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("reports:\n got %+v\nwant %+v", got, tt.want)
			}
		})
	}
}
