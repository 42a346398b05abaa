package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/vhg/vhg-worker/protocol"
	"github.com/vhg/vhg-worker/tasks"
	"github.com/vhg/vhg-worker/worker"
	"github.com/vhg/vhg-worker/worker/memory"
)

// runEncode is "vhg-worker encode [--output-dir DIR] [--renditions ...]
// INPUT": the whole workflow in this process, with no broker.
func runEncode(args []string) int {
	var tf taskFlags
	fs := flag.NewFlagSet("encode", flag.ContinueOnError)
	tf.add(fs, false)
	concurrency := fs.Int("c", runtime.NumCPU(), "number of tasks run at once")
	logLevel := fs.String("l", "warning", "log level of the worker: debug, info, warning, error")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), "Usage: vhg-worker encode [flags] INPUT\n\n"+
			"Encodes INPUT (a file, or an http(s) URL) for HLS and DASH in this process, no broker needed.\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return 2
	}
	deps, err := tf.deps()
	if err != nil {
		fmt.Fprintf(os.Stderr, "vhg-worker encode: %v\n", err)
		return 2
	}
	log, err := newLogger(*logLevel)
	if err != nil {
		fmt.Fprintf(os.Stderr, "vhg-worker encode: %v\n", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	res, err := encode(ctx, encodeConfig{Input: fs.Arg(0), Deps: deps, Concurrency: *concurrency, Log: log, Out: os.Stdout})
	if err != nil {
		fmt.Fprintf(os.Stderr, "vhg-worker encode: %v\n", err)
		return 1
	}
	fmt.Printf("master playlist: %s\nDASH manifest:   %s\n", res.Master, res.MPD)
	return 0
}

// encodeConfig is one local encode.
type encodeConfig struct {
	// Input is a local file or an http(s) URL; a local file's directory
	// becomes the only input root.
	Input string
	// Deps configures the tasks; Status and InputRoots are set by encode.
	Deps tasks.Deps
	// Concurrency is how many tasks run at once; zero means the CPUs.
	Concurrency int
	// Log receives the worker's log; nil discards it.
	Log logrus.FieldLogger
	// Out receives one line per status message; nil discards them.
	Out io.Writer
}

// encodeResult is what a finished encode produced.
type encodeResult struct {
	TaskID   string                // the encode_workflow task (the root)
	Master   string                // the HLS master playlist
	MPD      string                // the DASH manifest
	Statuses []protocol.ResultMeta // every status message, in order
}

// encode runs encode_workflow on an in-memory broker and backend with a
// worker.Server in this process, and waits for its COMPLETE or FAILURE
// status. A FAILURE is returned as an error, with the statuses so far.
func encode(ctx context.Context, cfg encodeConfig) (encodeResult, error) {
	input := cfg.Input
	if !strings.Contains(input, "://") {
		abs, err := filepath.Abs(input)
		if err != nil {
			return encodeResult{}, err
		}
		input = abs
		cfg.Deps.InputRoots = []string{filepath.Dir(abs)}
	}
	if cfg.Log == nil {
		l := logrus.New()
		l.SetOutput(io.Discard)
		cfg.Log = l
	}
	printer := newStatusPrinter(cfg.Out)
	cfg.Deps.Status = printer

	broker, backend := memory.NewBroker(), memory.NewBackend()
	mux := worker.NewServeMux()
	tasks.Register(mux, cfg.Deps)
	host, _ := os.Hostname()
	srv := worker.NewServer(worker.Config{Queues: tasks.WithFailureQueues([]string{"celery"}), Concurrency: cfg.Concurrency, NodeName: "encode@" + host, ShutdownTimeout: 5 * time.Second},
		broker, backend, mux, cfg.Log)

	runCtx, stopServer := context.WithCancel(context.Background())
	stopped := make(chan error, 1)
	go func() { stopped <- srv.Run(runCtx) }()
	defer func() {
		srv.StopNow() // nothing is left to finish: cancel any straggler
		stopServer()
		<-stopped
	}()

	client := worker.NewClient(broker, worker.ClientConfig{Backend: backend, Log: cfg.Log})
	id, err := client.SendTask(ctx, tasks.NameEncodeWorkflow, []any{input}, map[string]any{})
	if err != nil {
		return encodeResult{}, err
	}
	final, err := printer.wait(ctx, id, backend)
	res := encodeResult{TaskID: id, Statuses: printer.statuses()}
	if err != nil {
		return res, err
	}
	result, _ := final.Result.(map[string]any)
	if final.Status != tasks.StateComplete {
		return res, fmt.Errorf("encode failed: %v (%v, task %v)", result["error"], result["exc_type"], result["task_id"])
	}
	res.Master, _ = result["hls"].(string)
	res.MPD, _ = result["dash"].(string)
	return res, nil
}

// statusPrinter is the tasks' StatusPublisher for a local encode: it
// prints each status message as a line and keeps them.
type statusPrinter struct {
	out io.Writer

	mu      sync.Mutex
	metas   []protocol.ResultMeta
	changed chan struct{} // closed and replaced at each message
}

var _ tasks.StatusPublisher = (*statusPrinter)(nil)

func newStatusPrinter(out io.Writer) *statusPrinter {
	if out == nil {
		out = io.Discard
	}
	return &statusPrinter{out: out, changed: make(chan struct{})}
}

// Publish implements tasks.StatusPublisher.
func (p *statusPrinter) Publish(_ context.Context, meta protocol.ResultMeta, _ string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.metas = append(p.metas, meta)
	close(p.changed)
	p.changed = make(chan struct{})
	fmt.Fprintln(p.out, statusLine(meta))
	return nil
}

// statusLine renders a status message for a terminal.
func statusLine(meta protocol.ResultMeta) string {
	r, _ := meta.Result.(map[string]any)
	switch meta.Status {
	case tasks.StateProgress:
		return fmt.Sprintf("%-9s %v %v %3v%%", meta.Status, r["step"], r["rendition"], r["percent"])
	case tasks.StatePartial:
		return fmt.Sprintf("%-9s %v", meta.Status, r["hls"])
	case tasks.StateComplete:
		return fmt.Sprintf("%-9s hls=%v dash=%v", meta.Status, r["hls"], r["dash"])
	case protocol.StateFailure:
		return fmt.Sprintf("%-9s %v: %v (task %v)", meta.Status, r["exc_type"], r["error"], r["task_id"])
	}
	return fmt.Sprintf("%-9s %v", meta.Status, meta.Result)
}

func (p *statusPrinter) statuses() []protocol.ResultMeta {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]protocol.ResultMeta(nil), p.metas...)
}

