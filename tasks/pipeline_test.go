package tasks

// Tests of the tasks on the memory broker that need no ffmpeg.

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	vhgctx "github.com/vhg/vhg-worker/context"
	"github.com/vhg/vhg-worker/protocol"
	"github.com/vhg/vhg-worker/worker"
)

func TestDownloadFile(t *testing.T) {
	t.Parallel()
	inputs := t.TempDir()
	elsewhere := t.TempDir()
	good := filepath.Join(inputs, "good.bin")
	os.WriteFile(good, []byte("payload"), 0o644)
	os.WriteFile(filepath.Join(inputs, "empty.bin"), nil, 0o644)
	os.Mkdir(filepath.Join(inputs, "dir"), 0o755)
	secret := filepath.Join(elsewhere, "secret")
	os.WriteFile(secret, []byte("secret"), 0o644)
	os.Symlink(secret, filepath.Join(inputs, "link"))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/ok" {
			http.NotFound(w, r)
			return
		}
		w.Write([]byte("from http"))
	}))
	t.Cleanup(srv.Close)

	out := t.TempDir()
	p := New(Deps{OutputDir: out, InputRoots: []string{inputs}})
	tests := []struct {
		url     string
		want    string // content, when it succeeds
		wantErr string
	}{
		{url: srv.URL + "/ok", want: "from http"},
		{url: good, want: "payload"},
		{url: "file://" + good, want: "payload"},
		{url: srv.URL + "/missing", wantErr: "404 Not Found"},
		{url: filepath.Join(inputs, "empty.bin"), wantErr: "is empty"},
		{url: filepath.Join(inputs, "dir"), wantErr: "not a regular file"},
		{url: secret, wantErr: "outside the allowed input roots"},
		{url: filepath.Join(inputs, "..", filepath.Base(elsewhere), "secret"), wantErr: "outside the allowed input roots"},
		{url: filepath.Join(inputs, "link"), wantErr: "outside the allowed input roots"},
		{url: filepath.Join(inputs, "nope"), wantErr: "does not exist"},
		{url: "ftp://example.com/x", wantErr: `scheme "ftp" is not allowed`},
		{url: "relative/path.mp4", wantErr: "neither an http(s) URL nor an absolute path"},
		{url: "file://otherhost/etc/passwd", wantErr: "names another host"},
	}
	for i, tt := range tests {
		id := "dl" + string(rune('a'+i))
		folder := filepath.Join(out, id)
		res, err := p.DownloadFile(t.Context(), newTask(t, NameDownloadFile, nil, map[string]any{"context": map[string]any{
			"url": tt.url, "folder_out": folder, "id": id}}))
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !errors.Is(err, ErrBadInput) {
				t.Errorf("download %s: %v, %v; want error %q", tt.url, res, err, tt.wantErr)
			}
			if _, err := os.Stat(filepath.Join(folder, "source", id)); err == nil {
				t.Errorf("download %s failed but left a file", tt.url)
			}
			continue
		}
		if err != nil {
			t.Errorf("download %s: %v", tt.url, err)
			continue
		}
		data, _ := os.ReadFile(res.(vhgctx.Context)[vhgctx.KeyOriginalFile].(string))
		if string(data) != tt.want {
			t.Errorf("download %s wrote %q, want %q", tt.url, data, tt.want)
		}
	}
	// No roots: local files are refused.
	noRoots := New(Deps{OutputDir: out})
	_, err := noRoots.DownloadFile(t.Context(), newTask(t, NameDownloadFile, nil, map[string]any{"context": map[string]any{
		"url": good, "folder_out": filepath.Join(out, "x"), "id": "x"}}))
	if err == nil || !strings.Contains(err.Error(), "allows no local inputs") {
		t.Errorf("download with no input roots: %v", err)
	}
}

