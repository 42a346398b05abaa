package tasks

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	vhgctx "github.com/vhg/vhg-worker/context"
	"github.com/vhg/vhg-worker/ffmpeg"
	"github.com/vhg/vhg-worker/worker"
)

// ChunkHLS is adaptation.commons.chunk_hls(context, segtime=4): it cuts
// <folder_out>/encoding/WxH.mp4, without re-encoding, into
// <folder_out>/hls/WxH/playlist.m3u8 and its MPEG-TS segments. The folder
// is built under a temporary name and renamed into place, so a re-run
// leaves exactly one complete cut.
func (p *Pipeline) ChunkHLS(ctx context.Context, t *worker.Task) (any, error) {
	c, err := p.contextArg(t, vhgctx.KeySegtime)
	if err != nil {
		return nil, err
	}
	if err := chunkHLS(ctx, c); err != nil {
		return nil, fmt.Errorf("tasks: chunk_hls: %w", err)
	}
	return c, nil
}

func chunkHLS(ctx context.Context, c vhgctx.Context) error {
	seg, err := segtime(c)
	if err != nil {
		return err
	}
	input, err := c.TranscodedFile()
	if err != nil {
		return err
	}
	if _, err := os.Stat(input); err != nil {
		return fmt.Errorf("the rendition is not encoded yet: %w", err)
	}
	dir, err := c.HLSTranscodedFolder()
	if err != nil {
		return err
	}
	playlist, err := c.HLSTranscodedPlaylist()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return err
	}
	return ffmpegIntoDir(ctx, dir, func(tmp string) []string {
		return ffmpeg.HLSArgs(ffmpeg.HLSOptions{
			Input:          input,
			PlaylistPath:   filepath.Join(tmp, filepath.Base(playlist)),
			SegmentPattern: filepath.Join(tmp, "chunks_name%03d.ts"),
			SegmentSeconds: seg,
		})
	})
}
