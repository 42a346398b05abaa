package ffmpeg

import (
	"strconv"
	"time"
)

// DefaultPreset is the x264 preset TranscodeArgs and TestPatternArgs use when
// the options leave Preset empty: a fair trade of speed for size on a worker.
const DefaultPreset = "veryfast"

// The AAC bitrate of every rendition whose audio is encoded (stereo at
// 128 kbit/s), as ffmpeg reads it and in bit/s.
const (
	audioBitrate       = "128k"
	audioBitsPerSecond = 128000
)

// AudioCopyable reports whether an original's audio stream can go into the
// renditions as it is (TranscodeOptions.CopyAudio) instead of being encoded
// again: it is AAC-LC with one or two channels, which the renditions'
// CODECS declare and every player takes, at a known bitrate no higher
// than the renditions' 128 kbit/s (2% more is allowed for encoders that
// overshoot: ffmpeg's own AAC at 128k averages 128.1), so that the
// bandwidth the master playlist declares stays right.
func AudioCopyable(s Stream) bool {
	return s.CodecType == "audio" && s.CodecName == "aac" && s.Profile == "LC" &&
		s.Channels >= 1 && s.Channels <= 2 &&
		s.BitRate > 0 && s.BitRate <= audioBitsPerSecond*102/100
}

// fileURL turns a local path into an input or output URL for ffmpeg. With
// the file: protocol named explicitly, a path that starts with '-' is never
// read as an option and one that contains ':' is never read as another
// protocol ("http:x", "concat:a|b"). A path that already starts with "file:"
// gets a second prefix, which ffmpeg reads as a local file named "file:...".
func fileURL(path string) string {
	return "file:" + path
}

// TranscodeOptions describe one rendition.
type TranscodeOptions struct {
	Input  string // local path of the original
	Output string // local path of the MP4 to write; overwritten if it exists

	// Width and Height are the size of the rendition; both should be even.
	// Zero keeps the input's size in that dimension.
	Width, Height int

	// BitrateKbps is the target video bitrate in kbit/s; it also caps the
	// rate (-maxrate) over a buffer of two seconds' worth (-bufsize).
	BitrateKbps int

	// SegmentSeconds is the HLS and DASH segment length: a keyframe is forced
	// at every multiple of it, so that every rendition can be cut at the same
	// instants. Zero leaves keyframe placement to x264.
	SegmentSeconds int

	// Audio adds the input's first audio stream as stereo AAC; false writes
	// no audio (-an). Set it from Probe: the command fails when Audio is set
	// and the input has no audio stream.
	Audio bool

	// CopyAudio, with Audio, copies the input's first audio stream into the
	// rendition instead of encoding it again. Set it when AudioCopyable
	// holds for that stream: every rendition of an original carries the
	// same audio, and encoding it takes a fifth of the CPU time of a 144p
	// or 240p rendition of a 720p original.
	CopyAudio bool

	// Preset is the x264 speed preset; empty means DefaultPreset. Tests use
	// "ultrafast", which turns off the main profile's tools (CABAC,
	// B-frames): the stream is then Constrained Baseline.
	Preset string
}

// TranscodeArgs returns the ffmpeg command that encodes one rendition as an
// MP4 with H.264 (main profile, level 3.1, yuv420p) and optional AAC audio
// (encoded at 128 kbit/s stereo, or copied: see CopyAudio),
// ready to be cut by HLSArgs and DASHArgs with stream copy. The input is
// read with the file protocol and the SourceFormats demuxers only, so a
// playlist or concat list posing as the original fails instead of making
// ffmpeg read the files it names. Only the first
// video stream that is not a cover picture and the first audio stream are
// kept; the moov atom goes first (+faststart) so players can start early.
//
// Level 3.1, as in the original, covers up to 1280x720 at 30 frames per
// second. A larger rendition still encodes (x264 warns) but declares a level
// it exceeds, which strict hardware decoders may refuse.
func TranscodeArgs(o TranscodeOptions) []string {
	args := []string{"ffmpeg", "-hide_banner", "-nostdin", "-y"}
	args = append(args, localInput(sourceFormats)...)
	args = append(args,
		"-i", fileURL(o.Input),
		"-map", "0:V:0", // V: video that is not an attached picture
	)
	if o.Audio {
		args = append(args, "-map", "0:a:0")
	}
	return append(args, encodeArgs(o, []string{"-vf", scaleFilter(o.Width, o.Height)})...)
}

