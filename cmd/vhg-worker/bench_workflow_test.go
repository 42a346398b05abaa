//go:build integration

package main

// BenchmarkEncodeWorkflow (run by `make bench`) times the VHG workflow on
// the same source and ladder, in the same run, three ways:
//
//   - the Go worker binary running every step;
//   - Python Celery workers running the original adaptation.commons tasks
//     with the original commands (testdata/python/original.py);
//   - the one-process optimum: one ffmpeg that decodes the source once and
//     encodes every rendition with the Go worker's settings
//     (ffmpeg.LadderArgs), then the HLS cuts (in parallel) and DASH.
//
// Both workers get the same -c and --prefetch-multiplier on their command
// lines, results in Redis, and each job is sent by the same Python client
// (testdata/python/bench.py workflow): its time runs from sending
// encode_workflow to COMPLETE on the status queue. CPU seconds are those
// of the worker's process group with the ffmpeg processes it waited for
// (or of the optimum's ffmpeg processes). The three alternate for
// BENCH_ROUNDS rounds (default 2) and the best time of each counts. Then
// the PSNR of each side's renditions against the source scaled to the
// rendition's size (ffmpeg's psnr filter, average over Y, U and V) is
// printed beside the times.
//
// Settings (environment): BENCH_CLIP_SECONDS (default 12), BENCH_CLIP_SIZE
// (default 1280x720), BENCH_RENDITIONS (default 144:100,240:200,360:400),
// BENCH_WORKFLOW_CONCURRENCY (-c of both workers, default 2),
// BENCH_WORKFLOW_PREFETCH (--prefetch-multiplier of both, default 1).

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vhg/vhg-worker/ffmpeg"
	"github.com/vhg/vhg-worker/tasks"
)

// workflowResult is one side's run.
type workflowResult struct {
	elapsed time.Duration
	cpu     time.Duration // user+system, ffmpeg included
	encoded []string      // the renditions' MP4s, in the ladder's order
}

