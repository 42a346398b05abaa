//go:build integration

package tasks

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	vhgctx "github.com/vhg/vhg-worker/context"
	"github.com/vhg/vhg-worker/ffmpeg"
	"github.com/vhg/vhg-worker/protocol"
	"github.com/vhg/vhg-worker/worker"
)

// secretMarker is a line of the secret file that must never reach an
// output.
const secretMarker = "SECRET-7f3a: the worker must never copy this line"

// hostileMedia returns files named like videos that make ffmpeg read the
// file at secret when its demuxer is not restricted: an HLS playlist
// naming it by absolute path, and a concat list naming it by its base
// name (concat reads files next to the list).
func hostileMedia(secret string) map[string]string {
	return map[string]string{
		"playlist.mp4": "#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXTINF:1,\n" + secret + "\n#EXT-X-ENDLIST\n",
		"concat.mp4":   "ffconcat version 1.0\nfile " + filepath.Base(secret) + "\n",
	}
}

// makeSecretClip writes a real clip (MPEG-TS, which a playlist or a concat
// list may name) whose container also carries secretMarker as metadata.
func makeSecretClip(t *testing.T, path string) {
	t.Helper()
	requireFFmpeg(t)
	argv := []string{"ffmpeg", "-hide_banner", "-nostdin", "-y", "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25:duration=1",
		"-c:v", "libx264", "-preset", "ultrafast", "-metadata", "service_name=" + secretMarker, "-f", "mpegts", "file:" + path}
	if err := ffmpeg.Run(t.Context(), argv, ffmpeg.RunOptions{}); err != nil {
		t.Fatalf("making the secret clip: %v", err)
	}
}

// noSecretUnder fails the test if any file under dir holds secretMarker or
// is a copy of the secret clip.
func noSecretUnder(t *testing.T, dir, secret string) {
	t.Helper()
	want, _ := os.ReadFile(secret)
	filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || path == secret {
			return nil
		}
		data, _ := os.ReadFile(path)
		if strings.Contains(string(data), secretMarker) || (len(want) > 0 && string(data) == string(want)) {
			t.Errorf("%s holds the secret", path)
		}
		if strings.HasSuffix(path, ".mp4") && filepath.Base(filepath.Dir(path)) == "encoding" {
			t.Errorf("an encoding was written: %s", path)
		}
		return nil
	})
}

