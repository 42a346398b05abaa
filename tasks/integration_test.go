//go:build integration

package tasks

// These tests run the real ffmpeg and ffprobe on clips made with
// ffmpeg.TestPatternArgs. They fail, not skip, when the programs are
// missing.

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	vhgctx "github.com/vhg/vhg-worker/context"
	"github.com/vhg/vhg-worker/ffmpeg"
	"github.com/vhg/vhg-worker/protocol"
	"github.com/vhg/vhg-worker/worker"
)

func requireFFmpeg(t *testing.T) {
	t.Helper()
	for _, name := range []string{"ffmpeg", "ffprobe"} {
		if _, err := exec.LookPath(name); err != nil {
			t.Fatalf("%s is required by the tasks tests and is not in PATH: apt-get install -y ffmpeg", name)
		}
	}
}

// makeClip writes a test pattern of the given size (with a tone when
// audio is set) and returns its path.
func makeClip(t *testing.T, path string, width, height int, audio bool) string {
	t.Helper()
	requireFFmpeg(t)
	err := ffmpeg.Run(t.Context(), ffmpeg.TestPatternArgs(ffmpeg.TestPatternOptions{
		Output: path, Duration: 4 * time.Second, Width: width, Height: height, Audio: audio, Preset: "ultrafast",
	}), ffmpeg.RunOptions{})
	if err != nil {
		t.Fatalf("making the test clip: %v", err)
	}
	return path
}

// makeAudioOnly writes a 2 s AAC file with no video.
func makeAudioOnly(t *testing.T, path string) string {
	t.Helper()
	requireFFmpeg(t)
	argv := []string{"ffmpeg", "-hide_banner", "-nostdin", "-y", "-f", "lavfi", "-i", "sine=duration=2",
		"-c:a", "aac", "-f", "mp4", "file:" + path}
	if err := ffmpeg.Run(t.Context(), argv, ffmpeg.RunOptions{}); err != nil {
		t.Fatalf("making the audio-only file: %v", err)
	}
	return path
}

func probeSize(t *testing.T, path string) (int, int) {
	t.Helper()
	p, err := ffmpeg.Probe(t.Context(), path)
	if err != nil {
		t.Fatalf("probe %s: %v", path, err)
	}
	v, ok := p.Video()
	if !ok {
		t.Fatalf("%s has no video", path)
	}
	return v.Width, v.Height
}

