package ffmpeg_test

import (
	"fmt"

	"github.com/vhg/vhg-worker/ffmpeg"
)

func ExampleTranscodeArgs() {
	argv := ffmpeg.TranscodeArgs(ffmpeg.TranscodeOptions{
		Input:          "/srv/vhg/out/0f8fad5b/source/original.mkv",
		Output:         "/srv/vhg/out/0f8fad5b/encoding/640x360.mp4",
		Width:          640,
		Height:         360,
		BitrateKbps:    800,
		SegmentSeconds: 4,
		Audio:          true,
	})
	// One argument per line: this is an argv, not a shell command.
	for _, arg := range argv {
		fmt.Println(arg)
	}
	// Output:
	// ffmpeg
	// -hide_banner
	// -nostdin
	// -y
	// -protocol_whitelist
	// file
	// -format_whitelist
	// mov,matroska,avi,flv,mpegts,mpeg,asf,ogg
	// -i
	// file:/srv/vhg/out/0f8fad5b/source/original.mkv
	// -map
	// 0:V:0
	// -map
	// 0:a:0
	// -c:v
	// libx264
	// -preset
	// veryfast
	// -profile:v
	// main
	// -level:v
	// 3.1
	// -pix_fmt
	// yuv420p
	// -vf
	// scale=640:360
	// -b:v
	// 800k
	// -maxrate
	// 800k
	// -bufsize
	// 1600k
	// -force_key_frames
	// expr:gte(t,n_forced*4)
	// -sc_threshold
	// 0
	// -c:a
	// aac
	// -b:a
	// 128k
	// -ac
	// 2
	// -movflags
	// +faststart
	// -f
	// mp4
	// file:/srv/vhg/out/0f8fad5b/encoding/640x360.mp4
}