// TestHostileMediaRefusedByEachStep downloads playlists and concat lists
// posing as videos (over HTTP and from an input root), then runs
// get_video_size and transcode on them: both fail as bad input naming the
// refusal, and no output holds the secret they name.
func TestHostileMediaRefusedByEachStep(t *testing.T) {
	t.Parallel()
	requireFFmpeg(t)
	inputs := t.TempDir()
	out := t.TempDir()
	secret := filepath.Join(inputs, "secret.ts")
	makeSecretClip(t, secret)
	media := hostileMedia(secret)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, ok := media[strings.TrimPrefix(r.URL.Path, "/")]
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Write([]byte(body))
	}))
	t.Cleanup(srv.Close)
	p := New(Deps{OutputDir: out, InputRoots: []string{inputs}, Preset: "ultrafast"})

	n := 0
	for name, content := range media {
		local := filepath.Join(inputs, name)
		if err := os.WriteFile(local, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		for _, url := range []string{srv.URL + "/" + name, local} {
			n++
			id := "hostile" + string(rune('a'+n))
			folder := filepath.Join(out, id)
			c := call(t, p.DownloadFile, NameDownloadFile, nil, map[string]any{"context": map[string]any{
				"url": url, "folder_out": folder, "id": id}})
			// The concat list names a file next to it: put one there, as an
			// earlier download might have left.
			os.WriteFile(filepath.Join(folder, "source", filepath.Base(secret)), mustRead(t, secret), 0o644)

			_, err := p.GetVideoSize(t.Context(), newTask(t, NameGetVideoSize, []any{map[string]any(c)}, nil))
			if !errors.Is(err, ErrBadInput) || !errors.Is(err, ffmpeg.ErrInputRefused) ||
				!strings.Contains(err.Error(), "not in a video container this worker reads") {
				t.Errorf("get_video_size of %s = %v, want a refusal wrapping ErrBadInput", url, err)
			}

			// A forged context skips get_video_size: transcode refuses too.
			c[vhgctx.KeyTrackWidth], c[vhgctx.KeyTrackHeight] = 320, 240
			c[vhgctx.KeyTargetWidth], c[vhgctx.KeyTargetHeight] = 160, 120
			_, err = p.Transcode(t.Context(), newTask(t, NameTranscode, []any{map[string]any(c)}, map[string]any{"bitrate": int64(100)}))
			if !errors.Is(err, ErrBadInput) || !errors.Is(err, ffmpeg.ErrInputRefused) {
				t.Errorf("transcode of %s = %v, want a refusal wrapping ErrBadInput", url, err)
			}
			// The copy of the secret is the test's own; nothing else may hold it.
			os.Remove(filepath.Join(folder, "source", filepath.Base(secret)))
		}
	}
	noSecretUnder(t, out, secret)
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// TestHostileMediaFailsTheWorkflow runs the pipeline on a worker with a
// playlist posing as a video: encode_workflow refuses it when it probes
// the URL, and the workflow canvas applied directly (as a Python client
// may) fails at get_video_size after download_file. Both report FAILURE
// with ValueError, and nothing is encoded.
func TestHostileMediaFailsTheWorkflow(t *testing.T) {
	t.Parallel()
	requireFFmpeg(t)
	inputs := t.TempDir()
	secret := filepath.Join(inputs, "secret.ts")
	makeSecretClip(t, secret)
	playlist := hostileMedia(secret)["playlist.mp4"]
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(playlist))
	}))
	t.Cleanup(srv.Close)
	out := t.TempDir()
	client, _, status := startWorker(t, Deps{OutputDir: out, Preset: "ultrafast", Renditions: []Rendition{{120, 100}}})

	root, err := client.SendTask(t.Context(), NameEncodeWorkflow, []any{srv.URL + "/video.mp4"}, map[string]any{})
	if err != nil {
		t.Fatal(err)
	}
	s := status.waitFor(t, "FAILURE of encode_workflow", func(s []protocol.ResultMeta) bool { return countStatus(s, protocol.StateFailure) > 0 })
	checkRefusal(t, s, root)

	main := worker.NewTaskID()
	wf := Workflow{URL: srv.URL + "/video.mp4", FolderOut: filepath.Join(out, "abc"), ID: "abc", MainTaskID: main,
		Renditions: []Rendition{{120, 100}}}
	if _, err := client.Apply(t.Context(), wf.Canvas()); err != nil {
		t.Fatal(err)
	}
	s = status.waitFor(t, "FAILURE of the canvas", func(s []protocol.ResultMeta) bool { return countStatus(s, protocol.StateFailure) > 1 })
	checkRefusal(t, s, main)
	if _, err := os.Stat(filepath.Join(out, "abc", "source", "abc")); err != nil {
		t.Errorf("download_file did not run before the refusal: %v", err)
	}
	noSecretUnder(t, out, secret)
}

// checkRefusal finds the FAILURE status of root and checks it is a
// ValueError naming the refused format.
func checkRefusal(t *testing.T, s []protocol.ResultMeta, root string) {
	t.Helper()
	for _, m := range s {
		if m.Status != protocol.StateFailure || m.TaskID != root {
			continue
		}
		r := m.Result.(map[string]any)
		msg, _ := r["error"].(string)
		if r["exc_type"] != "ValueError" || !strings.Contains(msg, "Format not on whitelist") {
			t.Errorf("FAILURE of %s = %+v, want a ValueError naming the whitelist", root, r)
		}
		t.Logf("FAILURE of %s: %s: %s", root, r["exc_type"], msg)
		return
	}
	t.Errorf("no FAILURE for %s in %v", root, s)
}
