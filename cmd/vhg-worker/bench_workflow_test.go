//go:build integration

package main

// BenchmarkEncodeWorkflow (run by `make bench`) times encode_workflow on a
// 30 s 1080p clip with 3 renditions through the real worker binary on
// RabbitMQ (submit --follow until COMPLETE), against the floor: the same
// ffmpeg commands run directly with the same parallelism (every rendition's
// transcode then HLS cut at once, then DASH over all of them). The two
// alternate for BENCH_ROUNDS rounds (default 2) and the best time of each
// counts: on a shared machine a single run of either varies by several
// percent, more than the difference measured.

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vhg/vhg-worker/ffmpeg"
	"github.com/vhg/vhg-worker/worker"
)

var benchRenditions = []struct{ height, kbps int }{{360, 800}, {720, 2500}, {1080, 5000}}

func BenchmarkEncodeWorkflow(b *testing.B) {
	seconds := 30
	if s := os.Getenv("BENCH_CLIP_SECONDS"); s != "" {
		seconds, _ = strconv.Atoi(s)
	}
	dir := b.TempDir()
	srcDir := filepath.Join(dir, "in")
	os.MkdirAll(srcDir, 0o755)
	src := filepath.Join(srcDir, "clip1080.mp4")
	ctx := context.Background()
	gen := ffmpeg.TestPatternArgs(ffmpeg.TestPatternOptions{Output: src, Duration: time.Duration(seconds) * time.Second, Width: 1920, Height: 1080, Audio: true})
	if err := ffmpeg.Run(ctx, gen, ffmpeg.RunOptions{}); err != nil {
		b.Fatalf("generate the clip: %v", err)
	}
	bin := filepath.Join(dir, "vhg-worker")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		b.Fatalf("go build: %v\n%s", err, out)
	}

	rounds := 2
	if s := os.Getenv("BENCH_ROUNDS"); s != "" {
		rounds, _ = strconv.Atoi(s)
	}
	var floor, workflow time.Duration
	var runs []string
	b.Run("floor-vs-encode_workflow", func(b *testing.B) {
		for range b.N {
			floor, workflow, runs = 0, 0, nil
			for range max(rounds, 1) {
				f := runFloor(b, ctx, src, filepath.Join(dir, "floor"))
				w := runWorkflow(b, bin, srcDir, src, filepath.Join(dir, "out"))
				runs = append(runs, fmt.Sprintf("%.1f/%.1f", f.Seconds(), w.Seconds()))
				if floor == 0 || f < floor {
					floor = f
				}
				if workflow == 0 || w < workflow {
					workflow = w
				}
			}
			b.ReportMetric(floor.Seconds(), "floor-s")
			b.ReportMetric(workflow.Seconds(), "workflow-s")
		}
	})
	if floor > 0 && workflow > 0 {
		fmt.Printf("\nencode_workflow, %d s 1080p clip, renditions 360:800,720:2500,1080:5000, this machine (%d CPUs):\n", seconds, numCPU())
		fmt.Printf("  rounds (floor/workflow s): %s\n", strings.Join(runs, ", "))
		fmt.Printf("  ffmpeg commands run directly (floor), best: %6.1f s\n", floor.Seconds())
		fmt.Printf("  encode_workflow through RabbitMQ, best:     %6.1f s\n", workflow.Seconds())
		fmt.Printf("  ratio: %.3fx   target: <= 1.05x\n\n", workflow.Seconds()/floor.Seconds())
	}
}

// runFloor runs the pipeline's ffmpeg commands with no worker around them.
func runFloor(b *testing.B, ctx context.Context, src, out string) time.Duration {
	os.RemoveAll(out)
	start := time.Now()
	local := filepath.Join(out, "source", "clip.mp4")
	os.MkdirAll(filepath.Dir(local), 0o755)
	if err := copyFile(src, local); err != nil {
		b.Fatal(err)
	}
	probe, err := ffmpeg.Probe(ctx, local)
	if err != nil {
		b.Fatal(err)
	}
	video, _ := probe.Video()
	_, audio := probe.Audio()
	var wg sync.WaitGroup
	errs := make(chan error, len(benchRenditions))
	encoded := make([]string, len(benchRenditions))
	for i, r := range benchRenditions {
		width := int(float64(r.height)/float64(video.Height)*float64(video.Width)/2) * 2
		dim := fmt.Sprintf("%dx%d", width, r.height)
		encoded[i] = filepath.Join(out, "encoding", dim+".mp4")
		hls := filepath.Join(out, "hls", dim)
		os.MkdirAll(filepath.Dir(encoded[i]), 0o755)
		os.MkdirAll(hls, 0o755)
		wg.Add(1)
		go func() {
			defer wg.Done()
			argv := ffmpeg.TranscodeArgs(ffmpeg.TranscodeOptions{Input: local, Output: encoded[i], Width: width, Height: r.height,
				BitrateKbps: r.kbps, SegmentSeconds: 4, Audio: audio})
			if err := ffmpeg.Run(ctx, argv, ffmpeg.RunOptions{}); err != nil {
				errs <- err
				return
			}
			argv = ffmpeg.HLSArgs(ffmpeg.HLSOptions{Input: encoded[i], PlaylistPath: filepath.Join(hls, "playlist.m3u8"),
				SegmentPattern: filepath.Join(hls, "chunks_name%03d.ts"), SegmentSeconds: 4})
			if err := ffmpeg.Run(ctx, argv, ffmpeg.RunOptions{}); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
	os.MkdirAll(filepath.Join(out, "dash"), 0o755)
	argv := ffmpeg.DASHArgs(ffmpeg.DASHOptions{Inputs: encoded, MPDPath: filepath.Join(out, "dash", "playlist.mpd"), SegmentSeconds: 4, Audio: audio})
	if err := ffmpeg.Run(ctx, argv, ffmpeg.RunOptions{}); err != nil {
		b.Fatal(err)
	}
	return time.Since(start)
}

// runWorkflow starts the worker binary (one slot per rendition, so that the
// chord runs them in parallel as the floor does) and submits encode_workflow.
func runWorkflow(b *testing.B, bin, srcDir, src, out string) time.Duration {
	os.RemoveAll(out)
	queue := "bench-workflow-" + worker.NewTaskID()[:8]
	defer deleteQueue(queue)
	renditions := make([]string, len(benchRenditions))
	for i, r := range benchRenditions {
		renditions[i] = fmt.Sprintf("%d:%d", r.height, r.kbps)
	}
	w := exec.Command(bin, "worker", "-b", testBrokerURL, "--result-backend", testRedisURL, "-Q", queue,
		"-c", strconv.Itoa(len(benchRenditions)), "-l", "warning",
		"--output-dir", out, "--input-roots", srcDir, "--renditions", strings.Join(renditions, ","))
	w.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	w.Stderr = os.Stderr
	if err := w.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() {
		syscall.Kill(-w.Process.Pid, syscall.SIGTERM)
		w.Wait()
	}()
	time.Sleep(time.Second) // let it connect and consume

	start := time.Now()
	submit := exec.Command(bin, "submit", "-b", testBrokerURL, "-Q", queue, "--follow", src)
	submit.Stdout = io.Discard
	submit.Stderr = os.Stderr
	if err := submit.Run(); err != nil {
		b.Fatalf("submit --follow: %v", err)
	}
	return time.Since(start)
}

func copyFile(from, to string) error {
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(to)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