// TestEveryTaskAlone runs each step by hand, in the workflow's order, and
// checks what each one leaves on disk.
func TestEveryTaskAlone(t *testing.T) {
	t.Parallel()
	inputs := t.TempDir()
	src := makeClip(t, filepath.Join(inputs, "in put;$(x).mp4"), 640, 360, true)
	out := t.TempDir()
	status := &statusRecorder{}
	p := New(Deps{OutputDir: out, InputRoots: []string{inputs}, Status: status, Preset: "ultrafast"})
	folder := filepath.Join(out, "abc")

	c := call(t, p.DownloadFile, NameDownloadFile, nil, map[string]any{"context": map[string]any{
		"url": "file://" + src, "folder_out": folder, "id": "abc"}})
	if got, want := c[vhgctx.KeyOriginalFile], filepath.Join(folder, "source", "abc"); got != want {
		t.Fatalf("original_file = %v, want %s", got, want)
	}
	c = call(t, p.GetVideoSize, NameGetVideoSize, []any{map[string]any(c)}, nil)
	if w, h, err := c.TrackSize(); err != nil || w != 640 || h != 360 {
		t.Fatalf("track size = %d x %d, %v", w, h, err)
	}
	c = call(t, p.AddPlaylistHeader, NameAddPlaylistHeader, []any{map[string]any(c)}, nil)
	c = call(t, p.ComputeTargetSize, NameComputeTargetSize, []any{map[string]any(c)}, map[string]any{"target_height": int64(180)})
	if w, h, _ := c.TargetSize(); w != 320 || h != 180 {
		t.Fatalf("target size = %d x %d, want 320x180", w, h)
	}
	c = call(t, p.Transcode, NameTranscode, []any{map[string]any(c)}, map[string]any{"bitrate": int64(300)})
	encoded, _ := c.TranscodedFile()
	if w, h := probeSize(t, encoded); w != 320 || h != 180 {
		t.Fatalf("%s is %dx%d, want 320x180", encoded, w, h)
	}
	c = call(t, p.ChunkHLS, NameChunkHLS, []any{map[string]any(c)}, map[string]any{"segtime": int64(4)})
	c = call(t, p.ChunkHLS, NameChunkHLS, []any{map[string]any(c)}, map[string]any{"segtime": int64(4)}) // a re-run is clean
	variant, _ := c.HLSTranscodedPlaylist()
	data, err := os.ReadFile(variant)
	if err != nil || !strings.Contains(string(data), "#EXT-X-ENDLIST") || !strings.Contains(string(data), "chunks_name000.ts") {
		t.Fatalf("variant playlist %s: %v\n%s", variant, err, data)
	}
	c = call(t, p.AddPlaylistInfo, NameAddPlaylistInfo, []any{map[string]any(c)}, nil)
	master := readMaster(t, c)
	call(t, p.AddPlaylistInfo, NameAddPlaylistInfo, []any{map[string]any(c)}, nil)
	if again := readMaster(t, c); again != master {
		t.Fatalf("a rerun of add_playlist_info changed the master:\n%s\nthen\n%s", master, again)
	}
	wantMaster := "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-STREAM-INF:BANDWIDTH=428000,RESOLUTION=320x180,CODECS=\"avc1.4d401f,mp4a.40.2\"\n320x180/playlist.m3u8\n"
	if master != wantMaster {
		t.Fatalf("master:\n%s\nwant:\n%s", master, wantMaster)
	}
	call(t, p.Notify, NameNotify, []any{map[string]any(c)}, map[string]any{"main_task_id": "main"})
	c = call(t, p.AddPlaylistFooter, NameAddPlaylistFooter, []any{[]any{map[string]any(c)}}, nil)
	c = call(t, p.ChunkDash, NameChunkDash, []any{map[string]any(c)}, nil)
	mpd, _ := c.DashMPDFilePath()
	if _, err := os.Stat(mpd); err != nil {
		t.Fatal(err)
	}
	call(t, p.Notify, NameNotify, []any{map[string]any(c)}, map[string]any{"main_task_id": "main", "complete": true})

	s := status.statuses()
	var kinds []string
	for _, m := range s {
		kinds = append(kinds, string(m.Status))
	}
	last := s[len(s)-1]
	if s[len(s)-2].Status != StatePartial || last.Status != StateComplete || last.TaskID != "main" ||
		last.Result.(map[string]any)["dash"] != mpd {
		t.Fatalf("statuses %v; last %+v", kinds, last)
	}
	for _, m := range s[:len(s)-2] {
		if m.Status != StateProgress {
			t.Fatalf("statuses before PARTIAL: %v", kinds)
		}
	}
}

func TestGetVideoSizeRefusesFilesWithoutVideo(t *testing.T) {
	t.Parallel()
	out := t.TempDir()
	p := New(Deps{OutputDir: out})
	folder := filepath.Join(out, "abc")
	os.MkdirAll(filepath.Join(folder, "source"), 0o755)
	files := map[string]string{
		"audio": makeAudioOnly(t, filepath.Join(folder, "source", "audio")),
		"text":  filepath.Join(folder, "source", "text"),
		"empty": filepath.Join(folder, "source", "empty"),
	}
	os.WriteFile(files["text"], []byte("this is not a video\n"), 0o644)
	os.WriteFile(files["empty"], nil, 0o644)
	want := map[string]string{"audio": "has no video stream", "text": "is not a media file", "empty": "is empty"}
	for name, path := range files {
		_, err := p.GetVideoSize(t.Context(), newTask(t, NameGetVideoSize, []any{map[string]any{
			"folder_out": folder, "id": "abc", "original_file": path}}, nil))
		if err == nil || !strings.Contains(err.Error(), want[name]) || !errors.Is(err, ErrBadInput) {
			t.Errorf("get_video_size(%s) = %v, want %q", name, err, want[name])
		}
	}
	// original_file must lie inside folder_out.
	_, err := p.GetVideoSize(t.Context(), newTask(t, NameGetVideoSize, []any{map[string]any{
		"folder_out": folder, "id": "abc", "original_file": "/etc/passwd"}}, nil))
	if err == nil || !strings.Contains(err.Error(), "neither inside folder_out") {
		t.Errorf("get_video_size(/etc/passwd) = %v", err)
	}
}

