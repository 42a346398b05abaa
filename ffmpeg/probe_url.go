package ffmpeg

import (
	"context"
	"fmt"
	"net/url"
	"time"
)

// ProbeURL is Probe for a remote original: it runs ffprobe on an http or
// https URL (any other scheme is refused) and parses its report. ffprobe may
// only open network protocols, so a remote playlist cannot make it read a
// local file, and only the SourceFormats demuxers, so a playlist is refused
// whatever it names (an error wrapping ErrInputRefused). A positive idle
// fails the probe when the server sends nothing for that long, so a
// stalled server cannot hold it; ctx bounds it as a whole.
func ProbeURL(ctx context.Context, rawURL string, idle time.Duration) (*ProbeResult, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("ffmpeg: probe URL: %w", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("ffmpeg: probe URL %q: scheme is not http or https", u.Redacted())
	}
	return probe(ctx, probeArgs(u.String(), []string{"http", "https", "tcp", "tls"}, sourceFormats, idle), sourceFormats)
}
