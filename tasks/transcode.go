package tasks

import (
	"context"
	"fmt"
	"math"
	"os"
	"time"

	vhgctx "github.com/vhg/vhg-worker/context"
	"github.com/vhg/vhg-worker/ffmpeg"
	"github.com/vhg/vhg-worker/protocol"
	"github.com/vhg/vhg-worker/worker"
)

// StateProgress is the custom state of the progress messages a transcode
// sends to the root task's status queue.
const StateProgress protocol.State = "PROGRESS"

// Transcode is adaptation.commons.transcode(context, bitrate): it encodes
// original_file at target_width x target_height and bitrate kbit/s, with a
// keyframe every segtime seconds (the context's, from a kwarg of this task
// or of chunk_hls later; 4 when unset) so that every rendition is cut at the
// same instants, into <folder_out>/encoding/WxH.mp4 (written under a
// temporary name, then renamed). The original's audio is copied when it
// is already AAC-LC of at most 128 kbit/s (ffmpeg.AudioCopyable), and
// encoded to that otherwise. While it runs it sends PROGRESS states to
// the root task's status queue: {"percent", "step": "transcode",
// "rendition": "WxH"}, at most every 10 percent or ProgressInterval.
func (p *Pipeline) Transcode(ctx context.Context, t *worker.Task) (any, error) {
	c, err := p.contextArg(t, vhgctx.KeyBitrate, vhgctx.KeySegtime)
	if err != nil {
		return nil, err
	}
	out, err := p.transcode(ctx, t, c)
	if err != nil {
		return nil, fmt.Errorf("tasks: transcode: %w", err)
	}
	t.Log.WithField("file", out).Info("rendition encoded")
	return c, nil
}

func (p *Pipeline) transcode(ctx context.Context, t *worker.Task, c vhgctx.Context) (string, error) {
	bitrate, err := c.Bitrate()
	if err != nil {
		return "", err
	}
	width, height, err := c.TargetSize()
	if err != nil {
		return "", err
	}
	seg, err := segtime(c)
	if err != nil {
		return "", err
	}
	dim, err := c.DimAsString()
	if err != nil {
		return "", err
	}
	input, err := p.originalFile(c)
	if err != nil {
		return "", err
	}
	output, err := c.TranscodedFile()
	if err != nil {
		return "", err
	}
	_, probe, err := probeVideo(ctx, input)
	if err != nil {
		return "", err
	}
	sourceAudio, audio := probe.Audio()

	dir, err := c.TranscodedFolder()
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	tmp, release, err := tempSibling(output)
	if err != nil {
		return "", err
	}
	defer release()
	defer os.Remove(tmp) // a no-op once renamed
	argv := ffmpeg.TranscodeArgs(ffmpeg.TranscodeOptions{
		Input: input, Output: tmp,
		Width: width, Height: height,
		BitrateKbps:    bitrate,
		SegmentSeconds: seg,
		Audio:          audio,
		// Audio that is already what a rendition carries is copied, not
		// encoded again for every rendition.
		CopyAudio: audio && ffmpeg.AudioCopyable(sourceAudio),
		Preset:    p.deps.Preset,
	})
	progress := p.progressReporter(ctx, t, dim)
	if err := ffmpeg.Run(ctx, argv, ffmpeg.RunOptions{Duration: probe.Duration, OnProgress: progress}); err != nil {
		return "", err
	}
	if err := os.Chmod(tmp, 0o644); err != nil {
		return "", err
	}
	if err := os.Rename(tmp, output); err != nil {
		return "", err
	}
	return output, nil
}

// progressReporter returns an ffmpeg progress callback that sends PROGRESS
// states for the root task: when the percentage has grown by 10 or more
// since the last message, when ProgressInterval has passed, and at 100.
func (p *Pipeline) progressReporter(ctx context.Context, t *worker.Task, dim string) func(ffmpeg.Progress) {
	if p.deps.Status == nil {
		return nil
	}
	last := -1
	var lastTime time.Time
	return func(pr ffmpeg.Progress) {
		percent := int(math.Floor(pr.Percent))
		due := percent >= last+10 || (percent > last && time.Since(lastTime) >= p.deps.ProgressInterval) || (percent == 100 && last < 100)
		if !due {
			return
		}
		last, lastTime = percent, time.Now()
		meta := protocol.ResultMeta{TaskID: t.RootID(), Status: StateProgress,
			Result: map[string]any{"percent": percent, "step": "transcode", "rendition": dim}, Children: []any{}}
		if err := p.deps.Status.Publish(ctx, meta, t.ID()); err != nil {
			t.Log.WithError(err).Warn("publishing progress failed")
		}
	}
}