// encodeArgs returns the options and output of one rendition, after its
// -map options; filter goes where TranscodeArgs has always put its -vf.
func encodeArgs(o TranscodeOptions, filter []string) []string {
	preset := o.Preset
	if preset == "" {
		preset = DefaultPreset
	}
	args := []string{
		"-c:v", "libx264",
		"-preset", preset,
		"-profile:v", "main",
		"-level:v", "3.1",
		"-pix_fmt", "yuv420p",
	}
	args = append(args, filter...)
	args = append(args,
		"-b:v", kbps(o.BitrateKbps),
		"-maxrate", kbps(o.BitrateKbps),
		"-bufsize", kbps(2*o.BitrateKbps),
	)
	if o.SegmentSeconds > 0 {
		args = append(args,
			"-force_key_frames", "expr:gte(t,n_forced*"+strconv.Itoa(o.SegmentSeconds)+")",
			// No extra keyframes at scene cuts: segments stay aligned.
			"-sc_threshold", "0",
		)
	}
	switch {
	case o.Audio && o.CopyAudio:
		args = append(args, "-c:a", "copy")
	case o.Audio:
		args = append(args, "-c:a", "aac", "-b:a", audioBitrate, "-ac", "2")
	default:
		args = append(args, "-an")
	}
	return append(args,
		"-movflags", "+faststart",
		"-f", "mp4",
		fileURL(o.Output),
	)
}

// scaleFilter is the filter that scales to a rendition's size.
func scaleFilter(width, height int) string {
	return "scale=" + strconv.Itoa(width) + ":" + strconv.Itoa(height)
}

// Rendition is one output of LadderArgs.
type Rendition struct {
	Output        string // local path of the MP4 to write; overwritten if it exists
	Width, Height int    // as in TranscodeOptions
	BitrateKbps   int    // as in TranscodeOptions
}

// LadderOptions describe every rendition of one original.
type LadderOptions struct {
	Input      string // local path of the original
	Renditions []Rendition

	// SegmentSeconds, Audio, CopyAudio and Preset are those of
	// TranscodeOptions, the same for every rendition.
	SegmentSeconds int
	Audio          bool
	CopyAudio      bool
	Preset         string
}

// LadderArgs returns one ffmpeg command that decodes the input once and
// encodes every rendition from it, each with exactly the options
// TranscodeArgs gives that rendition alone: the decoded video is split,
// scaled once per rendition, and each output has its own encoders. It is
// what one rendition per process costs at least (make bench compares the
// workflow with it).
func LadderArgs(o LadderOptions) []string {
	args := []string{"ffmpeg", "-hide_banner", "-nostdin", "-y"}
	args = append(args, localInput(sourceFormats)...)
	args = append(args, "-i", fileURL(o.Input))
	graph := "[0:V:0]split=" + strconv.Itoa(len(o.Renditions))
	for i := range o.Renditions {
		graph += "[s" + strconv.Itoa(i) + "]"
	}
	for i, r := range o.Renditions {
		graph += ";[s" + strconv.Itoa(i) + "]" + scaleFilter(r.Width, r.Height) + "[v" + strconv.Itoa(i) + "]"
	}
	args = append(args, "-filter_complex", graph)
	for i, r := range o.Renditions {
		args = append(args, "-map", "[v"+strconv.Itoa(i)+"]")
		if o.Audio {
			args = append(args, "-map", "0:a:0")
		}
		args = append(args, encodeArgs(TranscodeOptions{
			Output: r.Output, Width: r.Width, Height: r.Height, BitrateKbps: r.BitrateKbps,
			SegmentSeconds: o.SegmentSeconds, Audio: o.Audio, CopyAudio: o.CopyAudio, Preset: o.Preset,
		}, nil)...)
	}
	return args
}

// kbps formats a bitrate in kbit/s as ffmpeg reads it.
func kbps(n int) string {
	return strconv.Itoa(n) + "k"
}

// HLSOptions describe the HLS cut of one rendition.
type HLSOptions struct {
	Input string // local path of the rendition's MP4 (from TranscodeArgs)

	// PlaylistPath is the local path of the variant playlist to write.
	PlaylistPath string

	// SegmentPattern is the local path of the segments, with a printf-style
	// number in its base name, e.g. "<dir>/chunks_name%03d.ts". It belongs in
	// the playlist's directory: the playlist names segments by base name only.
	SegmentPattern string

	// SegmentSeconds is the target segment length. Segments start at
	// keyframes, so they are exact when the rendition was encoded with the
	// same SegmentSeconds.
	SegmentSeconds int
}