// wait returns the first COMPLETE or FAILURE status of rootID. As a safety
// net it also stops when the root task itself is stored as failed and no
// final status follows, which no task of package tasks lets happen.
func (p *statusPrinter) wait(ctx context.Context, rootID string, backend *memory.Backend) (protocol.ResultMeta, error) {
	ticker := time.NewTicker(time.Second)
	defer ticker.Stop()
	for {
		final, found, changed := p.final(rootID)
		if found {
			return final, nil
		}
		select {
		case <-changed:
		case <-ticker.C:
			if m, err := backend.Result(ctx, rootID); err == nil && m.Status == protocol.StateFailure {
				time.Sleep(500 * time.Millisecond) // the status may be on its way
				if final, found, _ := p.final(rootID); found {
					return final, nil
				}
				return protocol.ResultMeta{}, fmt.Errorf("encode_workflow failed: %v", m.Result)
			}
		case <-ctx.Done():
			return protocol.ResultMeta{}, fmt.Errorf("encode interrupted: %w", context.Cause(ctx))
		}
	}
}

// final returns the first COMPLETE or FAILURE status of rootID, if any, and
// a channel closed at the next status.
func (p *statusPrinter) final(rootID string) (protocol.ResultMeta, bool, <-chan struct{}) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, m := range p.metas {
		if m.TaskID == rootID && (m.Status == tasks.StateComplete || m.Status == protocol.StateFailure) {
			return m, true, p.changed
		}
	}
	return protocol.ResultMeta{}, false, p.changed
}
