package main

import (
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vhg/vhg-worker/worker"
)

// TestWorkerFlagsCelerySpellings parses command lines written for
// `celery worker` (Celery 5's option names and click's short forms).
func TestWorkerFlagsCelerySpellings(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		args  []string
		check func(f workerFlags) bool
	}{
		{[]string{"-c4"}, func(f workerFlags) bool { return f.concurrency == 4 }},
		{[]string{"-c", "4"}, func(f workerFlags) bool { return f.concurrency == 4 }},
		{[]string{"--concurrency=4"}, func(f workerFlags) bool { return f.concurrency == 4 }},
		{[]string{"--concurrency", "4"}, func(f workerFlags) bool { return f.concurrency == 4 }},
		{[]string{"-Qvideo,audio"}, func(f workerFlags) bool { return slices.Equal(f.consumedQueues(), []string{"video", "audio"}) }},
		{[]string{"-Q", "video,audio", "-X", "audio"}, func(f workerFlags) bool { return slices.Equal(f.consumedQueues(), []string{"video"}) }},
		{[]string{"--queues=a,b,c", "--exclude-queues=b"}, func(f workerFlags) bool { return slices.Equal(f.consumedQueues(), []string{"a", "c"}) }},
		{[]string{"-lINFO"}, func(f workerFlags) bool { return f.logLevel == "INFO" }},
		{[]string{"-l", "DEBUG"}, func(f workerFlags) bool { return f.logLevel == "DEBUG" }},
		{[]string{"--loglevel=WARNING"}, func(f workerFlags) bool { return f.logLevel == "WARNING" }},
		{[]string{"-nw1@%h"}, func(f workerFlags) bool { return f.nodeName == "w1@%h" }},
		{[]string{"-n", "w1@%h"}, func(f workerFlags) bool { return f.nodeName == "w1@%h" }},
		{[]string{"--hostname=w1@%h"}, func(f workerFlags) bool { return f.nodeName == "w1@%h" }},
		{[]string{"-E"}, func(f workerFlags) bool { return f.taskEvents }},
		{[]string{"--events"}, func(f workerFlags) bool { return f.taskEvents }},
		{[]string{"-EC"}, func(f workerFlags) bool { return f.taskEvents && f.noColor }},
		{[]string{"-O", "fair"}, func(f workerFlags) bool { return true }},
		{[]string{"-Ofair"}, func(f workerFlags) bool { return true }},
		{[]string{"--time-limit", "300", "--soft-time-limit=240.5"}, func(f workerFlags) bool {
			return f.timeLimit == 300*time.Second && f.softTimeLimit == 240500*time.Millisecond
		}},
		{[]string{"--without-gossip", "--without-mingle", "--without-heartbeat"}, func(f workerFlags) bool { return f.withoutHeartbeat }},
		{[]string{"--heartbeat-interval", "5"}, func(f workerFlags) bool { return f.heartbeatInterval == 5 }},
		{[]string{"--prefetch-multiplier=1"}, func(f workerFlags) bool { return f.prefetchMultiplier == 1 }},
		{[]string{"-b", "amqp://h//", "--result-backend", "redis://h/0"}, func(f workerFlags) bool {
			return f.broker == "amqp://h//" && f.resultBackend == "redis://h/0"
		}},
		{[]string{"-f", "/var/log/%n%I.log", "--pidfile=/run/%n.pid"}, func(f workerFlags) bool {
			return f.logFile == "/var/log/%n%I.log" && f.pidFile == "/run/%n.pid"
		}},
		// A value that starts with "-" stays the value of its option.
		{[]string{"-n", "-odd-", "-c", "3"}, func(f workerFlags) bool { return f.nodeName == "-odd-" && f.concurrency == 3 }},
		// Options that only mean something to Python are accepted and named.
		{[]string{"-A", "proj", "-P", "prefork", "--max-tasks-per-child", "10", "--max-memory-per-child=1000", "-Sstate.db"},
			func(f workerFlags) bool {
				return len(f.inert.seen) == 5 && strings.HasPrefix(f.inert.seen[0], "--app: ") &&
					strings.HasPrefix(f.inert.seen[4], "--statedb: ")
			}},
		{[]string{"--autoscale", "10,3"}, func(f workerFlags) bool { return f.autoscale == worker.Autoscale{Max: 10, Min: 3} }},
		{[]string{"--autoscale=4"}, func(f workerFlags) bool { return f.autoscale == worker.Autoscale{Max: 4} }},
	} {
		f, err := parseWorkerFlags(c.args)
		if err != nil {
			t.Errorf("%q: %v", c.args, err)
			continue
		}
		if !c.check(f) {
			t.Errorf("%q parsed to %+v", c.args, f)
		}
	}
}

