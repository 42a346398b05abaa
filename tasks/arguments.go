package tasks

import (
	"fmt"
	"path/filepath"
	"strings"

	vhgctx "github.com/vhg/vhg-worker/context"
	"github.com/vhg/vhg-worker/worker"
)

// contextArg returns a copy of the task's context (its first positional
// argument, or the kwarg "context" as download_file receives it), with the
// named kwargs added to it as the Python tasks did, after checking that its
// folder_out lies inside the output directory and its id is safe.
func (p *Pipeline) contextArg(t *worker.Task, kwargs ...string) (vhgctx.Context, error) {
	var raw any
	switch {
	case len(t.Args()) > 0:
		raw = t.Args()[0]
	case t.Kwargs()["context"] != nil:
		raw = t.Kwargs()["context"]
	default:
		return nil, fmt.Errorf("tasks: %s: no context argument: %w", shortName(t), ErrBadInput)
	}
	c, err := p.checkContext(t, raw)
	if err != nil {
		return nil, err
	}
	for _, k := range kwargs {
		if v, ok := t.Kwargs()[k]; ok {
			c[k] = v
		}
	}
	return c, nil
}

// checkContext returns a copy of raw as a Context, once Validate accepts it.
func (p *Pipeline) checkContext(t *worker.Task, raw any) (vhgctx.Context, error) {
	c, err := vhgctx.FromValue(raw)
	if err != nil {
		return nil, fmt.Errorf("tasks: %s: %w: %w", shortName(t), err, ErrBadInput)
	}
	c = c.Clone()
	if err := c.Validate(p.deps.OutputDir); err != nil {
		return nil, fmt.Errorf("tasks: %s: %w", shortName(t), err)
	}
	return c, nil
}

// within reports whether path is strictly inside dir; both must be clean.
func within(dir, path string) bool {
	if dir == string(filepath.Separator) {
		return path != dir && strings.HasPrefix(path, dir)
	}
	return strings.HasPrefix(path, dir+string(filepath.Separator))
}

// shortName is the task name without "adaptation.commons.", for errors.
func shortName(t *worker.Task) string {
	return strings.TrimPrefix(t.Name(), namePrefix)
}

// segtime returns the context's segtime, or the default of the original.
func segtime(c vhgctx.Context) (int, error) {
	if c[vhgctx.KeySegtime] == nil {
		return defaultSegtime, nil
	}
	return c.Segtime()
}

// defaultSegtime is the segment length of the original workflow, in seconds.
const defaultSegtime = 4
