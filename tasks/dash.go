package tasks

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"

	vhgctx "github.com/vhg/vhg-worker/context"
	"github.com/vhg/vhg-worker/ffmpeg"
	"github.com/vhg/vhg-worker/worker"
)

// ChunkDash is adaptation.commons.chunk_dash(context): it packages every
// finished rendition (<folder_out>/encoding/WxH.mp4, lowest first), without
// re-encoding, into <folder_out>/dash/playlist.mpd with ffmpeg's dash muxer.
// The folder is built under a temporary name and renamed into place. It
// also rebuilds the master playlist if a Python add_playlist_footer left it
// invalid (see playlist.go).
func (p *Pipeline) ChunkDash(ctx context.Context, t *worker.Task) (any, error) {
	c, err := p.contextArg(t)
	if err != nil {
		return nil, err
	}
	if err := chunkDash(ctx, c); err != nil {
		return nil, fmt.Errorf("tasks: chunk_dash: %w", err)
	}
	// A Python add_playlist_footer may have run before: see playlist.go.
	if err := repairMaster(c); err != nil {
		return nil, fmt.Errorf("tasks: chunk_dash: master playlist: %w", err)
	}
	return c, nil
}

func chunkDash(ctx context.Context, c vhgctx.Context) error {
	seg, err := segtime(c)
	if err != nil {
		return err
	}
	encoding, err := c.TranscodedFolder()
	if err != nil {
		return err
	}
	inputs, err := finishedRenditions(encoding)
	if err != nil {
		return err
	}
	if len(inputs) == 0 {
		return fmt.Errorf("no rendition in %s", encoding)
	}
	probe, err := ffmpeg.Probe(ctx, inputs[0])
	if err != nil {
		return err
	}
	_, audio := probe.Audio()

	dir, err := c.DashFolder()
	if err != nil {
		return err
	}
	mpd, err := c.DashMPDFilePath()
	if err != nil {
		return err
	}
	tmp, release, err := tempDirSibling(dir)
	if err != nil {
		return err
	}
	defer release()
	defer os.RemoveAll(tmp) // a no-op once renamed
	argv := ffmpeg.DASHArgs(ffmpeg.DASHOptions{
		Inputs:         inputs,
		MPDPath:        filepath.Join(tmp, filepath.Base(mpd)),
		SegmentSeconds: seg,
		Audio:          audio,
	})
	if err := ffmpeg.Run(ctx, argv, ffmpeg.RunOptions{}); err != nil {
		return err
	}
	return replaceDir(tmp, dir)
}

// renditionFile matches the name of a finished rendition, WxH.mp4;
// temporary files (".WxH.mp4.tmp-...") do not match.
var renditionFile = regexp.MustCompile(`^([0-9]+)x([0-9]+)\.mp4$`)

// finishedRenditions lists the renditions in dir, lowest first.
func finishedRenditions(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	type rendition struct {
		path          string
		width, height int
	}
	var found []rendition
	for _, e := range entries {
		m := renditionFile.FindStringSubmatch(e.Name())
		if m == nil || !e.Type().IsRegular() {
			continue
		}
		w, _ := strconv.Atoi(m[1])
		h, _ := strconv.Atoi(m[2])
		found = append(found, rendition{filepath.Join(dir, e.Name()), w, h})
	}
	sort.Slice(found, func(i, j int) bool {
		if found[i].height != found[j].height {
			return found[i].height < found[j].height
		}
		return found[i].width < found[j].width
	})
	paths := make([]string, len(found))
	for i, r := range found {
		paths[i] = r.path
	}
	return paths, nil
}
