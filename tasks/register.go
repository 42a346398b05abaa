package tasks

import (
	"context"
	"errors"
	"net/http"
	"strings"

	vhgctx "github.com/vhg/vhg-worker/context"
	"github.com/vhg/vhg-worker/ffmpeg"
	"github.com/vhg/vhg-worker/worker"
)

// The Celery names of the tasks, as the Python project registered them.
const (
	NameDownloadFile      = "adaptation.commons.download_file"
	NameGetVideoSize      = "adaptation.commons.get_video_size"
	NameAddPlaylistHeader = "adaptation.commons.add_playlist_header"
	NameComputeTargetSize = "adaptation.commons.compute_target_size"
	NameTranscode         = "adaptation.commons.transcode"
	NameChunkHLS          = "adaptation.commons.chunk_hls"
	NameAddPlaylistInfo   = "adaptation.commons.add_playlist_info"
	NameAddPlaylistFooter = "adaptation.commons.add_playlist_footer"
	NameChunkDash         = "adaptation.commons.chunk_dash"
	NameNotify            = "adaptation.commons.notify"
	NameNotifyFailure     = "adaptation.commons.notify_failure"
	NameEncodeWorkflow    = "adaptation.commons.encode_workflow"

	namePrefix = "adaptation.commons."
)

// Pipeline holds the tasks' dependencies; its methods are the task handlers.
// It keeps no state between tasks: every step reads what it needs from its
// context and the output directory, so any step may run on any host.
type Pipeline struct {
	deps   Deps
	client *http.Client // downloads, within the limits of deps
}

// New returns the task handlers for deps (see Deps for the zero values;
// it panics when deps.OutputDir is not an absolute path).
func New(deps Deps) *Pipeline {
	deps = deps.withDefaults()
	return &Pipeline{deps: deps, client: newDownloadClient(deps, deps.DownloadHosts.control)}
}

// Register registers every adaptation.commons task on mux, with acks_late
// for the long steps, and the middleware that turns a failure of a workflow
// built without notify_failure errbacks, or a terminated step, into a
// FAILURE status message. It returns the Pipeline, whose RevokedStatus
// observer the caller adds to its Server.
func Register(mux *worker.ServeMux, deps Deps) *Pipeline {
	p := New(deps)
	tasks := []struct {
		name string
		fn   worker.HandlerFunc
		opts []worker.TaskOption
	}{
		{NameDownloadFile, p.DownloadFile, []worker.TaskOption{worker.AcksLate()}},
		{NameGetVideoSize, p.GetVideoSize, nil},
		{NameAddPlaylistHeader, p.AddPlaylistHeader, nil},
		{NameComputeTargetSize, p.ComputeTargetSize, nil},
		{NameTranscode, p.Transcode, []worker.TaskOption{worker.AcksLate()}},
		{NameChunkHLS, p.ChunkHLS, []worker.TaskOption{worker.AcksLate()}},
		{NameAddPlaylistInfo, p.AddPlaylistInfo, nil},
		{NameAddPlaylistFooter, p.AddPlaylistFooter, nil},
		{NameChunkDash, p.ChunkDash, []worker.TaskOption{worker.AcksLate()}},
		{NameNotify, p.Notify, nil},
		{NameNotifyFailure, p.NotifyFailure, nil},
		{NameEncodeWorkflow, p.EncodeWorkflow, nil},
	}
	for _, task := range tasks {
		mux.Handle(task.name, pythonErrors(task.fn), task.opts...)
	}
	mux.Use(p.FailureStatus, p.TerminatedStatus)
	return p
}

// ErrBadInput is wrapped by the errors of a request that cannot succeed as
// given: a refused URL or path, a context that fails validation, a file
// with no video or in a refused format (ffmpeg.ErrInputRefused, which is
// a ValueError too), a rendition taller than the source. Python clients see
// them as ValueError; every other failure is a RuntimeError.
var ErrBadInput = errors.New("bad input")

// pythonErrors gives a handler's errors the Python exception type a Celery
// client expects; the Go error stays reachable with errors.As/Is.
func pythonErrors(h worker.HandlerFunc) worker.HandlerFunc {
	return func(ctx context.Context, t *worker.Task) (any, error) {
		result, err := h(ctx, t)
		if err == nil || isFlowControl(err) {
			return result, err
		}
		var te *worker.TaskError
		if errors.As(err, &te) {
			return result, err
		}
		excType := "RuntimeError"
		if errors.Is(err, ErrBadInput) || errors.Is(err, vhgctx.ErrUnsafePath) ||
			errors.Is(err, ffmpeg.ErrNoVideoStream) || errors.Is(err, ffmpeg.ErrInputRefused) || errors.As(err, new(*vhgctx.KeyError)) {
			excType = "ValueError"
		}
		return result, &worker.TaskError{Module: "builtins", Type: excType, Args: []any{err.Error()}, Err: err}
	}
}

// isFlowControl reports the errors the worker reads as a retry, a reject
// or an ignore rather than a failure.
func isFlowControl(err error) bool {
	return errors.Is(err, worker.ErrIgnore) ||
		errors.As(err, new(*worker.RetryError)) ||
		errors.As(err, new(*worker.RejectError))
}

// FailureQueue returns the queue that carries the notify_failure errbacks
// of the workflows whose steps go to queue: "vhg.failures.<queue>". Only Go
// workers consume it (see WithFailureQueues); it is declared as Celery
// declares a task queue (durable, bound to a direct exchange of its name),
// by the Go workers at start and by whoever publishes to it, Python Celery
// included, so a notice published while no Go worker runs waits there.
func FailureQueue(queue string) string { return "vhg.failures." + queue }

// WithFailureQueues returns queues followed by the failure queue of each
// (skipping failure queues already listed): what a Go worker running the
// pipeline consumes.
func WithFailureQueues(queues []string) []string {
	out := append([]string(nil), queues...)
	listed := map[string]bool{}
	for _, q := range queues {
		listed[q] = true
	}
	for _, q := range queues {
		if strings.HasPrefix(q, FailureQueue("")) || listed[FailureQueue(q)] {
			continue
		}
		listed[FailureQueue(q)] = true
		out = append(out, FailureQueue(q))
	}
	return out
}
