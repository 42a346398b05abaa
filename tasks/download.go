package tasks

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"

	vhgctx "github.com/vhg/vhg-worker/context"
	"github.com/vhg/vhg-worker/worker"
)

// DownloadFile is adaptation.commons.download_file(context={url,
// folder_out, id}): it copies the original to <folder_out>/source/<id> and
// sets original_file. An http(s) URL is streamed (a status other than 2xx
// fails the task); a file:// URL or a path is copied only from inside
// Deps.InputRoots. The copy is written under a temporary name and renamed
// into place, so a re-run replaces it whole.
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
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("tasks: download_file: %w", err)
	}
	dest := filepath.Join(dir, id)

	var body io.ReadCloser
	if src.url != "" {
		body, err = p.get(ctx, src.url)
	} else {
		body, err = openLocal(src.path)
	}
	if err != nil {
		return nil, fmt.Errorf("tasks: download_file: %w", err)
	}
	defer body.Close()
	n, err := copyInto(dest, body)
	if err != nil {
		return nil, fmt.Errorf("tasks: download_file: %w", err)
	}
	t.Log.WithField("bytes", n).WithField("file", dest).Info("original downloaded")
	c[vhgctx.KeyOriginalFile] = dest
	return c, nil
}

// get starts an HTTP GET and returns the body of a 2xx response.
func (p *Pipeline) get(ctx context.Context, rawURL string) (io.ReadCloser, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, rawURL, nil)
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w: %w", rawURL, err, ErrBadInput)
	}
	resp, err := p.deps.HTTPClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", req.URL.Redacted(), err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		resp.Body.Close()
		return nil, fmt.Errorf("GET %s: server answered %s: %w", req.URL.Redacted(), resp.Status, ErrBadInput)
	}
	return resp.Body, nil
}
