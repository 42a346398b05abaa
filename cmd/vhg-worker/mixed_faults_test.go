//go:build integration && faults

package main

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/vhg/vhg-worker/protocol"
	"github.com/vhg/vhg-worker/tasks"
)

// TestFaultMixedKillGoWorkerMidTranscode kills (SIGKILL) a Go worker
// while it transcodes in a mixed deployment, next to a Python worker
// running the original tasks on the same queue: a fresh Go worker picks
// the interrupted transcode up (its lease guard comes back on a queue only
// Go workers consume), and the workflows still reach COMPLETE with valid
// HLS and DASH. It restarts no service.
func TestFaultMixedKillGoWorkerMidTranscode(t *testing.T) {
	requireServices(t)
	sources, out := t.TempDir(), t.TempDir()
	faultClip(t, sources, 20*time.Second) // clip.mp4, 1280x720
	srv := serveSources(t, sources)
	queue := uniqueQueue(t)
	const renditions = "180:300,360:800"
	py := startOriginalWorker(t, []string{queue}, "py-original@mixedkill", out, "VHG_RENDITIONS="+renditions)
	// A consumer timeout of 6 s leases a transcode after 3 s: its message
	// is then acknowledged and guarded on vhg.guards.<queue>, so only a Go
	// worker can run it again.
	args := func(n int) []string {
		return []string{"worker", "-b", testBrokerURL, "--result-backend", testRedisURL, "-Q", queue, "-c", "2",
			"-n", fmt.Sprintf("mixedkill%d@%%h", n), "--output-dir", out, "--renditions", renditions, "--consumer-timeout", "6s"}
	}
	first := startBinary(t, args(1)...)
	bin := workerBinary(t)

	// Two workflows: four transcodes, of which the Python worker (two
	// processes, prefetch one each) can hold two at most.
	roots := []string{submitWithBinary(t, bin, queue, srv.URL+"/clip.mp4"), submitWithBinary(t, bin, queue, srv.URL+"/clip.mp4")}
	type followed struct {
		progress chan string // correlation ids (task ids) of transcode PROGRESS
		done     chan []protocol.ResultMeta
		err      chan error
	}
	follow := func(root string) followed {
		f := followed{progress: make(chan string, 1000), done: make(chan []protocol.ResultMeta, 1), err: make(chan error, 1)}
		conn, deliveries, err := consumeStatus(testBrokerURL, root)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		go func() {
			var seen []protocol.ResultMeta
			for d := range deliveries {
				meta, err := protocol.ParseResultMeta(d.Body)
				if err != nil {
					f.err <- err
					return
				}
				seen = append(seen, meta)
				if r, _ := meta.Result.(map[string]any); meta.Status == tasks.StateProgress && r["step"] == "transcode" {
					f.progress <- d.CorrelationId
				}
				if meta.Status == tasks.StateComplete || meta.Status == protocol.StateFailure {
					f.done <- seen
					return
				}
			}
			f.err <- fmt.Errorf("status queue of %s closed", root)
		}()
		return f
	}
	follows := []followed{follow(roots[0]), follow(roots[1])}

	// Wait until a transcode running on the first Go worker is leased.
	var leased string
	deadline := time.After(3 * time.Minute)
	for leased == "" {
		var id string
		select {
		case id = <-follows[0].progress:
		case id = <-follows[1].progress:
		case <-deadline:
			t.Fatal("no transcode leased on the Go worker within 3 minutes")
		}
		for range 40 {
			if strings.Contains(rabbitmqQueues(t), "vhg.lease."+id+".") {
				leased = id
				break
			}
			time.Sleep(250 * time.Millisecond)
		}
	}
	first.kill9(t)
	t.Logf("Go worker killed with SIGKILL while transcode %s runs under a lease", leased)
	second := startBinary(t, args(2)...)

	for i, f := range follows {
		select {
		case seen := <-f.done:
			if err := checkComplete(seen, []string{"320x180", "640x360"}); err != nil {
				t.Errorf("workflow %s: %v", roots[i], err)
			}
		case err := <-f.err:
			t.Fatalf("workflow %s: %v", roots[i], err)
		case <-time.After(5 * time.Minute):
			t.Fatalf("workflow %s: no COMPLETE or FAILURE within 5 minutes", roots[i])
		}
	}
	logs := second.logs.String()
	if !strings.Contains(logs, leased) {
		t.Errorf("the fresh Go worker did not run the interrupted transcode %s; its log:\n%s", leased, logs)
	}
	if py.ranID(leased) {
		t.Errorf("the Python worker ran the interrupted transcode %s", leased)
	}
	if py.total() == 0 {
		t.Error("the Python worker ran no step")
	}
	t.Logf("FIGURE mixed kill-9: 2 workflows COMPLETE after the Go worker was killed mid-transcode; interrupted transcode rerun by the fresh Go worker; steps on Python %d (%s)",
		py.total(), figure(py.counts()))
}

// rabbitmqQueues lists the queue names of the default vhost (read only).
func rabbitmqQueues(t *testing.T) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "rabbitmqctl", "list_queues", "-q", "name")
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("rabbitmqctl list_queues: %v\n%s", err, out)
	}
	return string(out)
}
