package main

import (
	"flag"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/vhg/vhg-worker/tasks"
)

func TestParseSize(t *testing.T) {
	t.Parallel()
	tests := map[string]int64{
		"10GiB": 10 << 30, "10G": 10 << 30, "500MiB": 500 << 20, "500 MB": 500e6, "1.5GiB": 3 << 29,
		"1000": 1000, "1000B": 1000, "64k": 64 << 10, "2TiB": 2 << 40,
		"0": -1, "none": -1, "None": -1,
	}
	for in, want := range tests {
		if got, err := parseSize(in); err != nil || got != want {
			t.Errorf("parseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "-1", "10XB", "GiB", "1e3", "99999999TiB", "ten"} {
		if got, err := parseSize(bad); err == nil {
			t.Errorf("parseSize(%q) = %d, want an error", bad, got)
		}
	}
}

// parseTaskFlags parses args as the worker command's task flags.
func parseTaskFlags(t *testing.T, args ...string) (tasks.Deps, error) {
	t.Helper()
	var f taskFlags
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	f.add(fs, true)
	if err := fs.Parse(args); err != nil {
		return tasks.Deps{}, err
	}
	return f.deps()
}

func TestDownloadFlags(t *testing.T) {
	// Not parallel: it sets environment variables.
	deps, err := parseTaskFlags(t)
	if err != nil {
		t.Fatal(err)
	}
	if deps.MaxDownloadSize != tasks.DefaultMaxDownloadSize || deps.DownloadHosts != tasks.AnyHost ||
		deps.ConnectTimeout != tasks.DefaultConnectTimeout || deps.IdleTimeout != tasks.DefaultIdleTimeout {
		t.Errorf("defaults: size %d, hosts %v, connect %v, idle %v", deps.MaxDownloadSize, deps.DownloadHosts, deps.ConnectTimeout, deps.IdleTimeout)
	}

	deps, err = parseTaskFlags(t, "--max-download-size", "2GiB", "--download-hosts", "public",
		"--download-connect-timeout", "5s", "--download-idle-timeout", "2m")
	if err != nil {
		t.Fatal(err)
	}
	if deps.MaxDownloadSize != 2<<30 || deps.DownloadHosts != tasks.PublicHosts ||
		deps.ConnectTimeout != 5*time.Second || deps.IdleTimeout != 2*time.Minute {
		t.Errorf("flags: size %d, hosts %v, connect %v, idle %v", deps.MaxDownloadSize, deps.DownloadHosts, deps.ConnectTimeout, deps.IdleTimeout)
	}

	t.Setenv("VHG_MAX_DOWNLOAD_SIZE", "none")
	t.Setenv("VHG_DOWNLOAD_HOSTS", "public")
	t.Setenv("VHG_DOWNLOAD_CONNECT_TIMEOUT", "3s")
	t.Setenv("VHG_DOWNLOAD_IDLE_TIMEOUT", "90s")
	deps, err = parseTaskFlags(t)
	if err != nil {
		t.Fatal(err)
	}
	if deps.MaxDownloadSize != -1 || deps.DownloadHosts != tasks.PublicHosts ||
		deps.ConnectTimeout != 3*time.Second || deps.IdleTimeout != 90*time.Second {
		t.Errorf("env: size %d, hosts %v, connect %v, idle %v", deps.MaxDownloadSize, deps.DownloadHosts, deps.ConnectTimeout, deps.IdleTimeout)
	}
	// A flag wins over the environment.
	if deps, err = parseTaskFlags(t, "--download-hosts", "any"); err != nil || deps.DownloadHosts != tasks.AnyHost {
		t.Errorf("--download-hosts any over VHG_DOWNLOAD_HOSTS=public: %v, %v", deps.DownloadHosts, err)
	}

	for _, bad := range [][]string{
		{"--max-download-size", "lots"},
		{"--download-hosts", "internal"},
		{"--download-connect-timeout", "0s"},
		{"--download-idle-timeout", "-1s"},
		{"--download-idle-timeout", "soon"},
	} {
		if _, err := parseTaskFlags(t, bad...); err == nil || !strings.Contains(err.Error(), bad[0]) {
			t.Errorf("%v: %v, want an error naming the flag", bad, err)
		}
	}
	t.Setenv("VHG_DOWNLOAD_IDLE_TIMEOUT", "whenever")
	if _, err := parseTaskFlags(t); err == nil || !strings.Contains(err.Error(), "--download-idle-timeout") {
		t.Errorf("a bad VHG_DOWNLOAD_IDLE_TIMEOUT: %v", err)
	}
}
