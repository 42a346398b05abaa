//go:build integration

package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestBinaryCeleryCommandLine starts the built worker with the command line
// of a systemd unit written for `celery worker` (README, "Running under
// systemd"), only the executable changed: Python Celery's client is served,
// `celery inspect ping` reaches the node named by -n, the pidfile and the
// logfile are where Celery would put them, and the Python-only options are
// named in the log.
func TestBinaryCeleryCommandLine(t *testing.T) {
	requireServices(t)
	bin := buildBinary(t)
	queue := uniqueQueue(t)
	dir := t.TempDir()
	cmd := exec.Command(bin, "-A", "adaptation", "-b", testBrokerURL, "--result-backend", testRedisURL,
		"worker", "-l", "INFO", "-c4", "-Q"+queue+",excluded", "-X", "excluded", "-n", "unit-"+queue+"@%h",
		"--pidfile="+filepath.Join(dir, "%n.pid"), "--logfile="+filepath.Join(dir, "%n%I.log"),
		"-O", "fair", "-P", "prefork", "--without-gossip", "--without-mingle", "--max-tasks-per-child=100",
		"--time-limit=600", "--soft-time-limit", "540", "-E")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			cmd.Process.Kill()
			<-exited
		}
	})
	logName := filepath.Join(dir, "unit-"+queue+".log")
	pidName := filepath.Join(dir, "unit-"+queue+".pid")
	readLog := func() string { data, _ := os.ReadFile(logName); return string(data) }
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(readLog(), "worker ready") {
		if time.Now().After(deadline) {
			t.Fatalf("no \"worker ready\" in %s within 30 s; log:\n%s", logName, readLog())
		}
		time.Sleep(100 * time.Millisecond)
	}

	got := scenario(t, "accumulate", queue)
	wantJSON(t, "accumulate", got, `{"all": {"result": [1, 2, 3]}, "index": {"result": 2}}`)

	node := "unit-" + queue + "@" + hostname()
	var replies map[string]any
	out := celery(t, queue, "inspect", "ping", "-d", node, "-j", "--timeout", "5")
	if err := json.Unmarshal([]byte(out), &replies); err != nil || replies[node] == nil {
		t.Errorf("celery inspect ping -d %s printed %q (%v)", node, out, err)
	}
	pid, _ := os.ReadFile(pidName)
	if strings.TrimSpace(string(pid)) != strconv.Itoa(cmd.Process.Pid) {
		t.Errorf("pidfile %s holds %q, want %d", pidName, pid, cmd.Process.Pid)
	}
	log := readLog()
	for _, want := range []string{"ignoring --app", "ignoring --pool", "ignoring --max-tasks-per-child", `queues="[` + queue + ` `} {
		if !strings.Contains(log, want) {
			t.Errorf("log has no %q:\n%s", want, log)
		}
	}
	if strings.Contains(log, "excluded") {
		t.Errorf("the queue excluded by -X is consumed:\n%s", log)
	}

	// A second worker with the same pidfile is refused while the first runs.
	out2, err := exec.Command(bin, "worker", "-b", testBrokerURL, "-Q", queue, "-n", "unit-"+queue+"@%h",
		"--pidfile="+filepath.Join(dir, "%n.pid")).CombinedOutput()
	if exit, ok := err.(*exec.ExitError); !ok || exit.ExitCode() != 1 || !strings.Contains(string(out2), "which is running") {
		t.Errorf("second worker on the same pidfile: %v\n%s", err, out2)
	}

	cmd.Process.Signal(os.Interrupt)
	stopped = true
	if err := <-exited; err != nil {
		t.Errorf("worker exited with %v after SIGINT; log:\n%s", err, readLog())
	}
	if _, err := os.Stat(pidName); !os.IsNotExist(err) {
		t.Errorf("pidfile left after a clean stop: %v", err)
	}
}
