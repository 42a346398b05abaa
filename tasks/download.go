package tasks

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"time"

	vhgctx "github.com/vhg/vhg-worker/context"
	"github.com/vhg/vhg-worker/worker"
)

// DownloadFile is adaptation.commons.download_file(context={url,
// folder_out, id}): it copies the original to <folder_out>/source/<id> and
// sets original_file. An http(s) URL is streamed within the download
// limits of Deps (size, host policy, connect and idle timeouts, at most
// maxRedirects redirects; a status other than 2xx fails the task); a
// file:// URL or a path is copied only from inside Deps.InputRoots. The
// copy is written under a temporary name and renamed into place, so a
// re-run replaces it whole, and a download that fails leaves nothing.
func (p *Pipeline) DownloadFile(ctx context.Context, t *worker.Task) (any, error) {
	c, err := p.contextArg(t)
	if err != nil {
		return nil, err
	}
	rawURL, err := c.URL()
	if err != nil {
		return nil, fmt.Errorf("tasks: download_file: %w", err)
	}
	id, err := c.ID()
	if err != nil {
		return nil, fmt.Errorf("tasks: download_file: %w", err)
	}
	src, err := p.resolveSource(rawURL)
	if err != nil {
		return nil, fmt.Errorf("tasks: download_file: %w", err)
	}
	dir, err := c.SourceFolder()
	if err != nil {
		return nil, fmt.Errorf("tasks: download_file: %w", err)
	}
	// The source is opened first, so a refused one creates nothing.
	var body io.ReadCloser
	if src.url != "" {
		body, err = p.download(ctx, src.url)
	} else {
		body, err = openLocal(src.path)
	}
	if err != nil {
		return nil, fmt.Errorf("tasks: download_file: %w", err)
	}
	defer body.Close()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("tasks: download_file: %w", err)
	}
	dest := filepath.Join(dir, id)
	n, err := copyInto(dest, body)
	if err != nil {
		// Remove the folders this run made, when nothing else is in them.
		os.Remove(dir)
		os.Remove(filepath.Dir(dir))
		return nil, fmt.Errorf("tasks: download_file: %w", err)
	}
	t.Log.WithField("bytes", n).WithField("file", dest).Info("original downloaded")
	c[vhgctx.KeyOriginalFile] = dest
	return c, nil
}

// download starts an HTTP GET of an original and returns the body of a
// 2xx response, which fails reading past Deps.MaxDownloadSize. A larger
// Content-Length is refused before any byte of the body is read.
func (p *Pipeline) download(ctx context.Context, rawURL string) (io.ReadCloser, error) {
	resp, err := p.get(ctx, http.MethodGet, rawURL, nil)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		resp.Body.Close()
		return nil, fmt.Errorf("GET %s: server answered %s: %w", resp.Request.URL.Redacted(), resp.Status, ErrBadInput)
	}
	max := p.deps.MaxDownloadSize
	if max < 0 {
		return resp.Body, nil
	}
	if resp.ContentLength > max {
		resp.Body.Close()
		return nil, fmt.Errorf("GET %s: %d bytes (Content-Length) is more than the download limit of %d bytes: %w",
			resp.Request.URL.Redacted(), resp.ContentLength, max, ErrBadInput)
	}
	return &cappedBody{ReadCloser: resp.Body, left: max, max: max, url: resp.Request.URL.Redacted()}, nil
}

// maxRedirects is how many redirects a download follows.
const maxRedirects = 5

// errIdle is the cancel cause of a download that received nothing for
// Deps.IdleTimeout.
var errIdle = errors.New("idle")

// get sends an HTTP request with the download client. The response body
// fails when it receives nothing for Deps.IdleTimeout; closing it releases
// the request. Errors that come from the request itself (a refused host,
// too many redirects, a bad URL) wrap ErrBadInput.
func (p *Pipeline) get(ctx context.Context, method, rawURL string, header http.Header) (*http.Response, error) {
	ctx, cancel := context.WithCancelCause(ctx)
	req, err := http.NewRequestWithContext(ctx, method, rawURL, nil)
	if err != nil {
		cancel(nil)
		return nil, fmt.Errorf("%s %s: %w: %w", method, rawURL, err, ErrBadInput)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := p.client.Do(req)
	if err != nil {
		cancel(nil)
		return nil, fmt.Errorf("%s %s: %w", method, req.URL.Redacted(), err)
	}
	b := &idleBody{body: resp.Body, cancel: cancel, idle: p.deps.IdleTimeout, url: resp.Request.URL.Redacted()}
	b.timer = time.AfterFunc(b.idle, func() {
		b.stalled.Store(true)
		cancel(errIdle)
	})
	resp.Body = b
	return resp, nil
}

// newDownloadClient returns the HTTP client of the downloads: deps's
// connect and idle timeouts, maxRedirects, and control (the host policy's,
// which tests replace) checking the address of every connection.
func newDownloadClient(deps Deps, control func(network, address string, c syscall.RawConn) error) *http.Client {
	dialer := &net.Dialer{Timeout: deps.ConnectTimeout, KeepAlive: 30 * time.Second, Control: control}
	transport := &http.Transport{
		DialContext:           dialer.DialContext,
		TLSHandshakeTimeout:   deps.ConnectTimeout,
		ResponseHeaderTimeout: deps.IdleTimeout,
		ExpectContinueTimeout: time.Second,
		IdleConnTimeout:       90 * time.Second,
		MaxIdleConns:          16,
		ForceAttemptHTTP2:     true,
	}
	if deps.DownloadHosts == AnyHost {
		transport.Proxy = http.ProxyFromEnvironment
	}
	return &http.Client{
		Transport: transport,
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if len(via) > maxRedirects {
				return fmt.Errorf("more than %d redirects: %w", maxRedirects, ErrBadInput)
			}
			return nil
		},
	}
}

// idleBody is a response body that fails when no byte arrives for idle:
// its timer then cancels the request.
type idleBody struct {
	body    io.ReadCloser
	cancel  context.CancelCauseFunc // the request's
	timer   *time.Timer
	stalled atomic.Bool // set when the timer fired
	idle    time.Duration
	url     string
}

func (b *idleBody) Read(p []byte) (int, error) {
	n, err := b.body.Read(p)
	if n > 0 {
		b.timer.Reset(b.idle)
	}
	if err != nil && err != io.EOF && b.stalled.Load() {
		err = fmt.Errorf("GET %s: no data received for %s", b.url, b.idle)
	}
	return n, err
}

func (b *idleBody) Close() error {
	b.timer.Stop()
	err := b.body.Close()
	b.cancel(nil)
	return err
}

// cappedBody fails reading past max bytes.
type cappedBody struct {
	io.ReadCloser
	left, max int64
	url       string
}

func (b *cappedBody) Read(p []byte) (int, error) {
	if int64(len(p)) > b.left+1 {
		p = p[:b.left+1]
	}
	n, err := b.ReadCloser.Read(p)
	b.left -= int64(n)
	if b.left < 0 {
		return n, fmt.Errorf("GET %s: the body grows past the download limit of %d bytes: %w", b.url, b.max, ErrBadInput)
	}
	return n, err
}