// TestWorkflowMessagesMatchCapturedTrace runs encode_workflow on a worker
// and compares the task names of every message it publishes with the
// messages Python Celery published for the same workflow.
func TestWorkflowMessagesMatchCapturedTrace(t *testing.T) {
	t.Parallel()
	inputs := t.TempDir()
	src := makeClip(t, filepath.Join(inputs, "src.mp4"), 640, 360, true)
	client, broker, status := startWorker(t, Deps{OutputDir: t.TempDir(), InputRoots: []string{inputs}, Preset: "ultrafast",
		Renditions: []Rendition{{144, 100}, {240, 200}}})
	root, err := client.SendTask(t.Context(), NameEncodeWorkflow, []any{src}, map[string]any{})
	if err != nil {
		t.Fatal(err)
	}
	s := status.waitFor(t, "COMPLETE", func(s []protocol.ResultMeta) bool { return countStatus(s, StateComplete) == 1 })
	if n := countStatus(s, StatePartial); n != 2 {
		t.Errorf("%d PARTIAL statuses, want 2", n)
	}
	for _, m := range s {
		if m.TaskID != root {
			t.Errorf("status %s for %s, want the root %s", m.Status, m.TaskID, root)
		}
	}
	count := func(names []string) map[string]int {
		m := map[string]int{}
		for _, n := range names {
			m[n]++
		}
		return m
	}
	var ours, python []string
	for _, p := range broker.Published() {
		ours = append(ours, p.Envelope.Headers["task"].(string))
	}
	for _, m := range readTrace(t) {
		python = append(python, m.Task)
	}
	if got, want := count(ours), count(python); !mapsEqual(got, want) {
		t.Errorf("task messages published:\n got %v\nwant %v (the Python capture)", got, want)
	}
}

func mapsEqual(a, b map[string]int) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// TestFailureReportedOnce fails a chord header step of a workflow built
// with errbacks: its errback reports FAILURE, and the chord error that
// follows is not reported a second time.
func TestFailureReportedOnce(t *testing.T) {
	t.Parallel()
	inputs := t.TempDir()
	src := makeClip(t, filepath.Join(inputs, "src.mp4"), 640, 360, false)
	out := t.TempDir()
	client, _, status := startWorker(t, Deps{OutputDir: out, InputRoots: []string{inputs}, Preset: "ultrafast"})
	main := worker.NewTaskID()
	wf := Workflow{URL: src, FolderOut: filepath.Join(out, "abc"), ID: "abc", MainTaskID: main,
		Renditions: []Rendition{{180, 300}, {720, 2500}}} // 720 would upscale: compute_target_size fails
	if _, err := client.Apply(t.Context(), wf.Canvas()); err != nil {
		t.Fatal(err)
	}
	s := status.waitFor(t, "FAILURE", func(s []protocol.ResultMeta) bool { return countStatus(s, protocol.StateFailure) > 0 })
	time.Sleep(2 * time.Second) // let the chord error and its errback run
	s = status.statuses()
	if n := countStatus(s, protocol.StateFailure); n != 1 {
		t.Fatalf("%d FAILURE statuses, want 1: %v", n, s)
	}
	for _, m := range s {
		if m.Status != protocol.StateFailure {
			continue
		}
		r := m.Result.(map[string]any)
		if m.TaskID != main || r["exc_type"] != "ValueError" || !strings.Contains(r["error"].(string), "refusing to upscale") {
			t.Errorf("FAILURE = %+v", m)
		}
	}
	if countStatus(s, StateComplete) != 0 {
		t.Error("a failed workflow reported COMPLETE")
	}
}

