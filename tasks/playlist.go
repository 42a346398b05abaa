package tasks

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"

	vhgctx "github.com/vhg/vhg-worker/context"
	"github.com/vhg/vhg-worker/ffmpeg"
	"github.com/vhg/vhg-worker/worker"
)

// The master playlist is never edited in place. add_playlist_info records
// its variant in <folder_out>/variants/WxH.json and rebuilds the whole
// master from every record, under an exclusive lock on
// <folder_out>/playlist.lock, and writes it with a rename. So renditions
// finishing in any order, on any host sharing the output directory, or a
// step running twice, always leave a valid master listing each variant
// once.

// variant is one entry of the master playlist.
type variant struct {
	Width     int    `json:"width"`
	Height    int    `json:"height"`
	Bandwidth int    `json:"bandwidth"` // bit/s, video and audio
	Codecs    string `json:"codecs"`    // RFC 6381 codecs
	URI       string `json:"uri"`       // relative to the master
}

// Codecs of a rendition: H.264 main profile level 3.1 (what TranscodeArgs
// encodes) and AAC-LC.
const (
	videoCodec       = "avc1.4d401f"
	audioCodec       = "mp4a.40.2"
	audioBitsPerSec  = 128000 // ffmpeg's audioBitrate
	masterHLSVersion = 3
)

// masterPlaylist renders the master playlist of the variants, sorted by
// bandwidth (then height): #EXTM3U, #EXT-X-VERSION, and one
// #EXT-X-STREAM-INF line followed by its URI per variant. A master has no
// #EXT-X-ENDLIST.
func masterPlaylist(variants []variant) string {
	sorted := append([]variant(nil), variants...)
	sort.Slice(sorted, func(i, j int) bool {
		a, b := sorted[i], sorted[j]
		if a.Bandwidth != b.Bandwidth {
			return a.Bandwidth < b.Bandwidth
		}
		if a.Height != b.Height {
			return a.Height < b.Height
		}
		return a.URI < b.URI
	})
	var b strings.Builder
	b.WriteString("#EXTM3U\n#EXT-X-VERSION:" + strconv.Itoa(masterHLSVersion) + "\n")
	for _, v := range sorted {
		fmt.Fprintf(&b, "#EXT-X-STREAM-INF:BANDWIDTH=%d,RESOLUTION=%dx%d,CODECS=\"%s\"\n%s\n",
			v.Bandwidth, v.Width, v.Height, v.Codecs, v.URI)
	}
	return b.String()
}

// AddPlaylistHeader is adaptation.commons.add_playlist_header(context): it
// (re)creates <folder_out>/hls with an empty master playlist and forgets
// the variants of any earlier run.
func (p *Pipeline) AddPlaylistHeader(_ context.Context, t *worker.Task) (any, error) {
	c, err := p.contextArg(t)
	if err != nil {
		return nil, err
	}
	if err := resetHLS(c); err != nil {
		return nil, fmt.Errorf("tasks: add_playlist_header: %w", err)
	}
	return c, nil
}

func resetHLS(c vhgctx.Context) error {
	unlock, err := lockPlaylist(c)
	if err != nil {
		return err
	}
	defer unlock()
	hls, err := c.HLSFolder()
	if err != nil {
		return err
	}
	records, err := variantsFolder(c)
	if err != nil {
		return err
	}
	for _, dir := range []string{hls, records} {
		if err := os.RemoveAll(dir); err != nil {
			return err
		}
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
	}
	master, err := c.HLSGlobalPlaylist()
	if err != nil {
		return err
	}
	return writeFileAtomic(master, []byte(masterPlaylist(nil)))
}

// AddPlaylistInfo is adaptation.commons.add_playlist_info(context): it
// records this rendition's variant (BANDWIDTH = bitrate plus audio,
// RESOLUTION = WxH, CODECS, URI WxH/playlist.m3u8) and rebuilds the master
// playlist from every recorded variant.
func (p *Pipeline) AddPlaylistInfo(ctx context.Context, t *worker.Task) (any, error) {
	c, err := p.contextArg(t)
	if err != nil {
		return nil, err
	}
	v, err := variantOf(ctx, c)
	if err != nil {
		return nil, fmt.Errorf("tasks: add_playlist_info: %w", err)
	}
	if err := recordVariant(c, v); err != nil {
		return nil, fmt.Errorf("tasks: add_playlist_info: %w", err)
	}
	return c, nil
}