func BenchmarkEncodeWorkflow(b *testing.B) {
	s := readBenchSettings(b)
	s.concurrency = benchEnvInt(b, "BENCH_WORKFLOW_CONCURRENCY", 2)
	s.prefetch = benchEnvInt(b, "BENCH_WORKFLOW_PREFETCH", 1)
	seconds := benchEnvInt(b, "BENCH_CLIP_SECONDS", 12)
	size := os.Getenv("BENCH_CLIP_SIZE")
	if size == "" {
		size = "1280x720"
	}
	var width, height int
	if _, err := fmt.Sscanf(size, "%dx%d", &width, &height); err != nil {
		b.Fatalf("BENCH_CLIP_SIZE=%q: want WxH", size)
	}
	ladder := os.Getenv("BENCH_RENDITIONS")
	if ladder == "" {
		ladder = "144:100,240:200,360:400"
	}
	renditions, err := tasks.ParseRenditions(ladder)
	if err != nil {
		b.Fatalf("BENCH_RENDITIONS: %v", err)
	}
	if _, err := os.Stat(filepath.Join(pythonDir, "original.py")); err != nil {
		b.Fatalf("the original tasks are missing (%v): testdata/python/original.py comes with branch mixed-migration", err)
	}

	dir := b.TempDir()
	srcDir := filepath.Join(dir, "in")
	os.MkdirAll(srcDir, 0o755)
	src := filepath.Join(srcDir, "clip.mp4")
	ctx := context.Background()
	gen := ffmpeg.TestPatternArgs(ffmpeg.TestPatternOptions{Output: src, Duration: time.Duration(seconds) * time.Second,
		Width: width, Height: height, Audio: true})
	if err := ffmpeg.Run(ctx, gen, ffmpeg.RunOptions{}); err != nil {
		b.Fatalf("generate the clip: %v", err)
	}
	probe, err := ffmpeg.Probe(ctx, src)
	if err != nil {
		b.Fatal(err)
	}
	video, _ := probe.Video()
	sourceAudio, audio := probe.Audio()
	// The optimum treats the audio as the transcode task does.
	copyAudio := audio && ffmpeg.AudioCopyable(sourceAudio)
	// The renditions' sizes, as compute_target_size gives them.
	sizes := make([][2]int, len(renditions))
	for i, r := range renditions {
		sizes[i] = [2]int{int(float64(r.Height)/float64(video.Height)*float64(video.Width)/2) * 2, r.Height}
	}
	workerBin, _ := buildBenchBinaries(b)
	url := "file://" + src

	goOut, pyOut, optOut := filepath.Join(dir, "go"), filepath.Join(dir, "python"), filepath.Join(dir, "optimum")
	os.MkdirAll(optOut, 0o755)
	goSide := goWorkerSide(workerBin, s, "--output-dir", goOut, "--input-roots", srcDir, "--renditions", ladder)
	pySide := pythonWorkerSide("original", s, "VHG_OUTPUT_DIR="+pyOut, "VHG_RENDITIONS="+ladder)

	best := map[string]workflowResult{}
	var rounds []string
	keep := func(name string, r workflowResult) string {
		if best[name].elapsed == 0 || r.elapsed < best[name].elapsed {
			best[name] = r
		}
		return fmt.Sprintf("%.2f", r.elapsed.Seconds())
	}
	b.Run("optimum-go-python", func(b *testing.B) {
		for range b.N {
			clear(best)
			rounds = nil
			for range s.rounds {
				o := keep("optimum", runOptimum(b, ctx, src, optOut, sizes, renditions, audio, copyAudio))
				g := keep("go", runWorkflowSide(b, s, goSide, goOut, url, sizes))
				p := keep("python", runWorkflowSide(b, s, pySide, pyOut, url, sizes))
				rounds = append(rounds, o+"/"+g+"/"+p)
			}
			b.ReportMetric(best["optimum"].elapsed.Seconds(), "optimum-s")
			b.ReportMetric(best["go"].elapsed.Seconds(), "go-s")
			b.ReportMetric(best["python"].elapsed.Seconds(), "python-s")
		}
	})
	o, g, p := best["optimum"], best["go"], best["python"]
	if o.elapsed == 0 || g.elapsed == 0 || p.elapsed == 0 {
		return
	}
	fmt.Printf("\nencode_workflow, %d s %dx%d H.264+AAC clip, renditions %s, -c %d, --prefetch-multiplier %d, results in Redis, this machine (%d CPUs);\n",
		seconds, width, height, ladder, s.concurrency, s.prefetch, numCPU())
	fmt.Printf("workers: from a Python client's encode_workflow to COMPLETE on the status queue:\n")
	fmt.Printf("  rounds (optimum/go/python s): %s\n", strings.Join(rounds, ", "))
	fmt.Printf("  %-52s %7s %7s\n", "side", "best s", "CPU s")
	for _, row := range []struct {
		name string
		r    workflowResult
	}{
		{"one-process optimum (1 ffmpeg, then HLS and DASH)", o},
		{"go worker", g},
		{"python workers, original commands", p},
	} {
		fmt.Printf("  %-52s %7.2f %7.2f\n", row.name, row.r.elapsed.Seconds(), row.r.cpu.Seconds())
	}
	fmt.Printf("  go/python:  %5.2fx   target <= 0.75x  %s\n", g.elapsed.Seconds()/p.elapsed.Seconds(), verdict(g.elapsed <= p.elapsed*3/4))
	fmt.Printf("  go/optimum: %5.2fx   target <= 1.25x  %s\n", g.elapsed.Seconds()/o.elapsed.Seconds(), verdict(g.elapsed <= o.elapsed*5/4))
	fmt.Printf("  PSNR against the source scaled to the rendition (dB, average of Y, U, V):\n")
	fmt.Printf("  %-36s", "")
	for i, r := range renditions {
		fmt.Printf(" %13s", fmt.Sprintf("%dx%d@%dk", sizes[i][0], sizes[i][1], r.BitrateKbps))
	}
	fmt.Println()
	for _, row := range []struct {
		name string
		r    workflowResult
	}{
		{"go worker", g},
		{"one-process optimum", o},
		{"python, original (100k every one)", p},
	} {
		fmt.Printf("  %-36s", row.name)
		for i, path := range row.r.encoded {
			db, err := psnr(src, path, sizes[i][0], sizes[i][1])
			if err != nil {
				b.Fatalf("PSNR of %s: %v", path, err)
			}
			fmt.Printf(" %13.2f", db)
		}
		fmt.Println()
	}
	fmt.Println()
}

