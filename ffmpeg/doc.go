// Package ffmpeg runs ffmpeg and ffprobe for the adaptation pipeline: it
// probes the original, encodes each rendition, cuts it for HLS and packages
// all renditions for DASH.
//
// # Commands are data
//
// TranscodeArgs, HLSArgs, DASHArgs and TestPatternArgs are pure functions
// from an options struct to an argv slice that starts with "ffmpeg". They
// run nothing, so their exact output is pinned by golden files
// (testdata/*.golden; `go test -update` rewrites them after a deliberate
// change) and a reviewer can read what will run. No command ever goes
// through a shell, and every local path is passed as a file: URL, so a file
// name that starts with '-' or holds ':' (say "http:x" or "concat:a|b") is
// never read as an option or a protocol.
//
// # Hostile inputs
//
// An original is whatever a client sent: a file named video.mp4 may hold an
// HLS playlist or a concat list naming other local files, which ffmpeg
// would read and encode. So every input is opened with a protocol
// whitelist (-protocol_whitelist file for local paths; http, https, tcp
// and tls for ProbeURL) and read with a demuxer whitelist
// (-format_whitelist): SourceFormats for an original (Probe, ProbeURL,
// TranscodeArgs), MP4 only for the renditions HLSArgs and DASHArgs cut.
// A refused input gives an error wrapping ErrInputRefused; Probe also
// checks the format ffprobe reports. ProbeFormats probes a file the caller
// wrote in another format, such as an HLS playlist.
//
// # Running
//
// Run executes an argv with exec.CommandContext. With RunOptions.OnProgress
// set it asks ffmpeg for machine-readable progress (-progress pipe:1) and
// reports the output time and percentage. The caller owns the lifetime: when
// ctx is done ffmpeg gets SIGTERM, finishes the file it is writing and exits;
// after RunOptions.GracePeriod it is killed. ffmpeg runs in its own process
// group, which is cleared when it exits, so nothing it started outlives Run.
// A run that fails returns an *ExitError holding the exit status and the end
// of stderr; a cancelled one returns an error wrapping ctx.Err().
//
// # Probing
//
// Probe runs ffprobe and ParseProbe reads its JSON report into a
// ProbeResult; ParseProbe is pure and tested on real ffprobe captures in
// testdata/probe. ProbeResult.Video skips cover pictures, which ffprobe lists
// as video streams.
//
// # The pipeline
//
// For every rendition, in the folder layout of package context:
//
//	TranscodeArgs  original        -> encoding/WxH.mp4  (H.264 main 3.1, AAC)
//	HLSArgs        encoding/WxH.mp4 -> hls/WxH/playlist.m3u8 + chunks_name%03d.ts
//
// and once all are done:
//
//	DASHArgs       encoding/*.mp4  -> dash/playlist.mpd + init-N.m4s, chunk-N-*.m4s
//
// Every rendition is encoded with a keyframe at each multiple of the segment
// length, so HLS and DASH cut all of them at the same instants with stream
// copy, and a player can switch between them at any segment boundary.
//
// # Requirements
//
// ffmpeg and ffprobe in PATH (Debian: apt-get install ffmpeg; tested with
// 5.1), with libx264. The tests run the real programs and fail, not skip,
// when they are missing.
package ffmpeg
