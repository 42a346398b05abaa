package tasks

import (
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	vhgctx "github.com/vhg/vhg-worker/context"
	"github.com/vhg/vhg-worker/ffmpeg"
	"github.com/vhg/vhg-worker/protocol"
)

// downloadTo runs download_file of url into <out>/<id> and returns its
// context or error.
func downloadTo(t *testing.T, p *Pipeline, out, id, url string) (vhgctx.Context, error) {
	t.Helper()
	res, err := p.DownloadFile(t.Context(), newTask(t, NameDownloadFile, nil, map[string]any{"context": map[string]any{
		"url": url, "folder_out": filepath.Join(out, id), "id": id}}))
	if err != nil {
		return nil, err
	}
	return res.(vhgctx.Context), nil
}

// leftNothing fails the test when a failed download left anything in out:
// no file, no temporary, not even its folders.
func leftNothing(t *testing.T, out, what string) {
	t.Helper()
	if entries, _ := os.ReadDir(out); len(entries) != 0 {
		var names []string
		filepath.WalkDir(out, func(path string, _ os.DirEntry, _ error) error { names = append(names, path); return nil })
		t.Errorf("%s left %v", what, names)
	}
}

// hostileServer serves the bodies that the download limits must stop.
func hostileServer(t *testing.T) *httptest.Server {
	mux := http.NewServeMux()
	mux.HandleFunc("/ok", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("fine")) })
	mux.HandleFunc("/big-declared", func(w http.ResponseWriter, r *http.Request) {
		// Declares 2000 bytes; the limit refuses it before reading any.
		w.Header().Set("Content-Length", "2000")
		w.Write(make([]byte, 2000))
	})
	mux.HandleFunc("/big-chunked", func(w http.ResponseWriter, r *http.Request) {
		for range 3 { // no Content-Length: chunked
			w.Write(make([]byte, 1000))
			w.(http.Flusher).Flush()
		}
	})
	// 1 MB of zeros in about 1 KB: the limit counts what is decoded.
	var z bytes.Buffer
	gz := gzip.NewWriter(&z)
	gz.Write(make([]byte, 1<<20))
	gz.Close()
	mux.HandleFunc("/gzip-bomb", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Encoding", "gzip")
		w.Header().Set("Content-Length", strconv.Itoa(z.Len()))
		w.Write(z.Bytes())
	})
	mux.HandleFunc("/short", func(w http.ResponseWriter, r *http.Request) {
		// Promises 100 bytes, sends 10 and hangs up.
		w.Header().Set("Content-Length", "100")
		w.Write([]byte("0123456789"))
	})
	mux.HandleFunc("/endless", func(w http.ResponseWriter, r *http.Request) {
		chunk := make([]byte, 32<<10)
		for r.Context().Err() == nil {
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
	})
	mux.HandleFunc("/stall-body", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "100")
		w.Write([]byte("a few bytes, then nothing"))
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	})
	mux.HandleFunc("/stall-headers", func(w http.ResponseWriter, r *http.Request) {
		<-r.Context().Done()
	})
	mux.HandleFunc("/slow", func(w http.ResponseWriter, r *http.Request) {
		// A byte every 100 ms for 4 s, longer than the idle timeout of the
		// test (2 s): slow, but always moving.
		for range 40 {
			w.Write([]byte("s"))
			w.(http.Flusher).Flush()
			time.Sleep(100 * time.Millisecond)
		}
	})
	mux.HandleFunc("/redirect/", func(w http.ResponseWriter, r *http.Request) {
		n, _ := strconv.Atoi(strings.TrimPrefix(r.URL.Path, "/redirect/"))
		if n == 0 {
			w.Write([]byte("after redirects"))
			return
		}
		http.Redirect(w, r, "/redirect/"+strconv.Itoa(n-1), http.StatusFound)
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

// TestDownloadLimits: every limit refuses with a clear error and leaves
// nothing on disk; a slow download that keeps moving succeeds.
func TestDownloadLimits(t *testing.T) {
	t.Parallel()
	srv := hostileServer(t)
	tests := []struct {
		path    string
		want    string // content, when it succeeds
		wantErr string
		badIn   bool // the error wraps ErrBadInput (a ValueError)
	}{
		{path: "/ok", want: "fine"},
		{path: "/slow", want: strings.Repeat("s", 40)},
		{path: "/redirect/5", want: "after redirects"},
		{path: "/big-declared", wantErr: "2000 bytes (Content-Length) is more than the download limit of 1000 bytes", badIn: true},
		{path: "/big-chunked", wantErr: "grows past the download limit of 1000 bytes", badIn: true},
		{path: "/endless", wantErr: "grows past the download limit of 1000 bytes", badIn: true},
		{path: "/redirect/6", wantErr: "more than 5 redirects", badIn: true},
		{path: "/gzip-bomb", wantErr: "grows past the download limit of 1000 bytes", badIn: true},
		{path: "/short", wantErr: "unexpected EOF"},
		{path: "/stall-body", wantErr: "no data received for 500ms"},
		{path: "/stall-headers", wantErr: "timeout awaiting response headers"},
	}
	for _, tt := range tests {
		t.Run(strings.TrimPrefix(tt.path, "/"), func(t *testing.T) {
			t.Parallel()
			out := t.TempDir()
			// A short idle timeout only where a stall is the point: on a
			// loaded machine the others can wait longer than that for a byte.
			idle := 5 * time.Second
			switch {
			case strings.HasPrefix(tt.path, "/stall"):
				idle = 500 * time.Millisecond
			case tt.path == "/slow":
				idle = 2 * time.Second
			}
			p := New(Deps{OutputDir: out, MaxDownloadSize: 1000, IdleTimeout: idle})
			c, err := downloadTo(t, p, out, "abc", srv.URL+tt.path)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("download %s: %v", tt.path, err)
				}
				data, _ := os.ReadFile(c[vhgctx.KeyOriginalFile].(string))
				if string(data) != tt.want {
					t.Errorf("download %s wrote %q, want %q", tt.path, data, tt.want)
				}
				return
			}
			t.Logf("download %s: %v", tt.path, err)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) || errors.Is(err, ErrBadInput) != tt.badIn {
				t.Errorf("download %s = %v; want %q (bad input: %t)", tt.path, err, tt.wantErr, tt.badIn)
			}
			leftNothing(t, out, tt.path)
		})
	}
}