// runWorkflowSide starts a worker, warms it up and has the Python client
// send encode_workflow(url); it returns the client's time to COMPLETE.
func runWorkflowSide(b *testing.B, s benchSettings, side benchSide, out, url string, sizes [][2]int) workflowResult {
	b.StopTimer()
	// Every job writes into a directory of its own under out, kept for the
	// PSNR of the best round.
	w := startBenchWorker(b, side)
	defer w.stop()
	w.warmUp(b, s)
	cpu0 := groupCPUWithChildren(w.pid())
	client := exec.Command(pythonBin, "bench.py", "workflow", url)
	client.Dir = pythonDir
	client.Env = append(os.Environ(), "CELERY_BROKER_URL="+testBrokerURL, "CELERY_RESULT_BACKEND="+benchRedisURL, "INTEROP_QUEUE="+w.queue)
	client.Stderr = os.Stderr
	stdout, err := client.Output()
	if err != nil {
		b.Fatalf("bench.py workflow on %s: %v\n%s", side.name, err, w.log())
	}
	cpu := groupCPUWithChildren(w.pid()) - cpu0
	var got struct {
		Seconds  float64
		Status   string
		Statuses []string
		Result   struct{ HLS string }
	}
	if err := json.Unmarshal(stdout, &got); err != nil {
		b.Fatalf("bench.py workflow: %v: %s", err, stdout)
	}
	if got.Status != "COMPLETE" {
		b.Fatalf("%s: workflow ended %q (statuses %v)\n%s", side.name, got.Status, got.Statuses, w.log())
	}
	// The master playlist is <folder_out>/hls/playlist.m3u8.
	folder := filepath.Dir(filepath.Dir(got.Result.HLS))
	encoded := make([]string, len(sizes))
	for i, sz := range sizes {
		encoded[i] = filepath.Join(folder, "encoding", fmt.Sprintf("%dx%d.mp4", sz[0], sz[1]))
	}
	return workflowResult{elapsed: time.Duration(got.Seconds * float64(time.Second)), cpu: cpu, encoded: encoded}
}

// runOptimum runs the one-process optimum: LadderArgs, then every HLS cut
// at once, then DASH.
func runOptimum(b *testing.B, ctx context.Context, src, out string, sizes [][2]int, renditions []tasks.Rendition, audio, copyAudio bool) workflowResult {
	b.StopTimer()
	// A directory per run, kept for the PSNR of the best round.
	out, err := os.MkdirTemp(out, "run-")
	if err != nil {
		b.Fatal(err)
	}
	os.MkdirAll(filepath.Join(out, "encoding"), 0o755)
	os.MkdirAll(filepath.Join(out, "dash"), 0o755)
	ladder := ffmpeg.LadderOptions{Input: src, SegmentSeconds: 4, Audio: audio, CopyAudio: copyAudio}
	encoded := make([]string, len(renditions))
	for i, r := range renditions {
		encoded[i] = filepath.Join(out, "encoding", fmt.Sprintf("%dx%d.mp4", sizes[i][0], sizes[i][1]))
		ladder.Renditions = append(ladder.Renditions, ffmpeg.Rendition{Output: encoded[i], Width: sizes[i][0], Height: sizes[i][1], BitrateKbps: r.BitrateKbps})
		os.MkdirAll(filepath.Join(out, "hls", fmt.Sprintf("%dx%d", sizes[i][0], sizes[i][1])), 0o755)
	}
	cpu0 := childrenCPU()
	start := time.Now()
	if err := ffmpeg.Run(ctx, ffmpeg.LadderArgs(ladder), ffmpeg.RunOptions{}); err != nil {
		b.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, len(renditions))
	for i, sz := range sizes {
		hls := filepath.Join(out, "hls", fmt.Sprintf("%dx%d", sz[0], sz[1]))
		wg.Go(func() {
			errs <- ffmpeg.Run(ctx, ffmpeg.HLSArgs(ffmpeg.HLSOptions{Input: encoded[i], PlaylistPath: filepath.Join(hls, "playlist.m3u8"),
				SegmentPattern: filepath.Join(hls, "chunks_name%03d.ts"), SegmentSeconds: 4}), ffmpeg.RunOptions{})
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			b.Fatal(err)
		}
	}
	argv := ffmpeg.DASHArgs(ffmpeg.DASHOptions{Inputs: encoded, MPDPath: filepath.Join(out, "dash", "playlist.mpd"), SegmentSeconds: 4, Audio: audio})
	if err := ffmpeg.Run(ctx, argv, ffmpeg.RunOptions{}); err != nil {
		b.Fatal(err)
	}
	return workflowResult{elapsed: time.Since(start), cpu: childrenCPU() - cpu0, encoded: encoded}
}

// childrenCPU is the user+system CPU of this process's children that have
// been waited for.
func childrenCPU() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_CHILDREN, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

var psnrAverage = regexp.MustCompile(`PSNR y:\S+ u:\S+ v:\S+ average:(\S+)`)

// psnr is the average PSNR of a rendition against the source scaled to
// its size with ffmpeg's default scaler, the one the renditions use.
func psnr(src, rendition string, width, height int) (float64, error) {
	out, err := exec.Command("ffmpeg", "-hide_banner", "-nostdin", "-i", "file:"+rendition, "-i", "file:"+src,
		"-lavfi", fmt.Sprintf("[1:v]scale=%d:%d[ref];[0:v][ref]psnr", width, height), "-f", "null", "-").CombinedOutput()
	if err != nil {
		return 0, fmt.Errorf("%v: %s", err, out)
	}
	m := psnrAverage.FindSubmatch(out)
	if m == nil {
		return 0, fmt.Errorf("no PSNR in ffmpeg's output: %s", out)
	}
	return strconv.ParseFloat(string(m[1]), 64)
}
