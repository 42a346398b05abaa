package ffmpeg

import (
	"errors"
	"slices"
	"strings"
)

// ErrInputRefused is wrapped by the errors of Probe, ProbeURL and Run when
// ffprobe or ffmpeg refused an input for its container format or for a
// protocol it would have opened: a playlist or a concat list posing as a
// video. errors.Is(err, ErrInputRefused) holds for such an *ExitError.
var ErrInputRefused = errors.New("ffmpeg: input format or protocol not allowed")

// sourceFormats are the demuxers that may read an original (ffmpeg's
// -format_whitelist): the containers videos are delivered in. ffmpeg
// matches a name against each of the names its demuxer has, so "mov"
// covers what ffprobe reports as "mov,mp4,m4a,3gp,3g2,mj2" and "matroska"
// covers "matroska,webm". Left out are the playlists (hls, dash), concat
// lists, image sequences, subtitle and raw formats: fed a downloaded file
// that claims to be a video, some of them open the files it names.
var sourceFormats = []string{"mov", "matroska", "avi", "flv", "mpegts", "mpeg", "asf", "ogg"}

// renditionFormats are the demuxers that may read a rendition this
// package wrote (TranscodeArgs writes MP4).
var renditionFormats = []string{"mov"}

// SourceFormats returns the demuxers Probe, ProbeURL and TranscodeArgs
// allow on an original.
func SourceFormats() []string {
	return slices.Clone(sourceFormats)
}

// localInput returns the options that go before "-i" for a local input:
// only the file protocol, and only the given demuxers.
func localInput(formats []string) []string {
	return []string{"-protocol_whitelist", "file", "-format_whitelist", strings.Join(formats, ",")}
}

// formatAllowed reports whether ffprobe's format_name (a comma-separated
// list of the demuxer's names) matches one of formats, as ffmpeg's own
// whitelist matches it.
func formatAllowed(formatName string, formats []string) bool {
	for _, name := range strings.Split(formatName, ",") {
		if slices.Contains(formats, name) {
			return true
		}
	}
	return false
}

// refusedInput reports whether stderr shows that ffmpeg or ffprobe refused
// a format or a protocol by its whitelist.
func refusedInput(stderr string) bool {
	return strings.Contains(stderr, "not on whitelist")
}
