package tasks

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/vhg/vhg-worker/protocol"
)

// Deps is what the tasks need from the program that registers them. Every
// zero value has the meaning given.
type Deps struct {
	// OutputDir is the root every workflow writes under (shared storage when
	// workers run on several hosts). Required: Register panics when it is
	// empty or not absolute. A context whose folder_out is not inside it is
	// refused.
	OutputDir string

	// Renditions is the ladder encode_workflow encodes, each one kept only
	// if it is no taller than the source; nil means DefaultRenditions.
	Renditions []Rendition

	// Status receives the status messages (PROGRESS, PARTIAL, COMPLETE,
	// FAILURE) for the status queue of the workflow's root task; nil means
	// none are sent. rabbitmq.AMQPBackend satisfies it.
	Status StatusPublisher

	// FailureQueue is where encode_workflow routes the notify_failure
	// errbacks of the workflows it starts: a queue only Go workers consume
	// (FailureQueue(q) for the queue q the steps go to), so that a Python
	// worker sharing the task queue never receives a task it lacks. Empty
	// means FailureQueue("celery").
	FailureQueue string

	// InputRoots are the directories local inputs (plain paths and file://
	// URLs) may come from; nil means local inputs are refused and only
	// http(s) URLs are downloaded.
	InputRoots []string

	// SourceTempDirs are the temporary directories where the original
	// Python download_file may have left a source
	// (tempfile.mkdtemp()/<id>), which steps then read as original_file
	// (see DefaultSourceTempDirs); nil means DefaultSourceTempDirs().
	SourceTempDirs []string

	// MaxDownloadSize is the largest original download_file fetches over
	// http(s), in bytes: a larger Content-Length is refused before the
	// body is read, and a body that grows past it is cut and refused.
	// Zero means DefaultMaxDownloadSize; negative means no limit. Local
	// inputs are not limited: they come from the operator's InputRoots.
	MaxDownloadSize int64

	// DownloadHosts says which addresses http(s) downloads and probes may
	// connect to. The zero value, AnyHost, allows all, as the original did.
	DownloadHosts HostPolicy

	// ConnectTimeout bounds the TCP connect and the TLS handshake of each
	// connection of a download; zero means DefaultConnectTimeout.
	ConnectTimeout time.Duration

	// IdleTimeout fails a download that receives nothing for this long,
	// waiting for the response headers or between two reads of the body;
	// a slow download that keeps receiving is never cut (the task's
	// context bounds its whole length). Zero means DefaultIdleTimeout.
	IdleTimeout time.Duration

	// Preset is the x264 preset of the transcode; empty means
	// ffmpeg.DefaultPreset. Tests use "ultrafast".
	Preset string

	// ProgressInterval is the least time between two PROGRESS messages of a
	// transcode that has not advanced 10 percent; zero means 2 s.
	ProgressInterval time.Duration
}

// The limits of downloads when Deps leaves them zero.
const (
	DefaultMaxDownloadSize = 10 << 30 // 10 GiB
	DefaultConnectTimeout  = 30 * time.Second
	DefaultIdleTimeout     = 60 * time.Second
)

// StatusPublisher publishes one status message for meta.TaskID (the root
// task) with the given correlation_id, the way Celery 4.x's amqp backend
// published update_state; rabbitmq.AMQPBackend is one.
type StatusPublisher interface {
	Publish(ctx context.Context, meta protocol.ResultMeta, correlationID string) error
}

// Rendition is one rung of the ladder: a height in pixels (the width keeps
// the source's aspect ratio) and a video bitrate in kbit/s.
type Rendition struct {
	Height, BitrateKbps int
}

// String returns the rendition as ParseRenditions reads it: "360:800".
func (r Rendition) String() string {
	return strconv.Itoa(r.Height) + ":" + strconv.Itoa(r.BitrateKbps)
}

// DefaultRenditions is the ladder used when Deps.Renditions is nil.
func DefaultRenditions() []Rendition {
	return []Rendition{
		{Height: 240, BitrateKbps: 400},
		{Height: 360, BitrateKbps: 800},
		{Height: 480, BitrateKbps: 1200},
		{Height: 720, BitrateKbps: 2500},
		{Height: 1080, BitrateKbps: 5000},
	}
}

// ErrBadRenditions is wrapped by the errors of ParseRenditions.
var ErrBadRenditions = errors.New("bad renditions")

// maxHeight bounds a rendition's height (8K) and maxKbps its bitrate, so a
// typo fails at start-up instead of in ffmpeg.
const (
	maxHeight = 4320
	maxKbps   = 200000
)

// ParseRenditions reads a comma-separated list of height:kbps pairs, such
// as "360:800,720:2500". Heights must be even (H.264 4:2:0) and unique.
func ParseRenditions(s string) ([]Rendition, error) {
	var out []Rendition
	seen := map[int]bool{}
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		h, b, ok := strings.Cut(part, ":")
		if !ok {
			return nil, fmt.Errorf("tasks: rendition %q is not height:kbps: %w", part, ErrBadRenditions)
		}
		height, err := strconv.Atoi(strings.TrimSpace(h))
		if err != nil || height <= 0 || height > maxHeight || height%2 != 0 {
			return nil, fmt.Errorf("tasks: rendition %q: height must be an even number from 2 to %d: %w", part, maxHeight, ErrBadRenditions)
		}
		kbps, err := strconv.Atoi(strings.TrimSpace(b))
		if err != nil || kbps <= 0 || kbps > maxKbps {
			return nil, fmt.Errorf("tasks: rendition %q: kbps must be a number from 1 to %d: %w", part, maxKbps, ErrBadRenditions)
		}
		if seen[height] {
			return nil, fmt.Errorf("tasks: rendition height %d given twice: %w", height, ErrBadRenditions)
		}
		seen[height] = true
		out = append(out, Rendition{Height: height, BitrateKbps: kbps})
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("tasks: no rendition in %q: %w", s, ErrBadRenditions)
	}
	return out, nil
}

// withDefaults fills in the zero values and checks OutputDir.
func (d Deps) withDefaults() Deps {
	if d.OutputDir == "" || !filepath.IsAbs(d.OutputDir) {
		panic(fmt.Sprintf("tasks: Deps.OutputDir %q must be an absolute path", d.OutputDir))
	}
	d.OutputDir = filepath.Clean(d.OutputDir)
	if d.Renditions == nil {
		d.Renditions = DefaultRenditions()
	}
	if d.FailureQueue == "" {
		d.FailureQueue = FailureQueue("celery")
	}
	if d.SourceTempDirs == nil {
		d.SourceTempDirs = DefaultSourceTempDirs()
	}
	if d.MaxDownloadSize == 0 {
		d.MaxDownloadSize = DefaultMaxDownloadSize
	}
	if d.ConnectTimeout <= 0 {
		d.ConnectTimeout = DefaultConnectTimeout
	}
	if d.IdleTimeout <= 0 {
		d.IdleTimeout = DefaultIdleTimeout
	}
	if d.ProgressInterval <= 0 {
		d.ProgressInterval = 2 * time.Second
	}
	return d
}
