package ffmpeg

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// ErrNoVideoStream is for callers that need a video stream and find none
// (ProbeResult.Video returns false); the package itself does not return it.
var ErrNoVideoStream = errors.New("ffmpeg: no video stream")

// ProbeResult is what ffprobe reports about a media file.
type ProbeResult struct {
	Duration   time.Duration // of the whole file; 0 when unknown
	FormatName string        // ffprobe's format_name, e.g. "mov,mp4,m4a,3gp,3g2,mj2"
	Streams    []Stream
}

// Stream is one stream of a media file.
type Stream struct {
	Index     int
	CodecType string // "video", "audio", "subtitle", "data", ...
	CodecName string // "h264", "aac", ...
	Profile   string // as ffprobe names it: "Main", "LC", ...; "" when none
	Width     int    // video only
	Height    int    // video only
	Channels  int    // audio only

	Duration time.Duration // 0 when the container does not say (Matroska)
	BitRate  int64         // bit/s; 0 when unknown

	// AttachedPicture marks a cover image: a video stream of one frame that
	// is no part of the video.
	AttachedPicture bool
}

// Video returns the first video stream that is not an attached picture.
func (r *ProbeResult) Video() (Stream, bool) {
	for _, s := range r.Streams {
		if s.CodecType == "video" && !s.AttachedPicture {
			return s, true
		}
	}
	return Stream{}, false
}

// Audio returns the first audio stream.
func (r *ProbeResult) Audio() (Stream, bool) {
	for _, s := range r.Streams {
		if s.CodecType == "audio" {
			return s, true
		}
	}
	return Stream{}, false
}

// Probe runs ffprobe on the local file at path, an original or a
// rendition, and parses its report. The path goes to ffprobe as a file:
// URL, so no file name is read as an option or a protocol, and ffprobe may
// open no other protocol and use only the SourceFormats demuxers: a
// playlist or a concat list posing as a video is refused (an error
// wrapping ErrInputRefused) instead of being followed. A file ffprobe
// cannot read gives an *ExitError.
func Probe(ctx context.Context, path string) (*ProbeResult, error) {
	return ProbeFormats(ctx, path, sourceFormats)
}

// ProbeFormats is Probe with the demuxers allowed given by the caller, for
// a file the caller wrote itself, such as an HLS playlist ("hls", and
// "mpegts" for its segments).
func ProbeFormats(ctx context.Context, path string, formats []string) (*ProbeResult, error) {
	return probe(ctx, probeArgs(fileURL(path), []string{"file"}, formats, 0), formats)
}

// probeArgs returns the ffprobe command that reports on input, opening it
// with the given protocols only and reading it with one of the given
// demuxers only; a positive idle makes any read or write that waits longer
// fail (-rw_timeout).
func probeArgs(input string, protocols, formats []string, idle time.Duration) []string {
	argv := []string{
		"ffprobe", "-v", "error",
		"-protocol_whitelist", strings.Join(protocols, ","),
		"-format_whitelist", strings.Join(formats, ","),
	}
	if idle > 0 {
		argv = append(argv, "-rw_timeout", strconv.FormatInt(idle.Microseconds(), 10))
	}
	return append(argv,
		"-print_format", "json",
		"-show_format", "-show_streams",
		input,
	)
}

// probe runs argv and parses its report, which must name one of formats.
func probe(ctx context.Context, argv []string, formats []string) (*ProbeResult, error) {
	var stdout bytes.Buffer
	if err := run(ctx, argv, &stdout, 0); err != nil {
		return nil, err
	}
	r, err := ParseProbe(stdout.Bytes())
	if err != nil {
		return nil, err
	}
	// ffprobe already refuses other demuxers; this holds if it did not.
	if !formatAllowed(r.FormatName, formats) {
		return nil, fmt.Errorf("ffmpeg: ffprobe read the input as %q, not one of %s: %w",
			r.FormatName, strings.Join(formats, ","), ErrInputRefused)
	}
	return r, nil
}

// probeJSON is the part of ffprobe's JSON report that ParseProbe reads.
// ffprobe writes durations and bitrates as strings.
type probeJSON struct {
	Format *struct {
		FormatName string `json:"format_name"`
		Duration   string `json:"duration"`
	} `json:"format"`
	Streams []struct {
		Index       int    `json:"index"`
		CodecType   string `json:"codec_type"`
		CodecName   string `json:"codec_name"`
		Profile     string `json:"profile"`
		Width       int    `json:"width"`
		Height      int    `json:"height"`
		Channels    int    `json:"channels"`
		Duration    string `json:"duration"`
		BitRate     string `json:"bit_rate"`
		Disposition struct {
			AttachedPic int `json:"attached_pic"`
		} `json:"disposition"`
	} `json:"streams"`
}

// ParseProbe parses the output of
// `ffprobe -print_format json -show_format -show_streams`.
func ParseProbe(data []byte) (*ProbeResult, error) {
	var p probeJSON
	if err := json.Unmarshal(data, &p); err != nil {
		return nil, fmt.Errorf("ffmpeg: parse ffprobe output: %w", err)
	}
	if p.Format == nil {
		return nil, errors.New("ffmpeg: parse ffprobe output: no format section")
	}
	duration, err := parseSeconds(p.Format.Duration)
	if err != nil {
		return nil, fmt.Errorf("ffmpeg: parse ffprobe output: format duration: %w", err)
	}
	r := &ProbeResult{
		Duration:   duration,
		FormatName: p.Format.FormatName,
		Streams:    make([]Stream, 0, len(p.Streams)),
	}
	for _, s := range p.Streams {
		duration, err := parseSeconds(s.Duration)
		if err != nil {
			return nil, fmt.Errorf("ffmpeg: parse ffprobe output: stream %d duration: %w", s.Index, err)
		}
		var bitRate int64
		if s.BitRate != "" && s.BitRate != "N/A" {
			if bitRate, err = strconv.ParseInt(s.BitRate, 10, 64); err != nil {
				return nil, fmt.Errorf("ffmpeg: parse ffprobe output: stream %d bit_rate: %w", s.Index, err)
			}
		}
		r.Streams = append(r.Streams, Stream{
			Index:           s.Index,
			CodecType:       s.CodecType,
			CodecName:       s.CodecName,
			Profile:         s.Profile,
			Width:           s.Width,
			Height:          s.Height,
			Channels:        s.Channels,
			Duration:        duration,
			BitRate:         bitRate,
			AttachedPicture: s.Disposition.AttachedPic != 0,
		})
	}
	return r, nil
}

// parseSeconds parses a duration as ffprobe writes it ("3.000000"); an empty
// or "N/A" value is 0.
func parseSeconds(s string) (time.Duration, error) {
	if s == "" || s == "N/A" {
		return 0, nil
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return 0, err
	}
	if f < 0 || f > math.MaxInt64/float64(time.Second) || math.IsNaN(f) {
		return 0, fmt.Errorf("%q is out of range", s)
	}
	return time.Duration(math.Round(f * float64(time.Second))), nil
}
