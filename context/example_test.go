package context_test

import (
	"fmt"

	vhgctx "github.com/vhg/vhg-worker/context"
)

func ExampleContext_HLSTranscodedPlaylist() {
	c := vhgctx.Context{
		vhgctx.KeyFolderOut:    "/srv/vhg/out/0f8fad5b",
		vhgctx.KeyTargetHeight: 360,
		vhgctx.KeyTargetWidth:  vhgctx.TargetWidth(1920, 1080, 360),
	}
	if err := c.Validate("/srv/vhg/out"); err != nil {
		fmt.Println(err)
		return
	}
	playlist, err := c.HLSTranscodedPlaylist()
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(playlist)
	// Output: /srv/vhg/out/0f8fad5b/hls/640x360/playlist.m3u8
}

func ExampleContext_Int() {
	// A context decoded from JSON without UseNumber holds float64 numbers.
	c := vhgctx.Context{vhgctx.KeySegtime: 4.0, vhgctx.KeyBitrate: "800"}
	fmt.Println(c.Segtime())
	fmt.Println(c.Bitrate())
	// Output:
	// 4 <nil>
	// 0 context: key "bitrate": want an integer, got string "800"
}
