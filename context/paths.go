package context

import (
	"math"
	"path/filepath"
	"strconv"
)

// TargetWidth returns the width of a rendition targetHeight pixels high that
// keeps the aspect ratio of a trackWidth x trackHeight original, rounded down
// to an even number (H.264 with 4:2:0 chroma needs even sizes):
//
//	trunc(targetHeight / trackHeight * trackWidth / 2) * 2
//
// It computes in float64 in the same order as the Python original, so Go and
// Python workers agree to the pixel, including where float rounding makes the
// result 2 pixels smaller than exact arithmetic would (1440x1080 at 156 gives
// 206, not 208). It returns 0 when any argument is not positive.
func TargetWidth(trackWidth, trackHeight, targetHeight int) int {
	if trackWidth <= 0 || trackHeight <= 0 || targetHeight <= 0 {
		return 0
	}
	w := float64(targetHeight) / float64(trackHeight) * float64(trackWidth) / 2
	return int(math.Trunc(w)) * 2
}

// DimAsString returns "<target_width>x<target_height>", the name of a
// rendition's files and folders.
func (c Context) DimAsString() (string, error) {
	w, h, err := c.TargetSize()
	if err != nil {
		return "", err
	}
	return strconv.Itoa(w) + "x" + strconv.Itoa(h), nil
}

// folder joins folder_out and elem.
func (c Context) folder(elem ...string) (string, error) {
	out, err := c.FolderOut()
	if err != nil {
		return "", err
	}
	return filepath.Join(append([]string{out}, elem...)...), nil
}

// renditionPath returns <folder_out>/<dir>/<WxH><suffix>.
func (c Context) renditionPath(dir, suffix string) (string, error) {
	out, err := c.FolderOut()
	if err != nil {
		return "", err
	}
	dim, err := c.DimAsString()
	if err != nil {
		return "", err
	}
	return filepath.Join(out, dir, dim+suffix), nil
}

// SourceFolder returns <folder_out>/source, where download_file stores the
// original. It replaces the original's local temporary directory, which only
// worked when every step ran on the same host.
func (c Context) SourceFolder() (string, error) { return c.folder("source") }

// TranscodedFolder returns <folder_out>/encoding.
func (c Context) TranscodedFolder() (string, error) { return c.folder("encoding") }

// TranscodedFile returns <folder_out>/encoding/<WxH>.mp4.
func (c Context) TranscodedFile() (string, error) { return c.renditionPath("encoding", ".mp4") }

// HLSFolder returns <folder_out>/hls.
func (c Context) HLSFolder() (string, error) { return c.folder("hls") }

// HLSGlobalPlaylist returns <folder_out>/hls/playlist.m3u8, the master
// playlist.
func (c Context) HLSGlobalPlaylist() (string, error) { return c.folder("hls", "playlist.m3u8") }

// HLSTranscodedFolder returns <folder_out>/hls/<WxH>, the folder of one
// rendition's playlist and segments.
func (c Context) HLSTranscodedFolder() (string, error) { return c.renditionPath("hls", "") }

// HLSTranscodedPlaylist returns <folder_out>/hls/<WxH>/playlist.m3u8, one
// rendition's playlist.
func (c Context) HLSTranscodedPlaylist() (string, error) {
	dir, err := c.HLSTranscodedFolder()
	if err != nil {
		return "", err
	}
	return filepath.Join(dir, "playlist.m3u8"), nil
}

// DashFolder returns <folder_out>/dash.
func (c Context) DashFolder() (string, error) { return c.folder("dash") }

// DashMPDFilePath returns <folder_out>/dash/playlist.mpd.
func (c Context) DashMPDFilePath() (string, error) { return c.folder("dash", "playlist.mpd") }
