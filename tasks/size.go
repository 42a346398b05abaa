package tasks

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	vhgctx "github.com/vhg/vhg-worker/context"
	"github.com/vhg/vhg-worker/ffmpeg"
	"github.com/vhg/vhg-worker/worker"
)

// GetVideoSize is adaptation.commons.get_video_size(context): it probes
// original_file and sets track_width and track_height. A file with no video
// stream (audio only, empty, not media at all) fails the task.
func (p *Pipeline) GetVideoSize(ctx context.Context, t *worker.Task) (any, error) {
	c, err := p.contextArg(t)
	if err != nil {
		return nil, err
	}
	path, err := p.originalFile(c)
	if err != nil {
		return nil, fmt.Errorf("tasks: get_video_size: %w", err)
	}
	video, _, err := probeVideo(ctx, path)
	if err != nil {
		return nil, fmt.Errorf("tasks: get_video_size: %w", err)
	}
	c[vhgctx.KeyTrackWidth] = video.Width
	c[vhgctx.KeyTrackHeight] = video.Height
	return c, nil
}

// probeVideo probes a local media file and returns its video stream and the
// whole report, with errors that say what is wrong with the file.
func probeVideo(ctx context.Context, path string) (ffmpeg.Stream, *ffmpeg.ProbeResult, error) {
	info, err := os.Stat(path)
	if err != nil {
		return ffmpeg.Stream{}, nil, fmt.Errorf("original %s: %w", path, err)
	}
	if info.Size() == 0 {
		return ffmpeg.Stream{}, nil, fmt.Errorf("original %s is empty: %w: %w", path, ffmpeg.ErrNoVideoStream, ErrBadInput)
	}
	probe, err := ffmpeg.Probe(ctx, path)
	return videoOf(path, probe, err)
}

// videoOf turns a probe report (or its error) into the video stream.
func videoOf(name string, probe *ffmpeg.ProbeResult, err error) (ffmpeg.Stream, *ffmpeg.ProbeResult, error) {
	var exit *ffmpeg.ExitError
	switch {
	case errors.Is(err, ffmpeg.ErrInputRefused):
		return ffmpeg.Stream{}, nil, fmt.Errorf("%s is not in a video container this worker reads (%s; playlists and concat lists are refused): %w: %w",
			name, strings.Join(ffmpeg.SourceFormats(), ", "), err, ErrBadInput)
	case errors.As(err, &exit) && strings.Contains(exit.Stderr, "Connection timed out"):
		// A remote original that stalled (-rw_timeout) or did not answer:
		// a network failure, which a retry may not meet.
		return ffmpeg.Stream{}, nil, fmt.Errorf("probe %s: %w", name, err)
	case errors.As(err, &exit):
		return ffmpeg.Stream{}, nil, fmt.Errorf("%s is not a media file ffprobe can read: %w: %w", name, err, ErrBadInput)
	case err != nil:
		return ffmpeg.Stream{}, nil, fmt.Errorf("probe %s: %w", name, err)
	}
	video, ok := probe.Video()
	if !ok || video.Width <= 0 || video.Height <= 0 {
		return ffmpeg.Stream{}, nil, fmt.Errorf("%s has no video stream: %w: %w", name, ffmpeg.ErrNoVideoStream, ErrBadInput)
	}
	return video, probe, nil
}

// ComputeTargetSize is adaptation.commons.compute_target_size(context,
// target_height): it sets target_height and target_width, the width that
// keeps the original's aspect ratio rounded down to an even number. A
// target taller than the original is refused: renditions never upscale.
func (p *Pipeline) ComputeTargetSize(_ context.Context, t *worker.Task) (any, error) {
	c, err := p.contextArg(t, vhgctx.KeyTargetHeight)
	if err != nil {
		return nil, err
	}
	width, err := targetSize(c)
	if err != nil {
		return nil, fmt.Errorf("tasks: compute_target_size: %w", err)
	}
	c[vhgctx.KeyTargetWidth] = width
	return c, nil
}

// targetSize returns target_width for the context's track size and
// target_height.
func targetSize(c vhgctx.Context) (int, error) {
	trackWidth, trackHeight, err := c.TrackSize()
	if err != nil {
		return 0, err
	}
	targetHeight, err := c.Int(vhgctx.KeyTargetHeight)
	if err != nil {
		return 0, err
	}
	if targetHeight <= 0 || targetHeight%2 != 0 {
		return 0, fmt.Errorf("target_height %d is not a positive even number: %w", targetHeight, ErrBadInput)
	}
	if targetHeight > trackHeight {
		return 0, fmt.Errorf("target_height %d is taller than the original (%dx%d): refusing to upscale: %w",
			targetHeight, trackWidth, trackHeight, ErrBadInput)
	}
	width := vhgctx.TargetWidth(trackWidth, trackHeight, targetHeight)
	if width <= 0 {
		return 0, fmt.Errorf("target_height %d of a %dx%d original gives no width: %w",
			targetHeight, trackWidth, trackHeight, ErrBadInput)
	}
	return width, nil
}