// HLSArgs returns the ffmpeg command that cuts a rendition into MPEG-TS
// segments without re-encoding and writes a VOD variant playlist (with
// #EXT-X-PLAYLIST-TYPE:VOD and #EXT-X-ENDLIST) whose segment URIs are
// relative to it. The first video and, if present, first audio stream are
// kept. The input is read as an MP4 from a local file only.
func HLSArgs(o HLSOptions) []string {
	args := []string{"ffmpeg", "-hide_banner", "-nostdin", "-y"}
	args = append(args, localInput(renditionFormats)...)
	return append(args,
		"-i", fileURL(o.Input),
		"-map", "0:v:0",
		"-map", "0:a:0?", // ?: no error when there is no audio
		"-c", "copy",
		"-f", "hls",
		"-hls_time", strconv.Itoa(o.SegmentSeconds),
		"-hls_playlist_type", "vod",
		"-hls_segment_type", "mpegts",
		"-hls_segment_filename", fileURL(o.SegmentPattern),
		fileURL(o.PlaylistPath),
	)
}

// DASHOptions describe the DASH packaging of every rendition together.
type DASHOptions struct {
	// Inputs are the local paths of the renditions' MP4s, from TranscodeArgs
	// with the same SegmentSeconds; each gives one video representation.
	Inputs []string

	// MPDPath is the local path of the manifest to write. The init and media
	// segments go into the same directory and the MPD names them relative to
	// itself: init-<n>.m4s and chunk-<n>-<00001>.m4s, n being the
	// representation id (the inputs' order; audio comes last).
	MPDPath string

	SegmentSeconds int // target segment length

	// Audio adds one audio representation, from the first input (every
	// rendition carries the same audio). The command fails if it has none.
	Audio bool
}

// DASHArgs returns the ffmpeg command that packages the renditions into one
// static MPD with the dash muxer, without re-encoding: one video adaptation
// set holding every input's video stream and, when Audio is set, one audio
// adaptation set; segment templates with a timeline. Each input is read as
// an MP4 from a local file only.
func DASHArgs(o DASHOptions) []string {
	args := []string{"ffmpeg", "-hide_banner", "-nostdin", "-y"}
	for _, in := range o.Inputs {
		args = append(args, localInput(renditionFormats)...)
		args = append(args, "-i", fileURL(in))
	}
	for i := range o.Inputs {
		args = append(args, "-map", strconv.Itoa(i)+":v:0")
	}
	sets := "id=0,streams=v"
	if o.Audio {
		args = append(args, "-map", "0:a:0")
		sets += " id=1,streams=a"
	}
	return append(args,
		"-c", "copy",
		"-f", "dash",
		"-seg_duration", strconv.Itoa(o.SegmentSeconds),
		"-use_template", "1",
		"-use_timeline", "1",
		"-adaptation_sets", sets,
		// Templates for the dash muxer, not for a shell: no shell runs.
		"-init_seg_name", "init-$RepresentationID$.$ext$",
		"-media_seg_name", "chunk-$RepresentationID$-$Number%05d$.$ext$",
		fileURL(o.MPDPath),
	)
}

// TestPatternOptions describe a synthetic clip.
type TestPatternOptions struct {
	Output        string        // local path of the MP4 to write
	Duration      time.Duration // length of the clip
	Width, Height int           // frame size; both should be even
	Audio         bool          // add a 440 Hz stereo tone
	Preset        string        // x264 preset; empty means DefaultPreset
}

// TestPatternArgs returns the ffmpeg command that writes a synthetic H.264
// (and AAC) MP4 from lavfi's testsrc2 pattern at 25 frames per second and a
// sine tone. Tests and benchmarks make their sources with it, so no media
// file needs to live in git.
func TestPatternArgs(o TestPatternOptions) []string {
	preset := o.Preset
	if preset == "" {
		preset = DefaultPreset
	}
	seconds := strconv.FormatFloat(o.Duration.Seconds(), 'f', -1, 64)
	size := strconv.Itoa(o.Width) + "x" + strconv.Itoa(o.Height)
	args := []string{
		"ffmpeg", "-hide_banner", "-nostdin", "-y",
		"-f", "lavfi", "-i", "testsrc2=size=" + size + ":rate=25:duration=" + seconds,
	}
	if o.Audio {
		args = append(args, "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000:duration="+seconds)
	}
	args = append(args, "-map", "0:v:0")
	if o.Audio {
		args = append(args, "-map", "1:a:0")
	}
	args = append(args, "-c:v", "libx264", "-preset", preset, "-pix_fmt", "yuv420p")
	if o.Audio {
		args = append(args, "-c:a", "aac", "-b:a", audioBitrate, "-ac", "2")
	}
	return append(args,
		"-t", seconds,
		"-movflags", "+faststart",
		"-f", "mp4",
		fileURL(o.Output),
	)
}