// TestWorkerFlagsRefused checks that what cannot work here stops the start
// with a reason, and that an unknown option is named.
func TestWorkerFlagsRefused(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--bogus"}, "-bogus"},
		{[]string{"-Zq"}, "-Zq"},
		{[]string{"-B"}, "celery beat"},
		{[]string{"-EB"}, "celery beat"},
		{[]string{"--detach"}, "service manager"},
		{[]string{"--purge"}, "celery purge"},
		{[]string{"-O", "fast"}, "default or fair"},
		{[]string{"--time-limit", "soon"}, "seconds"},
		{[]string{"--heartbeat-interval", "0"}, "heartbeat-interval"},
		{[]string{"-Q", "a", "-X", "a"}, "no queue left"},
		{[]string{"--autoscale", "3,5"}, "MIN <= MAX"},
		{[]string{"--autoscale", "many"}, "MAX,MIN"},
	} {
		_, err := parseWorkerFlags(c.args)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: error %v, want one naming %q", c.args, err, c.want)
		}
	}
}

// TestGlobalOptionsBeforeCommand checks `celery -A proj -b URL worker ...`.
func TestGlobalOptionsBeforeCommand(t *testing.T) {
	t.Parallel()
	cmd, rest, err := splitGlobal([]string{"-A", "proj", "-b", "amqp://h//", "--result-backend=redis://h", "-q", "worker", "-c4"})
	if err != nil || cmd != "worker" || !slices.Equal(rest, []string{"-A", "proj", "-b", "amqp://h//", "--result-backend=redis://h", "-q", "-c4"}) {
		t.Fatalf("got %q %q %v", cmd, rest, err)
	}
	if _, _, err := splitGlobal([]string{"-c4", "worker"}); err == nil || !strings.Contains(err.Error(), "-c4") {
		t.Errorf("worker option before the command: error %v, want one naming it", err)
	}
	if _, _, err := splitGlobal([]string{"-b"}); err == nil {
		t.Error("-b without a value: no error")
	}
}

func TestExpandNodeFile(t *testing.T) {
	t.Parallel()
	for _, c := range []struct{ pattern, node, want string }{
		{"/var/run/celery/%n.pid", "w1@box.example.com", "/var/run/celery/w1.pid"},
		{"%n%I.log", "w1@box", "w1.log"},
		{"%p-%i.log", "w1@box", "w1@box-0.log"},
		{"%h/%d/%%", "w1@box.example.com", "box.example.com/example.com/%"},
	} {
		got, err := expandNodeFile(c.pattern, c.node)
		if err != nil || got != c.want {
			t.Errorf("expandNodeFile(%q, %q) = %q, %v; want %q", c.pattern, c.node, got, err, c.want)
		}
	}
	if _, err := expandNodeFile("%x", "w@h"); err == nil {
		t.Error("unknown format: no error")
	}
}

// TestPidFile checks Celery's pidfile rules: written with this pid,
// refused while it names a live process, a stale one replaced, removed
// on release.
func TestPidFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	pattern := filepath.Join(dir, "%n.pid")
	name := filepath.Join(dir, "w1.pid")

	release, err := writePidFile(pattern, "w1@box")
	if err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(name)
	if strings.TrimSpace(string(data)) != strconv.Itoa(os.Getpid()) {
		t.Errorf("pidfile holds %q, want %d", data, os.Getpid())
	}
	release()
	if _, err := os.Stat(name); !os.IsNotExist(err) {
		t.Errorf("pidfile still there after release: %v", err)
	}

	// A live process (pid 1 always runs) holds the file: refused.
	os.WriteFile(name, []byte("1\n"), 0o644)
	if _, err := writePidFile(pattern, "w1@box"); err == nil || !strings.Contains(err.Error(), "process 1") {
		t.Errorf("live pidfile: error %v, want a refusal naming process 1", err)
	}
	// A stale one (no such process) is replaced.
	os.WriteFile(name, []byte("999999999\n"), 0o644)
	release, err = writePidFile(pattern, "w1@box")
	if err != nil {
		t.Fatalf("stale pidfile: %v", err)
	}
	release()
}

func TestExpandNodeName(t *testing.T) {
	t.Parallel()
	for _, c := range []struct{ pattern, host, want, err string }{
		{"celery@%h", "box.example.com", "celery@box.example.com", ""},
		{"w1@%n", "box.example.com", "w1@box", ""},
		{"w1@%d", "box.example.com", "w1@example.com", ""},
		{"%n@%h", "vm", "vm@vm", ""},
		{"w1@%d", "vm", "w1@", ""},
		{"a%%b@%h", "vm", "a%b@vm", ""},
		{"", "vm", "celery@vm", ""},
		{"worker.local", "vm", "celery@worker.local", ""},
		{"w@%x", "vm", "", "unknown format %x"},
		{"w@%", "vm", "", "lone %"},
	} {
		got, err := expandNodeName(c.pattern, c.host)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("expandNodeName(%q) error = %v, want %q", c.pattern, err, c.err)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("expandNodeName(%q, %q) = %q, %v; want %q", c.pattern, c.host, got, err, c.want)
		}
	}
}
