package tasks

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"

	"github.com/vhg/vhg-worker/ffmpeg"
)

// probeRemote runs ffprobe on an http(s) original; it fails when nothing
// arrives for Deps.IdleTimeout. Under AnyHost ffprobe fetches the URL
// itself. Under any other host policy it could not be trusted to (it
// resolves names and follows redirects on its own), so it reads the URL
// through a relay on 127.0.0.1 that fetches it with the download client:
// the policy, the timeouts and the redirect limit then hold for the probe
// as for the download.
func (p *Pipeline) probeRemote(ctx context.Context, rawURL string) (*ffmpeg.ProbeResult, error) {
	if p.deps.DownloadHosts == AnyHost {
		return ffmpeg.ProbeURL(ctx, rawURL, p.deps.IdleTimeout)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("probe relay: %w", err)
	}
	var token [16]byte
	rand.Read(token[:])
	r := &probeRelay{p: p, url: rawURL, path: "/" + hex.EncodeToString(token[:])}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r.serve(ctx, w, req)
	})}
	go srv.Serve(ln)
	defer srv.Close()
	probe, err := ffmpeg.ProbeURL(ctx, "http://"+ln.Addr().String()+r.path, p.deps.IdleTimeout)
	if rerr := r.failure(); rerr != nil && (err != nil || errors.Is(rerr, ErrBadInput)) {
		// What the relay met (a refused host, too many redirects) says
		// more than ffprobe's "Server returned 5XX".
		return nil, rerr
	}
	return probe, err
}

// probeRelay serves one URL, fetched with the download client, to ffprobe:
// GET and HEAD of its secret path only, with ffprobe's Range header passed
// on so that it can seek.
type probeRelay struct {
	p    *Pipeline
	url  string
	path string

	mu  sync.Mutex
	err error // the first error of a fetch
}

// record keeps the first error of a fetch.
func (r *probeRelay) record(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.err == nil {
		r.err = err
	}
}

func (r *probeRelay) failure() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.err
}

// serve answers one request of ffprobe; the fetch is bounded by ctx, the
// probe's.
func (r *probeRelay) serve(ctx context.Context, w http.ResponseWriter, req *http.Request) {
	if req.URL.Path != r.path || (req.Method != http.MethodGet && req.Method != http.MethodHead) {
		http.NotFound(w, req)
		return
	}
	header := http.Header{}
	for _, k := range []string{"Range", "If-Range"} {
		if v := req.Header.Get(k); v != "" {
			header.Set(k, v)
		}
	}
	// The fetch ends with the task or when ffprobe hangs up.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(req.Context(), cancel)()
	resp, err := r.p.get(ctx, req.Method, r.url, header)
	if err != nil {
		// A fetch cancelled because ffprobe hung up (its own timeout, as
		// idle as ours) is no failure of the source: ffprobe's error tells.
		if req.Context().Err() == nil {
			r.record(err)
		}
		http.Error(w, "fetch failed", http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()
	for _, k := range []string{"Content-Type", "Content-Length", "Content-Range", "Accept-Ranges"} {
		if v := resp.Header.Get(k); v != "" {
			w.Header().Set(k, v)
		}
	}
	w.WriteHeader(resp.StatusCode)
	io.Copy(w, relayedBody{resp.Body, func(err error) {
		// Errors after ffprobe hung up (the fetch is then cancelled) are
		// no failure of the source.
		if req.Context().Err() == nil && !errors.Is(err, context.Canceled) {
			r.record(err)
		}
	}})
}

// relayedBody reports the read errors of a fetched body other than EOF.
type relayedBody struct {
	body    io.Reader
	onError func(error)
}

func (b relayedBody) Read(p []byte) (int, error) {
	n, err := b.body.Read(p)
	if err != nil && err != io.EOF {
		b.onError(err)
	}
	return n, err
}
