package tasks

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"

	vhgctx "github.com/vhg/vhg-worker/context"
	"github.com/vhg/vhg-worker/ffmpeg"
	"github.com/vhg/vhg-worker/worker"
)

// The master playlist is written under an exclusive lock on
// <folder_out>/playlist.lock, and add_playlist_info also records its
// variant in <folder_out>/variants/WxH.json. While the original Python
// workers share the queue, they write the same master without any lock:
// their add_playlist_header appends "#EXTM3U", their add_playlist_info
// appends one entry and their add_playlist_footer appends the end (see
// README, Migrating from the Python workers). So the Go steps treat the
// master as something another process may be appending to:
//
//   - add_playlist_info appends its own entry (one write with O_APPEND,
//     as Python's "a" mode does) when the master is clean, that is, valid
//     and ready to be appended to, and does nothing when its variant is
//     already listed (a step running twice). Appends from both kinds of
//     worker never lose each other, which a rewrite by rename would: an
//     append landing on the replaced file is lost.
//   - a master that is not clean (an entry in the original's form, with
//     the playlist path as RESOLUTION and no URI line, an #EXT-X-ENDLIST,
//     a duplicate, a missing header) is rebuilt whole, from the records and
//     the entries read back from the master, and renamed into place.
//   - add_playlist_footer runs once every rendition is done, when nobody
//     appends any more: it rebuilds the master from the contexts it
//     receives, the records and the master's entries, sorted by bandwidth.
//     chunk_dash and the final notify rebuild it again if a Python
//     add_playlist_footer appended the original's #EXT-X-ENDLIST.
//
// So renditions finishing in any order, on any host sharing the output
// directory, on Go or Python workers, or a step running twice, leave a
// valid master listing each variant once, provided a Go worker runs one of
// the steps after the last Python write that broke it.

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
		b.WriteString(v.entry())
	}
	return b.String()
}

// entry is the variant's two lines in a master playlist: its
// #EXT-X-STREAM-INF (CODECS only when known) and its URI.
func (v variant) entry() string {
	codecs := ""
	if v.Codecs != "" {
		codecs = ",CODECS=\"" + v.Codecs + "\""
	}
	return fmt.Sprintf("#EXT-X-STREAM-INF:BANDWIDTH=%d,RESOLUTION=%dx%d%s\n%s\n", v.Bandwidth, v.Width, v.Height, codecs, v.URI)
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
	master, err := c.HLSGlobalPlaylist()
	if err != nil {
		return err
	}
	read, err := parseMasterFile(master)
	if err != nil {
		return err
	}
	if read.clean {
		if read.lists(v.URI) {
			return nil
		}
		return appendFile(master, v.entry())
	}
	_, err = rebuildMasterLocked(c, nil, read.variants)
	return err
}

// appendFile appends text to path with one write in O_APPEND mode, as
// Python's open(path, "a").write(text) does, so that appends from both
// kinds of worker never overwrite each other.
func appendFile(path, text string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return err
	}
	_, err = f.WriteString(text)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// AddPlaylistFooter is adaptation.commons.add_playlist_footer(contexts):
// the chord body's first step receives the list of the header's results.
// It rebuilds the master from the recorded variants, checks that every
// rendition of the list is in it and that each variant playlist exists,
// and returns the first context.
func (p *Pipeline) AddPlaylistFooter(ctx context.Context, t *worker.Task) (any, error) {
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
	if err := finishMaster(ctx, contexts); err != nil {
		return nil, fmt.Errorf("tasks: add_playlist_footer: %w", err)
	}
	return contexts[0], nil
}

