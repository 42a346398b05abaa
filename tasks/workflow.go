package tasks

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"

	vhgctx "github.com/vhg/vhg-worker/context"
	"github.com/vhg/vhg-worker/ffmpeg"
	"github.com/vhg/vhg-worker/protocol"
	"github.com/vhg/vhg-worker/worker"
)

// EncodeWorkflow is adaptation.commons.encode_workflow(url). It probes the
// source first and keeps only the renditions no taller than it (renditions
// never upscale; when none is left the task fails, and the FailureStatus
// middleware reports it), then applies the workflow canvas (see Canvas) as
// its own children, so its id is the root id and main_task_id of every
// step and any Celery worker, Go or Python, may run any step. It returns
// the id of the workflow's last step.
func (p *Pipeline) EncodeWorkflow(ctx context.Context, t *worker.Task) (any, error) {
	var rawURL string
	if len(t.Args()) > 0 {
		rawURL, _ = t.Args()[0].(string)
	}
	if rawURL == "" {
		rawURL = stringKwarg(t, "url")
	}
	renditions, err := p.renditionsFor(ctx, rawURL)
	if err != nil {
		return nil, fmt.Errorf("tasks: encode_workflow: %w", err)
	}
	id := strings.ReplaceAll(worker.NewTaskID(), "-", "")
	wf := Workflow{
		URL:          rawURL,
		FolderOut:    filepath.Join(p.deps.OutputDir, id),
		ID:           id,
		MainTaskID:   t.ID(),
		Renditions:   renditions,
		FailureQueue: p.deps.FailureQueue,
	}
	lastID, err := t.Client().Apply(ctx, wf.Canvas())
	if err != nil {
		return nil, fmt.Errorf("tasks: encode_workflow: apply the canvas: %w", err)
	}
	t.Log.WithField("folder_out", wf.FolderOut).WithField("renditions", len(renditions)).Info("workflow started")
	return lastID, nil
}

// renditionsFor probes the source and returns the configured renditions
// that are no taller than its video.
func (p *Pipeline) renditionsFor(ctx context.Context, rawURL string) ([]Rendition, error) {
	src, err := p.resolveSource(rawURL)
	if err != nil {
		return nil, err
	}
	var video ffmpeg.Stream
	if src.url != "" {
		probe, err := p.probeRemote(ctx, src.url)
		video, _, err = videoOf(src.url, probe, err)
		if err != nil {
			return nil, err
		}
	} else if video, _, err = probeVideo(ctx, src.path); err != nil {
		return nil, err
	}
	var keep []Rendition
	lowest := 0
	for _, r := range p.deps.Renditions {
		if r.Height <= video.Height {
			keep = append(keep, r)
		}
		if lowest == 0 || r.Height < lowest {
			lowest = r.Height
		}
	}
	if len(keep) == 0 {
		return nil, fmt.Errorf("the source is %dx%d, smaller than every rendition (the lowest is %d pixels high): refusing to upscale: %w",
			video.Width, video.Height, lowest, ErrBadInput)
	}
	return keep, nil
}

// Workflow is one run of the pipeline, as encode_workflow starts it.
type Workflow struct {
	URL        string // the original
	FolderOut  string // <output dir>/<ID>
	ID         string // a uuid4 hex
	MainTaskID string // the id of encode_workflow: the root of every step
	Renditions []Rendition
	// FailureQueue is the queue of the notify_failure errbacks: one only
	// Go workers consume (see FailureQueue); empty means FailureQueue("celery").
	FailureQueue string
}

// Canvas returns the canvas of the original workflow (the same task names,
// kwargs and nesting as Python Celery publishes):
//
//	download_file(context={url, folder_out, id})
//	  | get_video_size | add_playlist_header
//	  | chord([compute_target_size(target_height=h) | transcode(bitrate=b)
//	           | chunk_hls(segtime=4) | add_playlist_info
//	           | notify(main_task_id=...) for each rendition],
//	          add_playlist_footer | chunk_dash
//	          | notify(complete=True, main_task_id=...))
//
// with notify_failure(main_task_id=...) as errback (link_error) of the
// outer chain, of each header chain and of the body chain, so that every
// step carries it once: Celery copies a chain's link_error to each of its
// steps. The errback is routed to FailureQueue: the original Python
// workers have no notify_failure task, and whichever worker runs the
// failing step, Go or Python, publishes the errback there, where only Go
// workers consume.
func (w Workflow) Canvas() protocol.Signature {
	failures := w.FailureQueue
	if failures == "" {
		failures = FailureQueue("celery")
	}
	errback := protocol.Signature{Task: NameNotifyFailure, Args: []any{}, Kwargs: map[string]any{"main_task_id": w.MainTaskID},
		Options: protocol.Options{Queue: failures}}
	withErrback := func(s protocol.Signature) protocol.Signature {
		s.Options.LinkError = []protocol.Signature{errback}
		return s
	}
	task := func(name string, kwargs map[string]any) protocol.Signature {
		if kwargs == nil {
			kwargs = map[string]any{}
		}
		return protocol.Signature{Task: name, Args: []any{}, Kwargs: kwargs}
	}
	header := make([]protocol.Signature, len(w.Renditions))
	for i, r := range w.Renditions {
		header[i] = withErrback(protocol.NewChain(
			task(NameComputeTargetSize, map[string]any{vhgctx.KeyTargetHeight: r.Height}),
			task(NameTranscode, map[string]any{vhgctx.KeyBitrate: r.BitrateKbps}),
			task(NameChunkHLS, map[string]any{vhgctx.KeySegtime: defaultSegtime}),
			task(NameAddPlaylistInfo, nil),
			task(NameNotify, map[string]any{"main_task_id": w.MainTaskID}),
		))
	}
	body := withErrback(protocol.NewChain(
		task(NameAddPlaylistFooter, nil),
		task(NameChunkDash, nil),
		task(NameNotify, map[string]any{"complete": true, "main_task_id": w.MainTaskID}),
	))
	context := map[string]any{
		vhgctx.KeyURL:       w.URL,
		vhgctx.KeyFolderOut: w.FolderOut,
		vhgctx.KeyID:        w.ID,
	}
	return withErrback(protocol.NewChain(
		task(NameDownloadFile, map[string]any{"context": context}),
		task(NameGetVideoSize, nil),
		task(NameAddPlaylistHeader, nil),
		protocol.NewChord(header, body),
	))
}