// TestDownloadUnlimited: a negative MaxDownloadSize lifts the limit.
func TestDownloadUnlimited(t *testing.T) {
	t.Parallel()
	srv := hostileServer(t)
	out := t.TempDir()
	c, err := downloadTo(t, New(Deps{OutputDir: out, MaxDownloadSize: -1}), out, "abc", srv.URL+"/big-declared")
	if err != nil {
		t.Fatal(err)
	}
	if info, err := os.Stat(c[vhgctx.KeyOriginalFile].(string)); err != nil || info.Size() != 2000 {
		t.Errorf("unlimited download: %v, %v", info, err)
	}
}

// TestDownloadHostPolicy: under PublicHosts every connection to a
// non-public address is refused, whether the URL names it, DNS gives it or
// a redirect leads to it; under AnyHost the same URLs download.
func TestDownloadHostPolicy(t *testing.T) {
	t.Parallel()
	target := hostileServer(t)
	// "public" stands for a public host: it redirects to the loopback one.
	public := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/here" {
			w.Write([]byte("public content"))
			return
		}
		http.Redirect(w, r, target.URL+"/ok", http.StatusFound)
	}))
	t.Cleanup(public.Close)
	publicAddr := strings.TrimPrefix(public.URL, "http://")
	targetPort := strings.TrimPrefix(target.URL, "http://127.0.0.1:")

	tests := []struct {
		url, wantErr string
	}{
		{url: target.URL + "/ok", wantErr: "127.0.0.1 is not a public address"},
		{url: "http://localhost:" + targetPort + "/ok", wantErr: "is not a public address"}, // DNS gives loopback
		{url: public.URL + "/redirect", wantErr: "127.0.0.1 is not a public address"},
		{url: "http://[::1]:" + targetPort + "/ok", wantErr: "is not a public address"},
		{url: "http://0.0.0.0:" + targetPort + "/ok", wantErr: "0.0.0.0 is not a public address"},
		{url: public.URL + "/here"},
	}
	for i, tt := range tests {
		out := t.TempDir()
		p := New(Deps{OutputDir: out, DownloadHosts: PublicHosts})
		// The test's stand-in for a public host is let through; every other
		// address goes to the policy.
		p.client = newDownloadClient(p.deps, func(network, address string, c syscall.RawConn) error {
			if address == publicAddr {
				return nil
			}
			return PublicHosts.control(network, address, c)
		})
		id := fmt.Sprintf("h%d", i)
		_, err := downloadTo(t, p, out, id, tt.url)
		t.Logf("download %s under PublicHosts: %v", tt.url, err)
		if tt.wantErr == "" {
			if err != nil {
				t.Errorf("download %s: %v", tt.url, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !errors.Is(err, ErrBadInput) {
			t.Errorf("download %s under PublicHosts = %v, want %q wrapping ErrBadInput", tt.url, err, tt.wantErr)
		}
		leftNothing(t, out, tt.url)
		// The default policy lets the same URL through (0.0.0.0 dials
		// the local host on Linux); the server does not listen on ::1.
		if strings.Contains(tt.url, "[::1]") {
			continue
		}
		anyOut := t.TempDir()
		if _, err := downloadTo(t, New(Deps{OutputDir: anyOut}), anyOut, id, tt.url); err != nil {
			t.Errorf("download %s under AnyHost: %v", tt.url, err)
		}
	}
}

func TestPublicAddr(t *testing.T) {
	t.Parallel()
	tests := map[string]bool{
		"8.8.8.8": true, "1.1.1.1": true, "2606:4700:4700::1111": true, "64:ff9b::808:808": true,
		"127.0.0.1": false, "127.8.9.10": false, "::1": false,
		"10.1.2.3": false, "172.16.0.1": false, "172.31.255.255": false, "192.168.1.1": false, "fd00::1": false,
		"169.254.169.254": false, "fe80::1": false,
		"0.0.0.0": false, "::": false, "0.1.2.3": false,
		"224.0.0.1": false, "ff02::1": false, "255.255.255.255": false,
		"100.64.0.1": false, "192.0.0.1": false, "198.18.0.1": false, "240.0.0.1": false,
		"::ffff:127.0.0.1": false, "::ffff:10.0.0.1": false, "::ffff:8.8.8.8": true,
		"64:ff9b::7f00:1": false, "64:ff9b::a9fe:a9fe": false, "2002:7f00:1::": false, "2001:db8::1": false,
		"::127.0.0.1": false,
	}
	for addr, want := range tests {
		if got := publicAddr(netip.MustParseAddr(addr)); got != want {
			t.Errorf("publicAddr(%s) = %t, want %t", addr, got, want)
		}
	}
}

func TestParseHostPolicy(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]HostPolicy{"any": AnyHost, "": AnyHost, "public": PublicHosts, " Public ": PublicHosts} {
		if got, err := ParseHostPolicy(in); err != nil || got != want {
			t.Errorf("ParseHostPolicy(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	if _, err := ParseHostPolicy("private"); err == nil {
		t.Error("ParseHostPolicy(private) succeeded")
	}
}

// runFFmpeg runs ffmpeg with args after the usual flags.
func runFFmpeg(t *testing.T, args ...string) error {
	t.Helper()
	return ffmpeg.Run(t.Context(), append([]string{"ffmpeg", "-hide_banner", "-nostdin", "-y"}, args...), ffmpeg.RunOptions{})
}

// TestDownloadRefusalIsValueError runs refused downloads on a worker: the
// FAILURE status says ValueError with the reason.
func TestDownloadRefusalIsValueError(t *testing.T) {
	t.Parallel()
	srv := hostileServer(t)
	tests := []struct {
		hosts         HostPolicy
		path, wantErr string
	}{
		{AnyHost, "/big-declared", "more than the download limit of 1000 bytes"},
		{AnyHost, "/endless", "grows past the download limit of 1000 bytes"},
		{AnyHost, "/redirect/9", "more than 5 redirects"},
		{PublicHosts, "/ok", "127.0.0.1 is not a public address"},
	}
	for _, tt := range tests {
		out := t.TempDir()
		client, _, status := startWorker(t, Deps{OutputDir: out, MaxDownloadSize: 1000, DownloadHosts: tt.hosts})
		id, err := client.SendTask(t.Context(), NameDownloadFile, nil, map[string]any{"context": map[string]any{
			"url": srv.URL + tt.path, "folder_out": filepath.Join(out, "abc"), "id": "abc"}})
		if err != nil {
			t.Fatal(err)
		}
		s := status.waitFor(t, "FAILURE of "+tt.path, func(s []protocol.ResultMeta) bool { return countStatus(s, protocol.StateFailure) > 0 })
		r := s[0].Result.(map[string]any)
		if s[0].TaskID != id || r["exc_type"] != "ValueError" || !strings.Contains(r["error"].(string), tt.wantErr) {
			t.Errorf("FAILURE of %s under %s = %v, want a ValueError saying %q", tt.path, tt.hosts, r, tt.wantErr)
		}
		leftNothing(t, out, tt.path)
	}
}
