//go:build integration

package tasks

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The probe of URLs through ffprobe (with the relay of the public host
// policy): these need ffmpeg.

// TestProbeRelay: under PublicHosts encode_workflow's probe goes through
// the relay, which seeks in a real clip, follows the policy on redirects
// and reports a refused host as bad input.
func TestProbeRelay(t *testing.T) {
	t.Parallel()
	requireFFmpeg(t)
	dir := t.TempDir()
	// A clip with its index at the end: ffprobe must seek (Range) to read it.
	clip := filepath.Join(dir, "clip.mp4")
	err := runFFmpeg(t, "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25:duration=1",
		"-c:v", "libx264", "-preset", "ultrafast", "-f", "mp4", "file:"+clip)
	if err != nil {
		t.Fatal(err)
	}
	target := hostileServer(t)
	var (
		mu     sync.Mutex
		ranges []string
	)
	public := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/clip.mp4":
			mu.Lock()
			ranges = append(ranges, r.Header.Get("Range"))
			mu.Unlock()
			http.ServeFile(w, r, clip)
		default:
			http.Redirect(w, r, target.URL+"/ok", http.StatusFound)
		}
	}))
	t.Cleanup(public.Close)
	publicAddr := strings.TrimPrefix(public.URL, "http://")
	p := New(Deps{OutputDir: t.TempDir(), DownloadHosts: PublicHosts})
	p.client = newDownloadClient(p.deps, func(network, address string, c syscall.RawConn) error {
		if address == publicAddr {
			return nil
		}
		return PublicHosts.control(network, address, c)
	})

	probe, err := p.probeRemote(t.Context(), public.URL+"/clip.mp4")
	if err != nil {
		t.Fatalf("probe through the relay: %v", err)
	}
	if v, ok := probe.Video(); !ok || v.Width != 320 || v.Height != 240 {
		t.Errorf("probe through the relay: %+v", probe)
	}
	mu.Lock()
	t.Logf("ranges asked: %q", ranges)
	mu.Unlock()

	for _, u := range []string{public.URL + "/redirect", target.URL + "/ok"} {
		_, err = p.probeRemote(t.Context(), u)
		if !errors.Is(err, ErrBadInput) || !strings.Contains(err.Error(), "127.0.0.1 is not a public address") {
			t.Errorf("probe of %s = %v, want the host refused as bad input", u, err)
		}
	}
	// Under AnyHost, ffprobe fetches the URL itself.
	if _, err := New(Deps{OutputDir: t.TempDir()}).probeRemote(t.Context(), public.URL+"/clip.mp4"); err != nil {
		t.Errorf("probe under AnyHost: %v", err)
	}
}

// TestProbeStalledServer: encode_workflow's probe of a server that stops
// sending fails after the idle timeout, with ffprobe fetching (AnyHost) or
// the relay (PublicHosts), as a timeout.
func TestProbeStalledServer(t *testing.T) {
	t.Parallel()
	requireFFmpeg(t)
	srv := hostileServer(t)
	for _, hosts := range []HostPolicy{AnyHost, PublicHosts} {
		for _, path := range []string{"/stall-body", "/stall-headers"} {
			p := New(Deps{OutputDir: t.TempDir(), DownloadHosts: hosts, IdleTimeout: 500 * time.Millisecond})
			p.client = newDownloadClient(p.deps, nil) // the loopback server stands for a public one
			_, err := p.renditionsFor(t.Context(), srv.URL+path)
			t.Logf("probe of %s under %s: %v", path, hosts, err)
			// A stall is a network failure (RuntimeError), not bad input.
			if err == nil || errors.Is(err, ErrBadInput) ||
				!strings.Contains(err.Error(), "timed out") && !strings.Contains(err.Error(), "no data received") && !strings.Contains(err.Error(), "timeout awaiting response headers") {
				t.Errorf("probe of %s under %s = %v, want a timeout that is not bad input", path, hosts, err)
			}
		}
	}
}
