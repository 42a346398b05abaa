//go:build integration

package ffmpeg

// These tests run the real ffmpeg and ffprobe. They fail, not skip, when
// the programs are missing: a green run means the commands work.

import (
	"bytes"
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// requireFFmpeg fails the test when ffmpeg or ffprobe is not installed.
func requireFFmpeg(t *testing.T) {
	t.Helper()
	for _, name := range []string{"ffmpeg", "ffprobe"} {
		if _, err := exec.LookPath(name); err != nil {
			t.Fatalf("%s is required by the ffmpeg tests and is not in PATH: apt-get install -y ffmpeg", name)
		}
	}
}

// makeTestPattern writes a synthetic clip and returns its path.
func makeTestPattern(t *testing.T, dir string, o TestPatternOptions) string {
	t.Helper()
	o.Output = filepath.Join(dir, o.Output)
	o.Preset = "ultrafast"
	if err := Run(t.Context(), TestPatternArgs(o), RunOptions{}); err != nil {
		t.Fatalf("making the test pattern: %v", err)
	}
	return o.Output
}

// TestPipeline runs the steps of the adaptation pipeline in order, in a
// folder whose name would break any shell command and any argv that did not
// use file: URLs.
func TestPipeline(t *testing.T) {
	t.Parallel()
	requireFFmpeg(t)
	out := filepath.Join(t.TempDir(), "-out dir $x;y:z")
	for _, dir := range []string{"source", "encoding", "hls/320x180", "dash"} {
		if err := os.MkdirAll(filepath.Join(out, dir), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	source := makeTestPattern(t, filepath.Join(out, "source"), TestPatternOptions{
		Output: "-i http:original.mp4", Duration: 3 * time.Second, Width: 640, Height: 360, Audio: true,
	})

	probe, err := Probe(t.Context(), source)
	if err != nil {
		t.Fatalf("Probe: %v", err)
	}
	if math.Abs(probe.Duration.Seconds()-3) > 0.1 {
		t.Errorf("source duration = %v, want 3s", probe.Duration)
	}
	video, ok := probe.Video()
	if !ok || video.CodecName != "h264" || video.Width != 640 || video.Height != 360 {
		t.Fatalf("source video = %+v, %t; want h264 640x360", video, ok)
	}
	sourceAudio, ok := probe.Audio()
	if !ok || sourceAudio.CodecName != "aac" || !AudioCopyable(sourceAudio) {
		t.Fatalf("source audio = %+v, %t; want aac that AudioCopyable takes", sourceAudio, ok)
	}

	// The first rendition copies the audio; HLS and DASH cut it.
	renditions := []struct {
		width, height, kbps int
		copyAudio           bool
	}{{320, 180, 300, true}, {256, 144, 200, false}}
	var transcoded []string
	for _, r := range renditions {
		output := filepath.Join(out, "encoding", fmt.Sprintf("%dx%d.mp4", r.width, r.height))
		var reports []Progress
		err := Run(t.Context(), TranscodeArgs(TranscodeOptions{
			Input: source, Output: output,
			Width: r.width, Height: r.height, BitrateKbps: r.kbps, SegmentSeconds: 1,
			Audio: true, CopyAudio: r.copyAudio, Preset: "ultrafast",
		}), RunOptions{Duration: probe.Duration, OnProgress: func(p Progress) { reports = append(reports, p) }})
		if err != nil {
			t.Fatalf("transcode to %dx%d: %v", r.width, r.height, err)
		}
		checkProgress(t, reports, probe.Duration)

		got, err := Probe(t.Context(), output)
		if err != nil {
			t.Fatalf("Probe(%s): %v", output, err)
		}
		v, _ := got.Video()
		if v.CodecName != "h264" || v.Width != r.width || v.Height != r.height {
			t.Errorf("%s: video %+v, want h264 %dx%d", output, v, r.width, r.height)
		}
		// -maxrate caps the rate; allow for the container's rounding.
		if v.BitRate <= 0 || v.BitRate > int64(r.kbps)*1000*3/2 {
			t.Errorf("%s: video bitrate %d bit/s, want about %dk", output, v.BitRate, r.kbps)
		}
		if a, ok := got.Audio(); !ok || a.CodecName != "aac" || a.Channels != 2 {
			t.Errorf("%s: audio %+v, %t; want stereo aac", output, a, ok)
		} else if r.copyAudio && a.BitRate != sourceAudio.BitRate {
			t.Errorf("%s: audio at %d bit/s, want the source's %d: copied", output, a.BitRate, sourceAudio.BitRate)
		}
		if len(got.Streams) != 2 {
			t.Errorf("%s: %d streams, want video and audio only", output, len(got.Streams))
		}
		transcoded = append(transcoded, output)
	}

	t.Run("hls", func(t *testing.T) {
		dir := filepath.Join(out, "hls", "320x180")
		playlist := filepath.Join(dir, "playlist.m3u8")
		err := Run(t.Context(), HLSArgs(HLSOptions{
			Input: transcoded[0], PlaylistPath: playlist,
			SegmentPattern: filepath.Join(dir, "chunks_name%03d.ts"), SegmentSeconds: 1,
		}), RunOptions{})
		if err != nil {
			t.Fatalf("HLS: %v", err)
		}
		checkHLSPlaylist(t, playlist, 1)
	})

	t.Run("dash", func(t *testing.T) {
		mpd := filepath.Join(out, "dash", "playlist.mpd")
		err := Run(t.Context(), DASHArgs(DASHOptions{
			Inputs: transcoded, MPDPath: mpd, SegmentSeconds: 1, Audio: true,
		}), RunOptions{})
		if err != nil {
			t.Fatalf("DASH: %v", err)
		}
		checkMPD(t, mpd, []int{320, 256})
	})
}

// checkProgress checks that reports are monotonic and end at 100% with the
// output time close to the source duration.
func checkProgress(t *testing.T, reports []Progress, duration time.Duration) {
	t.Helper()
	if len(reports) == 0 {
		t.Fatal("no progress reports")
	}
	for i := 1; i < len(reports); i++ {
		if reports[i].Time < reports[i-1].Time || reports[i].Percent < reports[i-1].Percent {
			t.Errorf("progress went backwards: %+v then %+v", reports[i-1], reports[i])
		}
	}
	last := reports[len(reports)-1]
	if last.Percent != 100 {
		t.Errorf("last report %+v, want 100%%", last)
	}
	if math.Abs(last.Time.Seconds()-duration.Seconds()) > 0.2 {
		t.Errorf("last report at %v, want about %v", last.Time, duration)
	}
}

// checkHLSPlaylist checks a VOD variant playlist: complete, at least 3
// segments named relative to it that exist, each segmentSeconds long but the
// last (which proves the keyframes fall on segment boundaries).
func checkHLSPlaylist(t *testing.T, playlist string, segmentSeconds int) {
	t.Helper()
	data, err := os.ReadFile(playlist)
	if err != nil {
		t.Fatal(err)
	}
	text := string(data)
	for _, tag := range []string{"#EXTM3U\n", "#EXT-X-PLAYLIST-TYPE:VOD\n", "#EXT-X-ENDLIST\n"} {
		if !strings.Contains(text, tag) {
			t.Errorf("playlist has no %q:\n%s", strings.TrimSpace(tag), text)
		}
	}
	var durations []float64
	var segments []string
	for line := range strings.Lines(text) {
		line = strings.TrimSpace(line)
		if d, ok := strings.CutPrefix(line, "#EXTINF:"); ok {
			f, err := strconv.ParseFloat(strings.TrimSuffix(d, ","), 64)
			if err != nil {
				t.Errorf("bad #EXTINF line %q", line)
			}
			durations = append(durations, f)
		} else if line != "" && !strings.HasPrefix(line, "#") {
			segments = append(segments, line)
		}
	}
	if len(segments) < 3 || len(segments) != len(durations) {
		t.Fatalf("playlist has %d segments and %d #EXTINF, want >= 3 of each:\n%s", len(segments), len(durations), text)
	}
	for _, s := range segments {
		if strings.ContainsAny(s, "/:") {
			t.Errorf("segment URI %q is not relative to the playlist", s)
		}
		if _, err := os.Stat(filepath.Join(filepath.Dir(playlist), s)); err != nil {
			t.Errorf("segment %q: %v", s, err)
		}
	}
	for i, d := range durations[:len(durations)-1] {
		if math.Abs(d-float64(segmentSeconds)) > 0.05 {
			t.Errorf("segment %d lasts %.3fs, want %ds:\n%s", i, d, segmentSeconds, text)
		}
	}
}

// mpd is the part of a DASH manifest checkMPD reads.
type mpd struct {
	Periods []struct {
		AdaptationSets []struct {
			ContentType     string `xml:"contentType,attr"`
			Representations []struct {
				ID       string `xml:"id,attr"`
				MimeType string `xml:"mimeType,attr"`
				Width    int    `xml:"width,attr"`
				Template struct {
					Initialization string `xml:"initialization,attr"`
					Media          string `xml:"media,attr"`
				} `xml:"SegmentTemplate"`
			} `xml:"Representation"`
		} `xml:"AdaptationSet"`
	} `xml:"Period"`
}

// checkMPD checks that the manifest has one video adaptation set with a
// representation of each width, one audio representation, and segment
// templates relative to it whose init segments exist.
func checkMPD(t *testing.T, path string, widths []int) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var m mpd
	if err := xml.Unmarshal(data, &m); err != nil {
		t.Fatalf("MPD does not parse: %v\n%s", err, data)
	}
	if len(m.Periods) != 1 {
		t.Fatalf("MPD has %d periods, want 1:\n%s", len(m.Periods), data)
	}
	var videoWidths []int
	audio := 0
	for _, set := range m.Periods[0].AdaptationSets {
		for _, r := range set.Representations {
			switch {
			case set.ContentType == "video" && strings.HasPrefix(r.MimeType, "video/"):
				videoWidths = append(videoWidths, r.Width)
			case set.ContentType == "audio" && strings.HasPrefix(r.MimeType, "audio/"):
				audio++
			default:
				t.Errorf("representation %s (%s) in a %q set", r.ID, r.MimeType, set.ContentType)
			}
			for _, name := range []string{r.Template.Initialization, r.Template.Media} {
				if name == "" || strings.ContainsAny(name, "/:") {
					t.Errorf("representation %s: segment template %q is not relative to the MPD", r.ID, name)
				}
			}
			init := strings.ReplaceAll(r.Template.Initialization, "$RepresentationID$", r.ID)
			if _, err := os.Stat(filepath.Join(filepath.Dir(path), init)); err != nil {
				t.Errorf("representation %s: %v", r.ID, err)
			}
		}
	}
	if fmt.Sprint(videoWidths) != fmt.Sprint(widths) || audio != 1 {
		t.Errorf("MPD has video widths %v and %d audio representations, want %v and 1:\n%s", videoWidths, audio, widths, data)
	}
}

// TestRunCancel starts a long encode, cancels it once it makes progress and
// checks that Run returns at once, that ffmpeg is gone, and that it stopped
// cleanly: SIGTERM lets it finish the MP4, which is playable.
func TestRunCancel(t *testing.T) {
	t.Parallel()
	requireFFmpeg(t)
	dir := t.TempDir()
	output := filepath.Join(dir, "long.mp4")
	argv := TestPatternArgs(TestPatternOptions{
		Output: output, Duration: 60 * time.Second, Width: 1280, Height: 720, Audio: true,
	})
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var cancelled time.Time
	err := Run(ctx, argv, RunOptions{
		Duration: 60 * time.Second,
		OnProgress: func(p Progress) {
			if p.Time > 0 && cancelled.IsZero() {
				cancelled = time.Now()
				cancel()
			}
		},
	})
	if cancelled.IsZero() {
		t.Fatalf("Run returned %v before any progress", err)
	}
	if elapsed := time.Since(cancelled); elapsed > 3*time.Second {
		t.Errorf("Run returned %v after cancel, want well under the grace period", elapsed)
	}
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Run = %v, want an error wrapping context.Canceled", err)
	}
	if pids := processesMentioning(t, dir); len(pids) > 0 {
		t.Errorf("processes %v still run after Run returned", pids)
	}
	probe, err := Probe(t.Context(), output)
	if err != nil {
		t.Fatalf("the output of a cancelled run is not a valid file: %v", err)
	}
	if probe.Duration <= 0 || probe.Duration >= 60*time.Second {
		t.Errorf("cancelled output lasts %v, want a part of 60s", probe.Duration)
	}
}

// TestRunCancelCause checks that the cause given to WithCancelCause is kept.
func TestRunCancelCause(t *testing.T) {
	t.Parallel()
	shutdown := errors.New("worker shutting down")
	ctx, cancel := context.WithCancelCause(t.Context())
	time.AfterFunc(100*time.Millisecond, func() { cancel(shutdown) })
	start := time.Now()
	err := Run(ctx, []string{"sleep", "30"}, RunOptions{})
	if !errors.Is(err, context.Canceled) || !errors.Is(err, shutdown) {
		t.Fatalf("Run = %v, want an error wrapping context.Canceled and the cause", err)
	}
	if elapsed := time.Since(start); elapsed > 3*time.Second {
		t.Errorf("Run took %v", elapsed)
	}
	if want := "ffmpeg: sleep stopped: context canceled: worker shutting down"; err.Error() != want {
		t.Errorf("Error() = %q, want %q", err, want)
	}
}

// TestRunDeadline checks that a deadline is reported as such.
func TestRunDeadline(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	if err := Run(ctx, []string{"sleep", "30"}, RunOptions{}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Run = %v, want an error wrapping context.DeadlineExceeded", err)
	}
}

// TestRunKillsAfterGracePeriod runs a shell that ignores SIGTERM and leaves
// a child behind: both must be gone once Run returns.
func TestRunKillsAfterGracePeriod(t *testing.T) {
	t.Parallel()
	pidFile := filepath.Join(t.TempDir(), "child.pid")
	script := `trap "" TERM; sleep 30 & echo $! > "$1"; wait`
	ctx, cancel := context.WithCancel(t.Context())
	time.AfterFunc(200*time.Millisecond, cancel)
	start := time.Now()
	err := Run(ctx, []string{"sh", "-c", script, "sh", pidFile}, RunOptions{GracePeriod: 300 * time.Millisecond})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Run = %v, want context.Canceled", err)
	}
	// Run must not wait for the 30 s sleep; the margin below that is wide
	// because a loaded CI machine can take seconds to start a shell.
	if elapsed := time.Since(start); elapsed > 15*time.Second {
		t.Errorf("Run took %v with a grace period of 300ms: it waited for the child", elapsed)
	}
	data, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil {
		t.Fatal(err)
	}
	if alive(pid) {
		t.Errorf("the shell's child %d outlived Run", pid)
	}
}

