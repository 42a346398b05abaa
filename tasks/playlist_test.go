package tasks

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
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
		wantVariants(t, readMaster(t, c), testVariants)
		// The footer's rebuild sorts them.
		unlock, _ := lockPlaylist(c)
		_, err := rebuildMasterLocked(c, nil, nil)
		unlock()
		if err != nil {
			t.Fatal(err)
		}
		if got := readMaster(t, c); got != wantMaster {
			t.Fatalf("order %v: master\n%s\nwant\n%s", order, got, wantMaster)
		}
	}
}

// wantVariants checks that master is clean and lists want, each once, in
// any order.
func wantVariants(t *testing.T, master string, want []variant) {
	t.Helper()
	got := parseMaster(master)
	if !got.clean {
		t.Errorf("master is not clean:\n%s", master)
	}
	byURI := func(vs []variant) []variant {
		vs = slices.Clone(vs)
		slices.SortFunc(vs, func(a, b variant) int { return strings.Compare(a.URI, b.URI) })
		return vs
	}
	if g, w := byURI(got.variants), byURI(want); !slices.Equal(g, w) {
		t.Errorf("master lists %+v, want %+v:\n%s", g, w, master)
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
	wantVariants(t, readMaster(t, c), testVariants)
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

// pythonAppend appends to the master as the original Python tasks do:
// open(path, "a").write(text), with no lock.
func pythonAppend(t *testing.T, c vhgctx.Context, text string) {
	t.Helper()
	path, _ := c.HLSGlobalPlaylist()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(text); err != nil {
		t.Fatal(err)
	}
}

// TestMasterMixedWithPythonAppends interleaves Go add_playlist_info with
// Python appends of valid entries: nobody's entry is lost, none is listed
// twice, the master stays valid.
func TestMasterMixedWithPythonAppends(t *testing.T) {
	t.Parallel()
	c := vhgctx.Context{vhgctx.KeyFolderOut: filepath.Join(t.TempDir(), "abc"), vhgctx.KeyID: "abc"}
	hls, _ := c.HLSFolder()
	os.MkdirAll(hls, 0o755)
	pythonAppend(t, c, "#EXTM3U\n") // the Python add_playlist_header
	py := func(v variant) string {
		return fmt.Sprintf("#EXT-X-STREAM-INF:BANDWIDTH=%d,RESOLUTION=%dx%d\n%s\n", v.Bandwidth, v.Width, v.Height, v.URI)
	}
	pythonAppend(t, c, py(testVariants[0]))
	if err := recordVariant(c, testVariants[1]); err != nil {
		t.Fatal(err)
	}
	pythonAppend(t, c, py(testVariants[2]))
	if err := recordVariant(c, testVariants[1]); err != nil { // run twice
		t.Fatal(err)
	}
	master := readMaster(t, c)
	noCodecs := func(v variant) variant { v.Codecs = ""; return v }
	wantVariants(t, master, []variant{noCodecs(testVariants[0]), testVariants[1], noCodecs(testVariants[2])})
}

// TestMasterOriginalEntriesRepaired reads a master as the original
// add_playlist_info and add_playlist_footer leave it (the playlist path as
// RESOLUTION, no URI line, #EXT-X-ENDLIST): the next Go step rebuilds it
// valid, with every variant once.
func TestMasterOriginalEntriesRepaired(t *testing.T) {
	t.Parallel()
	c := vhgctx.Context{vhgctx.KeyFolderOut: filepath.Join(t.TempDir(), "abc"), vhgctx.KeyID: "abc"}
	hls, _ := c.HLSFolder()
	os.MkdirAll(hls, 0o755)
	pythonAppend(t, c, "#EXTM3U\n")
	pythonAppend(t, c, "#EXT-X-STREAM-INF:PROGRAM-ID=1,BANDWIDTH=400000,RESOLUTION="+filepath.Join(hls, "426x240", "playlist.m3u8")+"\n")
	if err := recordVariant(c, testVariants[2]); err != nil {
		t.Fatal(err)
	}
	original := variant{Width: 426, Height: 240, Bandwidth: 400000, URI: "426x240/playlist.m3u8"}
	wantVariants(t, readMaster(t, c), []variant{original, testVariants[2]})

	pythonAppend(t, c, "#EXT-X-STREAM-INF:PROGRAM-ID=1,BANDWIDTH=2500000,RESOLUTION="+filepath.Join(hls, "1280x720", "playlist.m3u8")+"\n")
	pythonAppend(t, c, "#EXT-X-ENDLIST\n") // the original add_playlist_footer
	if parseMaster(readMaster(t, c)).clean {
		t.Fatal("a master with the original's entries reads as clean")
	}
	if err := repairMaster(c); err != nil { // chunk_dash or notify on Go
		t.Fatal(err)
	}
	master := readMaster(t, c)
	wantVariants(t, master, []variant{original, testVariants[2], {Width: 1280, Height: 720, Bandwidth: 2500000, URI: "1280x720/playlist.m3u8"}})
	if strings.Contains(master, "ENDLIST") {
		t.Errorf("repaired master keeps ENDLIST:\n%s", master)
	}
}

func TestParseMasterClean(t *testing.T) {
	t.Parallel()
	entry := "#EXT-X-STREAM-INF:BANDWIDTH=1,RESOLUTION=2x2,CODECS=\"a,b\"\n2x2/playlist.m3u8\n"
	for _, tc := range []struct {
		name, text string
		clean      bool
		variants   int
	}{
		{"go header", "#EXTM3U\n#EXT-X-VERSION:3\n", true, 0},
		{"python header", "#EXTM3U\n", true, 0},
		{"entry", "#EXTM3U\n" + entry, true, 1},
		{"empty file", "", false, 0},
		{"no final newline", "#EXTM3U\n" + strings.TrimSuffix(entry, "\n"), false, 1},
		{"twice", "#EXTM3U\n" + entry + entry, false, 1},
		{"header twice", "#EXTM3U\n" + entry + "#EXTM3U\n", false, 1},
		{"no header", entry, false, 1},
		{"endlist", "#EXTM3U\n" + entry + "#EXT-X-ENDLIST\n", false, 1},
		{"original endlist", "#EXTM3U\n" + entry + "##EXT-X-ENDLIST", false, 1},
		{"no uri", "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1,RESOLUTION=2x2\n", false, 1},
		{"original entry", "#EXTM3U\n#EXT-X-STREAM-INF:PROGRAM-ID=1,BANDWIDTH=1,RESOLUTION=/o/hls/2x2/playlist.m3u8\n", false, 1},
		{"garbage resolution", "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1,RESOLUTION=big\nx.m3u8\n", false, 0},
	} {
		got := parseMaster(tc.text)
		if got.clean != tc.clean || len(got.variants) != tc.variants {
			t.Errorf("%s: clean %v with %d variants, want %v with %d", tc.name, got.clean, len(got.variants), tc.clean, tc.variants)
		}
	}
}
