package tasks

import (
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	vhgctx "github.com/vhg/vhg-worker/context"
)

var testVariants = []variant{
	{Width: 1280, Height: 720, Bandwidth: 2628000, Codecs: "avc1.4d401f,mp4a.40.2", URI: "1280x720/playlist.m3u8"},
	{Width: 426, Height: 240, Bandwidth: 528000, Codecs: "avc1.4d401f,mp4a.40.2", URI: "426x240/playlist.m3u8"},
	{Width: 640, Height: 360, Bandwidth: 928000, Codecs: "avc1.4d401f,mp4a.40.2", URI: "640x360/playlist.m3u8"},
}

const wantMaster = `#EXTM3U
#EXT-X-VERSION:3
#EXT-X-STREAM-INF:BANDWIDTH=528000,RESOLUTION=426x240,CODECS="avc1.4d401f,mp4a.40.2"
426x240/playlist.m3u8
#EXT-X-STREAM-INF:BANDWIDTH=928000,RESOLUTION=640x360,CODECS="avc1.4d401f,mp4a.40.2"
640x360/playlist.m3u8
#EXT-X-STREAM-INF:BANDWIDTH=2628000,RESOLUTION=1280x720,CODECS="avc1.4d401f,mp4a.40.2"
1280x720/playlist.m3u8
`

func TestMasterPlaylist(t *testing.T) {
	t.Parallel()
	if got := masterPlaylist(testVariants); got != wantMaster {
		t.Errorf("masterPlaylist:\n%s\nwant:\n%s", got, wantMaster)
	}
	if got, want := masterPlaylist(nil), "#EXTM3U\n#EXT-X-VERSION:3\n"; got != want {
		t.Errorf("empty master = %q, want %q", got, want)
	}
	if strings.Contains(masterPlaylist(testVariants), "ENDLIST") {
		t.Error("a master playlist must not have #EXT-X-ENDLIST")
	}
}

// newFolderOut returns a context for a fresh folder_out under a new output
// directory, with the HLS folder reset as add_playlist_header leaves it.
func newFolderOut(t *testing.T) vhgctx.Context {
	t.Helper()
	c := vhgctx.Context{vhgctx.KeyFolderOut: filepath.Join(t.TempDir(), "abc"), vhgctx.KeyID: "abc"}
	if err := resetHLS(c); err != nil {
		t.Fatal(err)
	}
	return c
}

func readMaster(t *testing.T, c vhgctx.Context) string {
	t.Helper()
	path, _ := c.HLSGlobalPlaylist()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

func TestRecordVariantAnyOrderAndTwice(t *testing.T) {
	t.Parallel()
	for range 5 {
		c := newFolderOut(t)
		order := rand.Perm(len(testVariants))
		for _, i := range append(order, order...) { // every step runs twice
			if err := recordVariant(c, testVariants[i]); err != nil {
				t.Fatal(err)
			}
		}
		if got := readMaster(t, c); got != wantMaster {
			t.Fatalf("order %v: master\n%s\nwant\n%s", order, got, wantMaster)
		}
	}
}

func TestRecordVariantConcurrent(t *testing.T) {
	t.Parallel()
	c := newFolderOut(t)
	var wg sync.WaitGroup
	errs := make(chan error, 10*len(testVariants))
	for range 10 {
		for _, v := range testVariants {
			wg.Go(func() { errs <- recordVariant(c, v) })
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if got := readMaster(t, c); got != wantMaster {
		t.Fatalf("master\n%s\nwant\n%s", got, wantMaster)
	}
	hls, _ := c.HLSFolder()
	entries, _ := os.ReadDir(hls)
	for _, e := range entries {
		if strings.Contains(e.Name(), ".tmp-") {
			t.Errorf("temporary file left behind: %s", e.Name())
		}
	}
}

func TestResetHLSForgetsVariants(t *testing.T) {
	t.Parallel()
	c := newFolderOut(t)
	if err := recordVariant(c, testVariants[0]); err != nil {
		t.Fatal(err)
	}
	if err := resetHLS(c); err != nil {
		t.Fatal(err)
	}
	if got, want := readMaster(t, c), "#EXTM3U\n#EXT-X-VERSION:3\n"; got != want {
		t.Fatalf("master after reset = %q, want %q", got, want)
	}
}
