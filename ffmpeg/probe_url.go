package ffmpeg

import (
	"bytes"
	"context"
	"fmt"
	"net/url"
)

// ProbeURL is Probe for a remote original: it runs ffprobe on an http or
// https URL (any other scheme is refused) and parses its report. ffprobe may
// only open network protocols, so a remote playlist cannot make it read a
// local file.
func ProbeURL(ctx context.Context, rawURL string) (*ProbeResult, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("ffmpeg: probe URL: %w", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("ffmpeg: probe URL %q: scheme is not http or https", u.Redacted())
	}
	argv := []string{
		"ffprobe", "-v", "error",
		"-protocol_whitelist", "http,https,tcp,tls",
		"-print_format", "json",
		"-show_format", "-show_streams",
		u.String(),
	}
	var stdout bytes.Buffer
	if err := run(ctx, argv, &stdout, 0); err != nil {
		return nil, err
	}
	return ParseProbe(stdout.Bytes())
}