// TestRevokedStepsReportFailure: Celery runs no errback for a revoked or
// terminated task, so the status consumer must be told by the worker.
func TestRevokedStepsReportFailure(t *testing.T) {
	t.Parallel()
	requireFFmpeg(t)
	inputs := t.TempDir()
	src := makeClip(t, filepath.Join(inputs, "src.mp4"), 640, 360, true)
	out := t.TempDir()
	client, _, status, srv := startServer(t, Deps{OutputDir: out, InputRoots: []string{inputs}, Preset: "ultrafast"})
	folder := filepath.Join(out, "abc")
	ctx := t.Context()

	// Revoked before it runs: the id is revoked, then the message arrives.
	revokedID := worker.NewTaskID()
	srv.Revoke([]string{revokedID}, false, 0)
	sig := protocol.Signature{Task: NameDownloadFile, Kwargs: map[string]any{"context": map[string]any{
		"url": src, "folder_out": folder, "id": "abc"}}, Options: protocol.Options{TaskID: revokedID}}
	if _, err := client.Apply(ctx, sig); err != nil {
		t.Fatal(err)
	}
	s := status.waitFor(t, "FAILURE of the revoked step", func(s []protocol.ResultMeta) bool { return countStatus(s, protocol.StateFailure) > 0 })
	if r := s[0].Result.(map[string]any); s[0].TaskID != revokedID || r["exc_type"] != "TaskRevokedError" || r["task_id"] != revokedID {
		t.Errorf("revoked step status = %+v", s[0])
	}

	// Terminated while running: a transcode of a long source is cancelled.
	// A long, small source upscaled: slow enough to be caught running.
	long := filepath.Join(folder, "source", "long.mp4")
	if err := os.MkdirAll(filepath.Dir(long), 0o755); err != nil {
		t.Fatal(err)
	}
	err := ffmpeg.Run(ctx, ffmpeg.TestPatternArgs(ffmpeg.TestPatternOptions{
		Output: long, Duration: 60 * time.Second, Width: 320, Height: 180, Audio: true, Preset: "ultrafast"}), ffmpeg.RunOptions{})
	if err != nil {
		t.Fatal(err)
	}
	runningID := worker.NewTaskID()
	transcode := protocol.Signature{Task: NameTranscode, Args: []any{map[string]any{
		"url": long, "folder_out": folder, "id": "abc", "original_file": long,
		"track_width": int64(320), "track_height": int64(180), "target_width": int64(1280), "target_height": int64(720)}},
		Kwargs: map[string]any{"bitrate": int64(2500)}, Options: protocol.Options{TaskID: runningID}}
	if _, err := client.Apply(ctx, transcode); err != nil {
		t.Fatal(err)
	}
	status.waitFor(t, "PROGRESS of the transcode", func(s []protocol.ResultMeta) bool { return countStatus(s, "PROGRESS") > 0 })
	if got := srv.Revoke([]string{runningID}, true, 15); len(got) != 1 {
		t.Fatalf("terminate found %v running, want %s", got, runningID)
	}
	s = status.waitFor(t, "FAILURE of the terminated step", func(s []protocol.ResultMeta) bool { return countStatus(s, protocol.StateFailure) > 1 })
	var last protocol.ResultMeta
	for _, m := range s {
		if m.Status == protocol.StateFailure {
			last = m
		}
	}
	r := last.Result.(map[string]any)
	if r["exc_type"] != "TaskRevokedError" || r["task_id"] != runningID || !strings.Contains(r["error"].(string), "terminated") {
		t.Errorf("terminated step status = %+v", last)
	}
}