// TestHostileContexts sends every task contexts whose folder_out or id try
// to leave the output directory or smuggle shell syntax: each is refused
// and nothing is written outside the output directory.
func TestHostileContexts(t *testing.T) {
	t.Parallel()
	base := t.TempDir()
	out := filepath.Join(base, "out")
	os.MkdirAll(out, 0o755)
	p := New(Deps{OutputDir: out, InputRoots: []string{base}})
	handlers := map[string]worker.HandlerFunc{
		NameDownloadFile: p.DownloadFile, NameGetVideoSize: p.GetVideoSize, NameAddPlaylistHeader: p.AddPlaylistHeader,
		NameComputeTargetSize: p.ComputeTargetSize, NameTranscode: p.Transcode, NameChunkHLS: p.ChunkHLS,
		NameAddPlaylistInfo: p.AddPlaylistInfo, NameChunkDash: p.ChunkDash, NameNotify: p.Notify,
	}
	contexts := []map[string]any{
		{"folder_out": out + "/../escaped", "id": "abc"},
		{"folder_out": base + "/escaped", "id": "abc"},
		{"folder_out": "/tmp/escaped", "id": "abc"},
		{"folder_out": "relative/escaped", "id": "abc"},
		{"folder_out": out, "id": "abc"}, // the root itself
		{"folder_out": out + "/abc", "id": "../../escaped"},
		{"folder_out": out + "/abc", "id": "a; touch " + base + "/escaped"},
		{"folder_out": out + "/abc", "id": "$(touch escaped)"},
		{"folder_out": out + "/a\nb", "id": "abc"},
		{"folder_out": out + "/a%d", "id": "abc"},
	}
	for _, hostile := range contexts {
		hostile["url"] = "http://127.0.0.1:1/x.mp4"
		hostile["original_file"] = "/etc/hostname"
		hostile["track_width"], hostile["track_height"] = 640, 360
		hostile["target_width"], hostile["target_height"], hostile["bitrate"] = 320, 180, 300
		for name, h := range handlers {
			var args []any
			kwargs := map[string]any{"main_task_id": "main"}
			if name == NameDownloadFile {
				kwargs["context"] = hostile
			} else {
				args = []any{hostile}
			}
			_, err := h(t.Context(), newTask(t, name, args, kwargs))
			if err == nil || !errors.Is(err, vhgctx.ErrUnsafePath) {
				t.Errorf("%s(folder_out=%q, id=%q) = %v, want an unsafe path error", name, hostile["folder_out"], hostile["id"], err)
			}
		}
	}
	entries, _ := os.ReadDir(base)
	for _, e := range entries {
		if e.Name() != "out" {
			t.Errorf("written outside the output directory: %s", e.Name())
		}
	}
	if entries, _ := os.ReadDir(out); len(entries) != 0 {
		t.Errorf("hostile contexts wrote into the output directory: %v", entries)
	}
}

// TestMiddlewareReportsPythonCanvasFailure runs a step the way a Python
// client sends it, with no notify_failure errback: the middleware reports
// the FAILURE for its root.
func TestMiddlewareReportsPythonCanvasFailure(t *testing.T) {
	t.Parallel()
	out := t.TempDir()
	client, _, status := startWorker(t, Deps{OutputDir: out})
	id, err := client.SendTask(t.Context(), NameDownloadFile, nil, map[string]any{"context": map[string]any{
		"url": "file:///etc/passwd", "folder_out": filepath.Join(out, "abc"), "id": "abc"}})
	if err != nil {
		t.Fatal(err)
	}
	s := status.waitFor(t, "FAILURE", func(s []protocol.ResultMeta) bool { return countStatus(s, protocol.StateFailure) > 0 })
	r := s[0].Result.(map[string]any)
	if s[0].TaskID != id || r["task_id"] != id || r["exc_type"] != "ValueError" || !strings.Contains(r["error"].(string), "allows no local inputs") {
		t.Errorf("FAILURE = %+v", s[0])
	}
}
