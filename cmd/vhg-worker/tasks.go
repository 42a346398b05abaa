package main

import (
	"flag"
	"fmt"
	"math"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/vhg/vhg-worker/tasks"
	"github.com/vhg/vhg-worker/worker"
)

// registerTasks registers the tasks this binary runs and returns the
// pipeline, whose RevokedStatus observer goes on the Server. Celery's
// builtins (celery.accumulate, celery.chord_unlock, ...) are always
// registered by the worker itself.
func registerTasks(mux *worker.ServeMux, deps tasks.Deps) *tasks.Pipeline {
	return tasks.Register(mux, deps)
}

// taskFlags are the settings of the adaptation tasks, shared by the worker
// and encode commands.
type taskFlags struct {
	outputDir       string
	renditions      string
	inputRoots      string
	maxDownloadSize string
	downloadHosts   string
	connectTimeout  string
	idleTimeout     string
	tempDirs        string
}

// add defines the flags on fs; withInputRoots adds --input-roots (encode
// allows the input's own directory instead).
func (f *taskFlags) add(fs *flag.FlagSet, withInputRoots bool) {
	fs.StringVar(&f.outputDir, "output-dir", envOr("VHG_OUTPUT_DIR", "vhg-out"),
		"directory every workflow writes under; shared storage when workers run on several hosts (env VHG_OUTPUT_DIR)")
	fs.StringVar(&f.renditions, "renditions", "", "height:kbps pairs, e.g. 360:800,720:2500 (default 240:400,360:800,480:1200,720:2500,1080:5000)")
	if withInputRoots {
		fs.StringVar(&f.inputRoots, "input-roots", "", "comma-separated directories local file inputs may come from; empty refuses local inputs")
		fs.StringVar(&f.tempDirs, "source-temp-dirs", "",
			"comma-separated temp dirs where the original Python download_file leaves sources (tmpXXXXXXXX/<id>); empty means Python's: $TMPDIR, $TEMP, $TMP, /tmp, /var/tmp, /usr/tmp")
	}
	fs.StringVar(&f.maxDownloadSize, "max-download-size", envOr("VHG_MAX_DOWNLOAD_SIZE", "10GiB"),
		"largest http(s) original downloaded, e.g. 500MiB, 10GiB or a number of bytes; 0 or \"none\": no limit (env VHG_MAX_DOWNLOAD_SIZE)")
	fs.StringVar(&f.downloadHosts, "download-hosts", envOr("VHG_DOWNLOAD_HOSTS", "any"),
		"hosts http(s) originals may come from: any, or public (refuses loopback, private, link-local and other non-public addresses) (env VHG_DOWNLOAD_HOSTS)")
	fs.StringVar(&f.connectTimeout, "download-connect-timeout", envOr("VHG_DOWNLOAD_CONNECT_TIMEOUT", "30s"),
		"longest TCP connect and TLS handshake of a download (env VHG_DOWNLOAD_CONNECT_TIMEOUT)")
	fs.StringVar(&f.idleTimeout, "download-idle-timeout", envOr("VHG_DOWNLOAD_IDLE_TIMEOUT", "60s"),
		"a download that receives nothing for this long fails (env VHG_DOWNLOAD_IDLE_TIMEOUT)")
}

// parseTimeout reads a positive duration, such as 30s or 2m.
func parseTimeout(s string) (time.Duration, error) {
	d, err := time.ParseDuration(strings.TrimSpace(s))
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("%q is not a positive duration such as 30s or 2m", s)
	}
	return d, nil
}

// parseSize reads a byte count: a number with an optional unit (B, KB,
// MB, GB, TB in powers of 1000; KiB, MiB, GiB, TiB in powers of 1024; K,
// M, G, T as the binary ones). "0" and "none" mean no limit and give -1.
func parseSize(s string) (int64, error) {
	s = strings.TrimSpace(s)
	if s == "0" || strings.EqualFold(s, "none") {
		return -1, nil
	}
	i := strings.IndexFunc(s, func(r rune) bool { return (r < '0' || r > '9') && r != '.' })
	number, unit := s, ""
	if i >= 0 {
		number, unit = s[:i], strings.TrimSpace(s[i:])
	}
	units := map[string]float64{
		"": 1, "b": 1,
		"kb": 1e3, "mb": 1e6, "gb": 1e9, "tb": 1e12,
		"k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40,
		"kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30, "tib": 1 << 40,
	}
	mult, ok := units[strings.ToLower(unit)]
	n, err := strconv.ParseFloat(number, 64)
	if !ok || err != nil || n <= 0 || n*mult > math.MaxInt64/2 {
		return 0, fmt.Errorf("size %q: want a positive number of bytes with an optional unit (500MiB, 10GiB), or none", s)
	}
	return int64(n * mult), nil
}

// deps turns the flags into tasks.Deps: the output directory made absolute
// (the tasks create what they write in it), the renditions parsed, the
// input roots made absolute, the download limits checked.
func (f taskFlags) deps() (tasks.Deps, error) {
	out, err := filepath.Abs(f.outputDir)
	if err != nil {
		return tasks.Deps{}, fmt.Errorf("--output-dir: %w", err)
	}
	deps := tasks.Deps{OutputDir: out}
	if f.renditions != "" {
		if deps.Renditions, err = tasks.ParseRenditions(f.renditions); err != nil {
			return tasks.Deps{}, fmt.Errorf("--renditions: %w", err)
		}
	}
	if deps.MaxDownloadSize, err = parseSize(f.maxDownloadSize); err != nil {
		return tasks.Deps{}, fmt.Errorf("--max-download-size: %w", err)
	}
	if deps.DownloadHosts, err = tasks.ParseHostPolicy(f.downloadHosts); err != nil {
		return tasks.Deps{}, fmt.Errorf("--download-hosts: %w", err)
	}
	if deps.ConnectTimeout, err = parseTimeout(f.connectTimeout); err != nil {
		return tasks.Deps{}, fmt.Errorf("--download-connect-timeout: %w", err)
	}
	if deps.IdleTimeout, err = parseTimeout(f.idleTimeout); err != nil {
		return tasks.Deps{}, fmt.Errorf("--download-idle-timeout: %w", err)
	}
	for _, root := range splitList(f.inputRoots) {
		abs, err := filepath.Abs(root)
		if err != nil {
			return tasks.Deps{}, fmt.Errorf("--input-roots: %w", err)
		}
		deps.InputRoots = append(deps.InputRoots, abs)
	}
	for _, dir := range splitList(f.tempDirs) {
		if !filepath.IsAbs(dir) {
			return tasks.Deps{}, fmt.Errorf("--source-temp-dirs: %q is not an absolute path", dir)
		}
		deps.SourceTempDirs = append(deps.SourceTempDirs, filepath.Clean(dir))
	}
	return deps, nil
}