// variantOf describes the context's rendition; its HLS cut must exist.
func variantOf(ctx context.Context, c vhgctx.Context) (variant, error) {
	width, height, err := c.TargetSize()
	if err != nil {
		return variant{}, err
	}
	bitrate, err := c.Bitrate()
	if err != nil {
		return variant{}, err
	}
	dim, err := c.DimAsString()
	if err != nil {
		return variant{}, err
	}
	playlist, err := c.HLSTranscodedPlaylist()
	if err != nil {
		return variant{}, err
	}
	if _, err := os.Stat(playlist); err != nil {
		return variant{}, fmt.Errorf("the rendition is not cut for HLS yet: %w", err)
	}
	encoded, err := c.TranscodedFile()
	if err != nil {
		return variant{}, err
	}
	probe, err := ffmpeg.Probe(ctx, encoded)
	if err != nil {
		return variant{}, err
	}
	v := variant{Width: width, Height: height, Bandwidth: bitrate * 1000, Codecs: videoCodec, URI: dim + "/playlist.m3u8"}
	if _, audio := probe.Audio(); audio {
		v.Bandwidth += audioBitsPerSec
		v.Codecs += "," + audioCodec
	}
	return v, nil
}

// recordVariant writes the variant's record and rebuilds the master.
func recordVariant(c vhgctx.Context, v variant) error {
	unlock, err := lockPlaylist(c)
	if err != nil {
		return err
	}
	defer unlock()
	dir, err := variantsFolder(c)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	name := strconv.Itoa(v.Width) + "x" + strconv.Itoa(v.Height) + ".json"
	if err := writeFileAtomic(filepath.Join(dir, name), data); err != nil {
		return err
	}
	_, err = rebuildMasterLocked(c)
	return err
}

// AddPlaylistFooter is adaptation.commons.add_playlist_footer(contexts):
// the chord body's first step receives the list of the header's results.
// It rebuilds the master from the recorded variants, checks that every
// rendition of the list is in it and that each variant playlist exists,
// and returns the first context.
func (p *Pipeline) AddPlaylistFooter(_ context.Context, t *worker.Task) (any, error) {
	var list []any
	if len(t.Args()) > 0 {
		list, _ = t.Args()[0].([]any)
	}
	if len(list) == 0 {
		return nil, fmt.Errorf("tasks: add_playlist_footer: want a non-empty list of contexts as first argument: %w", ErrBadInput)
	}
	contexts := make([]vhgctx.Context, len(list))
	for i, raw := range list {
		c, err := p.checkContext(t, raw)
		if err != nil {
			return nil, err
		}
		contexts[i] = c
	}
	if err := finishMaster(contexts); err != nil {
		return nil, fmt.Errorf("tasks: add_playlist_footer: %w", err)
	}
	return contexts[0], nil
}

func finishMaster(contexts []vhgctx.Context) error {
	first := contexts[0]
	unlock, err := lockPlaylist(first)
	if err != nil {
		return err
	}
	defer unlock()
	variants, err := rebuildMasterLocked(first)
	if err != nil {
		return err
	}
	listed := map[string]bool{}
	for _, v := range variants {
		listed[v.URI] = true
	}
	hls, err := first.HLSFolder()
	if err != nil {
		return err
	}
	for _, c := range contexts {
		dim, err := c.DimAsString()
		if err != nil {
			return err
		}
		if !listed[dim+"/playlist.m3u8"] {
			return fmt.Errorf("rendition %s is missing from the master playlist", dim)
		}
	}
	for _, v := range variants {
		if _, err := os.Stat(filepath.Join(hls, filepath.FromSlash(v.URI))); err != nil {
			return fmt.Errorf("variant playlist of the master: %w", err)
		}
	}
	return nil
}

// rebuildMasterLocked writes the master from the variant records and
// returns them; the caller holds the playlist lock.
func rebuildMasterLocked(c vhgctx.Context) ([]variant, error) {
	dir, err := variantsFolder(c)
	if err != nil {
		return nil, err
	}
	entries, err := os.ReadDir(dir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	var variants []variant
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".json") || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		data, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			return nil, err
		}
		var v variant
		if err := json.Unmarshal(data, &v); err != nil {
			return nil, fmt.Errorf("variant record %s: %w", e.Name(), err)
		}
		variants = append(variants, v)
	}
	hls, err := c.HLSFolder()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(hls, 0o755); err != nil {
		return nil, err
	}
	master, err := c.HLSGlobalPlaylist()
	if err != nil {
		return nil, err
	}
	return variants, writeFileAtomic(master, []byte(masterPlaylist(variants)))
}

// variantsFolder is <folder_out>/variants, where the variant records live
// (outside hls/, which is what players are served).
func variantsFolder(c vhgctx.Context) (string, error) {
	out, err := c.FolderOut()
	if err != nil {
		return "", err
	}
	return filepath.Join(out, "variants"), nil
}

// lockPlaylist takes the exclusive lock on <folder_out>/playlist.lock and
// returns its release. flock(2) excludes other processes and, since each
// call opens the file anew, other goroutines; Linux NFS clients map it to
// a lock the server arbitrates between hosts.
func lockPlaylist(c vhgctx.Context) (unlock func(), err error) {
	out, err := c.FolderOut()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return nil, err
	}
	path := filepath.Join(out, "playlist.lock")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("playlist lock: %w", err)
	}
	for {
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX)
		if !errors.Is(err, syscall.EINTR) {
			break
		}
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("playlist lock %s: %w", path, err)
	}
	return func() {
		syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	}, nil
}