// alive reports whether pid runs, waiting a little for a killed process to
// be reaped by its new parent. A zombie counts as dead.
func alive(pid int) bool {
	for range 50 {
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil || syscall.Kill(pid, 0) != nil {
			return false
		}
		// The state follows the command name in parentheses: "pid (comm) S ...".
		if i := bytes.LastIndexByte(stat, ')'); i >= 0 && bytes.HasPrefix(stat[i+1:], []byte(" Z")) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
	return true
}

// processesMentioning returns the live processes whose command line holds s.
func processesMentioning(t *testing.T, s string) []int {
	t.Helper()
	cmdlines, err := filepath.Glob("/proc/[0-9]*/cmdline")
	if err != nil {
		t.Fatal(err)
	}
	var pids []int
	for _, path := range cmdlines {
		cmdline, err := os.ReadFile(path)
		if err != nil || !bytes.Contains(cmdline, []byte(s)) {
			continue
		}
		pid, err := strconv.Atoi(filepath.Base(filepath.Dir(path)))
		if err == nil && pid != os.Getpid() && alive(pid) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// TestRunExitError checks the error of a failing ffmpeg.
func TestRunExitError(t *testing.T) {
	t.Parallel()
	requireFFmpeg(t)
	dir := t.TempDir()
	garbage := filepath.Join(dir, "garbage.mp4")
	if err := os.WriteFile(garbage, bytes.Repeat([]byte("not a video "), 100), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, input, wantStderr string
	}{
		{"missing file", filepath.Join(dir, "missing.mp4"), "No such file or directory"},
		{"not a video", garbage, "Invalid data found when processing input"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			argv := TranscodeArgs(TranscodeOptions{
				Input: tt.input, Output: filepath.Join(dir, tt.name+".mp4"),
				Width: 320, Height: 180, BitrateKbps: 300, SegmentSeconds: 1, Audio: true,
			})
			err := Run(t.Context(), argv, RunOptions{OnProgress: func(Progress) {}})
			var exitErr *ExitError
			if !errors.As(err, &exitErr) {
				t.Fatalf("Run = %v, want an *ExitError", err)
			}
			if exitErr.Code == 0 || !strings.Contains(exitErr.Stderr, tt.wantStderr) {
				t.Errorf("ExitError{Code: %d, Stderr: %q}, want a non-zero code and %q", exitErr.Code, exitErr.Stderr, tt.wantStderr)
			}
			if msg := err.Error(); !strings.HasPrefix(msg, "ffmpeg: exit status ") || !strings.Contains(msg, tt.wantStderr) {
				t.Errorf("Error() = %q, want the status and the reason", msg)
			}
		})
	}
}

// TestProbeErrors checks Probe on files ffprobe cannot read.
func TestProbeErrors(t *testing.T) {
	t.Parallel()
	requireFFmpeg(t)
	dir := t.TempDir()
	_, err := Probe(t.Context(), filepath.Join(dir, "missing.mp4"))
	var exitErr *ExitError
	if !errors.As(err, &exitErr) || !strings.Contains(err.Error(), "No such file or directory") {
		t.Errorf("Probe(missing) = %v, want an *ExitError saying the file is missing", err)
	}
	// Without the file: prefix ffprobe would read this as an HTTP URL.
	_, err = Probe(t.Context(), "http://127.0.0.1:1/x.mp4")
	if !errors.As(err, &exitErr) || !strings.Contains(err.Error(), "No such file or directory") {
		t.Errorf("Probe(http URL) = %v, want it read as a local file name", err)
	}
	// An audio file has no video stream: callers map that to ErrNoVideoStream.
	audioOnly := filepath.Join(dir, "tone.m4a")
	if err := Run(t.Context(), []string{"ffmpeg", "-nostdin", "-f", "lavfi", "-i", "sine=duration=0.2", "file:" + audioOnly}, RunOptions{}); err != nil {
		t.Fatal(err)
	}
	r, err := Probe(t.Context(), audioOnly)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := r.Video(); ok {
		t.Errorf("Video() found a stream in an audio file")
	}
}
