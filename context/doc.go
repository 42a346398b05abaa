// Package context holds the workflow context: the dict that travels from one
// adaptation.commons task to the next as the first positional argument, and
// the path helpers of the original Python project (context.py) that turn it
// into file names under the output directory.
//
// The package is named after the original module, so it shadows the standard
// library's context package. Importers give it one alias everywhere:
//
//	import vhgctx "github.com/vhg/vhg-worker/context"
//
// # Values
//
// A Context is a plain map[string]any, exactly what a JSON decoder produces,
// so a task can hand it back to Celery unchanged. Numbers arrive as int64,
// float64 or json.Number depending on the decoder, and as int when a Go task
// sets them; Int accepts all of these as long as the value is integral.
// Accessors return a *KeyError that names the key and says whether it is
// missing (errors.Is(err, ErrMissingKey)) or holds the wrong type.
//
// # Folder layout
//
// Every file lives under folder_out, which is shared storage when steps run
// on different hosts:
//
//	<folder_out>/source/            the downloaded original (SourceFolder)
//	<folder_out>/encoding/WxH.mp4   one transcoded rendition (TranscodedFile)
//	<folder_out>/hls/playlist.m3u8  the HLS master playlist (HLSGlobalPlaylist)
//	<folder_out>/hls/WxH/playlist.m3u8 + segments (HLSTranscodedPlaylist)
//	<folder_out>/dash/playlist.mpd  the DASH manifest (DashMPDFilePath)
//
// WxH is DimAsString: target_width "x" target_height.
//
// # Trust
//
// The context comes off the broker, so anything in it may be hostile. A task
// calls Validate with the worker's output root before it touches the file
// system: folder_out must lie inside that root and id must be a short token.
// The path helpers themselves do not validate; they only join.
package context