func finishMaster(ctx context.Context, contexts []vhgctx.Context) error {
	first := contexts[0]
	// The renditions as their contexts say, whoever ran their
	// add_playlist_info: a Python worker leaves no record.
	var known []variant
	for _, c := range contexts {
		v, err := variantOf(ctx, c)
		if err != nil {
			return err
		}
		known = append(known, v)
	}
	unlock, err := lockPlaylist(first)
	if err != nil {
		return err
	}
	defer unlock()
	master, err := first.HLSGlobalPlaylist()
	if err != nil {
		return err
	}
	read, err := parseMasterFile(master)
	if err != nil {
		return err
	}
	variants, err := rebuildMasterLocked(first, known, read.variants)
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

// rebuildMasterLocked writes the master from the given variants, the
// variant records and the fallback ones (for each URI the first found, in
// that order) and returns what it listed; the caller holds the playlist
// lock.
func rebuildMasterLocked(c vhgctx.Context, given, fallback []variant) ([]variant, error) {
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
	variants = uniqueVariants(slices.Concat(given, variants, fallback))
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

// masterContent is what a master playlist holds, as read back.
type masterContent struct {
	variants []variant // in file order, each URI once
	// clean reports a valid master that an appended entry keeps valid:
	// #EXTM3U first and once, every #EXT-X-STREAM-INF with a WxH
	// RESOLUTION and followed by its URI, no media playlist tag
	// (#EXT-X-ENDLIST, #EXTINF, ...), no URI twice, a final newline.
	clean bool
}

// lists reports whether uri is one of the master's variants.
func (m masterContent) lists(uri string) bool {
	return slices.ContainsFunc(m.variants, func(v variant) bool { return v.URI == uri })
}

// parseMasterFile reads the master at path; a missing file is an empty,
// unclean master.
func parseMasterFile(path string) (masterContent, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return masterContent{}, nil
	}
	if err != nil {
		return masterContent{}, err
	}
	return parseMaster(string(data)), nil
}

var (
	resolutionWxH = regexp.MustCompile(`^([0-9]+)x([0-9]+)$`)
	// variantPath matches the RESOLUTION the original add_playlist_info
	// wrote: the variant playlist's path, .../WxH/playlist.m3u8.
	variantPath = regexp.MustCompile(`(?:^|/)([0-9]+)x([0-9]+)/playlist\.m3u8$`)
)

// parseMaster reads back a master playlist written by Go or Python
// workers, including the original's entries (RESOLUTION=<playlist path>,
// no URI line), whose variant is taken from the path.
func parseMaster(text string) masterContent {
	m := masterContent{clean: strings.HasSuffix(text, "\n")}
	seen := map[string]bool{}
	add := func(v variant) {
		if seen[v.URI] {
			m.clean = false
			return
		}
		seen[v.URI] = true
		m.variants = append(m.variants, v)
	}
	var pending *variant // an #EXT-X-STREAM-INF waiting for its URI
	headers := 0
	for i, line := range strings.Split(strings.TrimRight(text, "\n"), "\n") {
		line = strings.TrimRight(line, "\r")
		switch {
		case line == "":
		case line == "#EXTM3U":
			headers++
			if i != 0 {
				m.clean = false
			}
		case strings.HasPrefix(line, "#EXT-X-STREAM-INF:"):
			if pending != nil {
				m.clean = false // the previous entry has no URI
				add(*pending)
			}
			v, ok := parseStreamInf(strings.TrimPrefix(line, "#EXT-X-STREAM-INF:"))
			if !ok {
				m.clean = false
				pending = nil
				continue
			}
			if v.URI != "" { // the original's form: no URI line follows
				m.clean = false
				add(v)
				pending = nil
				continue
			}
			pending = &v
		case strings.HasPrefix(line, "#EXT-X-VERSION:"):
		case strings.HasPrefix(line, "#"):
			// #EXT-X-ENDLIST (or the original's "##EXT-X-ENDLIST"), a
			// media playlist tag: not in a master.
			m.clean = false
		default: // a URI
			if pending == nil {
				m.clean = false
				continue
			}
			pending.URI = line
			add(*pending)
			pending = nil
		}
	}
	if pending != nil {
		m.clean = false
		add(*pending)
	}
	if headers != 1 {
		m.clean = false
	}
	return m
}

// parseStreamInf reads an #EXT-X-STREAM-INF attribute list. A WxH
// RESOLUTION leaves URI empty (the next line holds it); the original's
// playlist path as RESOLUTION gives both the size and the URI.
func parseStreamInf(attrs string) (variant, bool) {
	var v variant
	for attrs != "" {
		name, rest, ok := strings.Cut(attrs, "=")
		if !ok {
			return variant{}, false
		}
		var value string
		if strings.HasPrefix(rest, "\"") {
			end := strings.Index(rest[1:], "\"")
			if end < 0 {
				return variant{}, false
			}
			value, rest = rest[1:end+1], rest[end+2:]
		} else {
			value, rest, _ = strings.Cut(rest, ",")
			rest = "," + rest
		}
		attrs = strings.TrimPrefix(rest, ",")
		switch strings.TrimSpace(name) {
		case "BANDWIDTH":
			v.Bandwidth, _ = strconv.Atoi(value)
		case "CODECS":
			v.Codecs = value
		case "RESOLUTION":
			if r := resolutionWxH.FindStringSubmatch(value); r != nil {
				v.Width, _ = strconv.Atoi(r[1])
				v.Height, _ = strconv.Atoi(r[2])
			} else if r := variantPath.FindStringSubmatch(value); r != nil {
				v.Width, _ = strconv.Atoi(r[1])
				v.Height, _ = strconv.Atoi(r[2])
				v.URI = r[1] + "x" + r[2] + "/playlist.m3u8"
			} else {
				return variant{}, false
			}
		}
	}
	if v.Bandwidth <= 0 || v.Width <= 0 || v.Height <= 0 {
		return variant{}, false
	}
	return v, true
}

// uniqueVariants keeps the first variant of each URI.
func uniqueVariants(vs []variant) []variant {
	seen := map[string]bool{}
	var out []variant
	for _, v := range vs {
		if !seen[v.URI] {
			seen[v.URI] = true
			out = append(out, v)
		}
	}
	return out
}

// repairMaster rebuilds the master when it is not clean: what a Go step
// after add_playlist_footer does, in case a Python add_playlist_footer
// appended the original's #EXT-X-ENDLIST or entries in the original's form
// are left.
func repairMaster(c vhgctx.Context) error {
	unlock, err := lockPlaylist(c)
	if err != nil {
		return err
	}
	defer unlock()
	master, err := c.HLSGlobalPlaylist()
	if err != nil {
		return err
	}
	read, err := parseMasterFile(master)
	if err != nil || read.clean {
		return err
	}
	_, err = rebuildMasterLocked(c, nil, read.variants)
	return err
}
