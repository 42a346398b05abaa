//go:build integration

package main

// Benchmarks run by `make bench`. Every comparison runs both sides in the
// same run, on the same broker and Redis, with the same settings on both
// command lines: the same number of tasks, the same concurrency (-c) and
// the same prefetch multiplier, each worker started the same way (its own
// process group, warmed up, then paused while its queue fills).
//
//   - BenchmarkNoopTasks: celery.accumulate tasks with results in Redis
//     through the Go worker, through the floor (cmd/vhg-bench-floor: only
//     consume, SETEX+PUBLISH a SUCCESS, ack) and through a Python Celery
//     worker (prefork): tasks/s and CPU microseconds per task (user+system
//     CPU of the worker's process group while it drains the queue), idle
//     RSS, and what RabbitMQ and Redis spent per task.
//   - BenchmarkChainHops: a chain of immutable celery.accumulate steps
//     applied by a Python client, on a Go and on a Python worker: time per
//     hop.
//   - BenchmarkEncodeWorkflow (bench_workflow_test.go).
//
// Settings (environment): BENCH_TASKS (no-op tasks per side, default
// 20000), BENCH_CONCURRENCY (-c of every worker, default 8),
// BENCH_PREFETCH (--prefetch-multiplier of every worker, default 4),
// BENCH_CHAIN_STEPS (default 200), BENCH_ROUNDS (rounds of the chain and
// workflow comparisons, best of each counts; default 2), BENCH_GO_FLAGS
// (more flags for the Go worker).

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	redigo "github.com/gomodule/redigo/redis"
	"github.com/vhg/vhg-worker/worker"
	"github.com/vhg/vhg-worker/worker/rabbitmq"
)

// benchRedisURL is a database of its own, flushed before each run, so that
// counting its keys counts the results.
const benchRedisURL = "redis://127.0.0.1:6379/7"

// benchSettings are what both sides of a comparison are given.
type benchSettings struct {
	tasks       int // no-op tasks per side
	concurrency int // -c
	prefetch    int // --prefetch-multiplier
	chainSteps  int
	rounds      int
}

func readBenchSettings(b *testing.B) benchSettings {
	return benchSettings{
		tasks:       benchEnvInt(b, "BENCH_TASKS", 20000),
		concurrency: benchEnvInt(b, "BENCH_CONCURRENCY", 8),
		prefetch:    benchEnvInt(b, "BENCH_PREFETCH", 4),
		chainSteps:  benchEnvInt(b, "BENCH_CHAIN_STEPS", 200),
		rounds:      benchEnvInt(b, "BENCH_ROUNDS", 2),
	}
}

func benchEnvInt(b *testing.B, name string, def int) int {
	s := os.Getenv(name)
	if s == "" {
		return def
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 {
		b.Fatalf("%s=%q: want a positive integer", name, s)
	}
	return n
}

// benchSide starts one side of a comparison on a queue.
type benchSide struct {
	name  string
	start func(queue string) *exec.Cmd
}

// goWorkerSide runs the worker binary with the settings; extra flags follow.
func goWorkerSide(bin string, s benchSettings, extra ...string) benchSide {
	return benchSide{"go", func(queue string) *exec.Cmd {
		args := []string{"worker", "-b", testBrokerURL, "--result-backend", benchRedisURL, "-Q", queue, "-l", "warning",
			"-c", strconv.Itoa(s.concurrency), "--prefetch-multiplier", strconv.Itoa(s.prefetch),
			"--without-mingle", "--without-gossip", "--without-heartbeat"}
		args = append(args, extra...)
		return exec.Command(bin, append(args, strings.Fields(os.Getenv("BENCH_GO_FLAGS"))...)...)
	}}
}

// pythonWorkerSide runs a Celery worker (prefork) of the app module in
// testdata/python with the same settings as goWorkerSide.
func pythonWorkerSide(app string, s benchSettings, env ...string) benchSide {
	return benchSide{"python", func(queue string) *exec.Cmd {
		cmd := exec.Command(pythonBin, "-m", "celery", "-A", app, "worker", "-P", "prefork", "-Q", queue, "-l", "warning",
			"-c", strconv.Itoa(s.concurrency), "--prefetch-multiplier", strconv.Itoa(s.prefetch),
			"--without-mingle", "--without-gossip", "--without-heartbeat")
		cmd.Dir = pythonDir
		cmd.Env = append(os.Environ(), append([]string{"CELERY_BROKER_URL=" + testBrokerURL,
			"CELERY_RESULT_BACKEND=" + benchRedisURL, "INTEROP_QUEUE=" + queue}, env...)...)
		return cmd
	}}
}

// floorSide runs cmd/vhg-bench-floor with the same settings.
func floorSide(bin string, s benchSettings) benchSide {
	return benchSide{"floor", func(queue string) *exec.Cmd {
		return exec.Command(bin, "-b", testBrokerURL, "--result-backend", benchRedisURL, "-Q", queue,
			"-c", strconv.Itoa(s.concurrency), "--prefetch-multiplier", strconv.Itoa(s.prefetch))
	}}
}

// buildBenchBinaries builds the worker and the floor into a temporary
// directory.
func buildBenchBinaries(b *testing.B) (workerBin, floorBin string) {
	dir := b.TempDir()
	workerBin, floorBin = filepath.Join(dir, "vhg-worker"), filepath.Join(dir, "vhg-bench-floor")
	for bin, pkg := range map[string]string{workerBin: ".", floorBin: "../vhg-bench-floor"} {
		if out, err := exec.Command("go", "build", "-o", bin, pkg).CombinedOutput(); err != nil {
			b.Fatalf("go build %s: %v\n%s", pkg, err, out)
		}
	}
	return workerBin, floorBin
}

func BenchmarkNoopTasks(b *testing.B) {
	s := readBenchSettings(b)
	workerBin, floorBin := buildBenchBinaries(b)
	sides := []benchSide{goWorkerSide(workerBin, s), floorSide(floorBin, s), pythonWorkerSide("interop", s)}
	results := map[string]benchResult{}
	for _, side := range sides {
		b.Run(side.name, func(b *testing.B) {
			for range b.N {
				r := runNoopBench(b, s, side)
				results[side.name] = r
				b.ReportMetric(r.rate, "tasks/s")
				b.ReportMetric(r.cpuPerTask, "cpu-us/task")
				b.ReportMetric(r.idleRSSMB, "idle-RSS-MB")
				if r.servicesRestarted {
					b.Logf("RabbitMQ or Redis restarted during the drain of %s: its figures are not comparable", side.name)
				} else {
					b.ReportMetric(r.servicesCPUPerTask, "broker+redis-cpu-us/task")
				}
			}
		})
	}
	g, f, p := results["go"], results["floor"], results["python"]
	if g.rate == 0 || f.rate == 0 || p.rate == 0 {
		return
	}
	fmt.Printf("\nno-op tasks (celery.accumulate, results in Redis), %d tasks per side, -c %d, --prefetch-multiplier %d, this machine (%d CPUs):\n",
		s.tasks, s.concurrency, s.prefetch, numCPU())
	fmt.Printf("  %-28s %10s %14s %12s %24s\n", "side", "tasks/s", "CPU us/task", "idle RSS", "RabbitMQ+Redis us/task")
	for _, row := range []struct {
		name string
		r    benchResult
	}{{"go worker", g}, {"floor (consume, store, ack)", f}, {"python prefork", p}} {
		services := fmt.Sprintf("%.1f", row.r.servicesCPUPerTask)
		if row.r.servicesRestarted {
			services = "restarted: n/a"
		}
		fmt.Printf("  %-28s %10.0f %14.1f %9.1f MB %24s\n", row.name, row.r.rate, row.r.cpuPerTask, row.r.idleRSSMB, services)
	}
	fmt.Printf("  go/floor rate:        %5.2fx   target >= 0.80x  %s\n", g.rate/f.rate, verdict(g.rate/f.rate >= 0.8))
	fmt.Printf("  go/floor CPU per task: %5.2fx   target <= 2.00x  %s\n", g.cpuPerTask/f.cpuPerTask, verdict(g.cpuPerTask/f.cpuPerTask <= 2))
	fmt.Printf("  go/python rate:       %5.2fx   go/python CPU per task: %.2fx\n", g.rate/p.rate, g.cpuPerTask/p.cpuPerTask)
	fmt.Printf("  go idle RSS:          %5.1f MB  target < 25 MB   %s\n\n", g.idleRSSMB, verdict(g.idleRSSMB < 25))
}

// verdict says whether a target is met.
func verdict(ok bool) string {
	if ok {
		return "met"
	}
	return "NOT MET"
}

func BenchmarkChainHops(b *testing.B) {
	s := readBenchSettings(b)
	workerBin, _ := buildBenchBinaries(b)
	sides := []benchSide{goWorkerSide(workerBin, s), pythonWorkerSide("interop", s)}
	best := map[string]time.Duration{}
	var rounds []string
	b.Run("go-vs-python", func(b *testing.B) {
		for range b.N {
			clear(best)
			rounds = nil
			for range s.rounds {
				var round []string
				for _, side := range sides {
					d := runChainBench(b, s, side)
					round = append(round, fmt.Sprintf("%.2f", perHop(d, s.chainSteps)))
					if best[side.name] == 0 || d < best[side.name] {
						best[side.name] = d
					}
				}
				rounds = append(rounds, strings.Join(round, "/"))
			}
			b.ReportMetric(perHop(best["go"], s.chainSteps), "go-ms/hop")
			b.ReportMetric(perHop(best["python"], s.chainSteps), "python-ms/hop")
		}
	})
	g, p := perHop(best["go"], s.chainSteps), perHop(best["python"], s.chainSteps)
	if g == 0 || p == 0 {
		return
	}
	fmt.Printf("\nchain of %d immutable celery.accumulate steps from a Python client, results in Redis, -c %d, --prefetch-multiplier %d:\n",
		s.chainSteps, s.concurrency, s.prefetch)
	fmt.Printf("  rounds (go/python ms per hop): %s\n", strings.Join(rounds, ", "))
	fmt.Printf("  go worker, best:     %6.2f ms per hop   target <= 1 ms     %s\n", g, verdict(g <= 1))
	fmt.Printf("  python prefork, best: %5.2f ms per hop\n", p)
	fmt.Printf("  go/python:           %6.2fx             target <= 0.25x   %s\n\n", g/p, verdict(g/p <= 0.25))
}

func perHop(d time.Duration, steps int) float64 {
	return d.Seconds() * 1000 / float64(steps)
}

// runChainBench starts a side, warms it up, and has the Python client
// apply a chain of s.chainSteps steps; it returns the client's time from
// apply_async to the last result.
func runChainBench(b *testing.B, s benchSettings, side benchSide) time.Duration {
	b.StopTimer()
	w := startBenchWorker(b, side)
	defer w.stop()
	w.warmUp(b, s)
	client := exec.Command(pythonBin, "bench.py", "chain", strconv.Itoa(s.chainSteps))
	client.Dir = pythonDir
	client.Env = append(os.Environ(), "CELERY_BROKER_URL="+testBrokerURL, "CELERY_RESULT_BACKEND="+benchRedisURL, "INTEROP_QUEUE="+w.queue)
	client.Stderr = os.Stderr
	out, err := client.Output()
	if err != nil {
		b.Fatalf("bench.py chain on %s: %v\n%s", side.name, err, w.log())
	}
	var got struct{ Seconds float64 }
	if err := json.Unmarshal(out, &got); err != nil {
		b.Fatalf("bench.py chain: %v: %s", err, out)
	}
	return time.Duration(got.Seconds * float64(time.Second))
}

type benchResult struct {
	rate       float64 // tasks per second while draining
	cpuPerTask float64 // microseconds
	// servicesCPUPerTask is what RabbitMQ and Redis spent per task during
	// the drain, in microseconds: on a small machine they share the CPUs
	// with the worker, and bound the rate whichever worker runs.
	servicesCPUPerTask float64
	servicesRestarted  bool    // RabbitMQ or Redis restarted during the drain
	idleRSSMB          float64 // resident memory of the whole process group when idle
}

// benchWorker is a running side of a comparison, in its own process group.
type benchWorker struct {
	name   string
	queue  string
	cmd    *exec.Cmd
	output *outputTail
	exited chan struct{} // closed once the process has exited
	rc     redigo.Conn
	broker *rabbitmq.Broker
	client *worker.Client
}

// outputTail keeps the last max bytes of a process's output.
type outputTail struct {
	mu  sync.Mutex
	max int
	buf []byte
}

func (t *outputTail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if extra := len(t.buf) - t.max; extra > 0 {
		t.buf = append(t.buf[:0], t.buf[extra:]...)
	}
	return len(p), nil
}

func (t *outputTail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.buf)
}

// startBenchWorker flushes the bench's Redis database, starts the side on
// a fresh queue and connects a client to that queue.
func startBenchWorker(b *testing.B, side benchSide) *benchWorker {
	w := &benchWorker{name: side.name, queue: "bench-" + side.name + "-" + worker.NewTaskID()[:8], output: &outputTail{max: 8192}}
	var err error
	if w.rc, err = redigo.DialURL(benchRedisURL); err != nil {
		b.Fatalf("redis: %v (run `make setup`)", err)
	}
	if _, err := w.rc.Do("FLUSHDB"); err != nil {
		b.Fatal(err)
	}
	if w.broker, err = rabbitmq.Dial(rabbitmq.Config{URL: testBrokerURL}); err != nil {
		b.Fatalf("rabbitmq: %v (run `make setup`)", err)
	}
	w.client = worker.NewClient(w.broker, worker.ClientConfig{DefaultQueue: w.queue})
	w.cmd = side.start(w.queue)
	w.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	w.cmd.Stdout, w.cmd.Stderr = w.output, w.output
	if err := w.cmd.Start(); err != nil {
		b.Fatal(err)
	}
	w.exited = make(chan struct{})
	go func() { w.cmd.Wait(); close(w.exited) }()
	return w
}

// warmUp runs 2 x concurrency tasks (at least 10), so that start-up, the
// prefork pool and the first connections are not measured, and waits for
// their results.
func (w *benchWorker) warmUp(b *testing.B, s benchSettings) {
	n := max(2*s.concurrency, 10)
	for i := range n {
		if _, err := w.client.SendTask(context.Background(), "celery.accumulate", []any{int64(i)}, nil); err != nil {
			b.Fatal(err)
		}
	}
	w.waitKeys(b, n, time.Minute)
}

func (w *benchWorker) pid() int { return w.cmd.Process.Pid }

func (w *benchWorker) log() string { return w.name + " output:\n" + w.output.String() }

// stop sends SIGTERM to the group, SIGKILL after 20 s, and cleans up.
func (w *benchWorker) stop() {
	syscall.Kill(-w.pid(), syscall.SIGCONT) // in case it is paused
	syscall.Kill(-w.pid(), syscall.SIGTERM)
	select {
	case <-w.exited:
	case <-time.After(20 * time.Second):
		syscall.Kill(-w.pid(), syscall.SIGKILL)
		<-w.exited
	}
	w.broker.Close()
	w.rc.Close()
	deleteQueue(w.queue)
}

// runNoopBench starts a side, warms it up, measures it idle, fills its
// queue with s.tasks accumulate tasks while it is paused, and measures the
// drain.
func runNoopBench(b *testing.B, s benchSettings, side benchSide) benchResult {
	b.StopTimer()
	w := startBenchWorker(b, side)
	defer w.stop()
	w.warmUp(b, s)
	keys0, err := redigo.Int(w.rc.Do("DBSIZE"))
	if err != nil {
		b.Fatal(err)
	}
	time.Sleep(2 * time.Second)
	idle := groupRSS(w.pid())

	// Fill the queue while the worker is paused, so the drain is measured
	// without the publisher in the way.
	syscall.Kill(-w.pid(), syscall.SIGSTOP)
	fillQueue(b, w.queue, s.tasks)
	cpu0, services0 := groupCPU(w.pid()), servicesCPU()
	t0 := time.Now()
	b.StartTimer()
	syscall.Kill(-w.pid(), syscall.SIGCONT)
	w.waitKeys(b, keys0+s.tasks, 10*time.Minute)
	elapsed := time.Since(t0)
	b.StopTimer()
	cpu, services1 := groupCPU(w.pid())-cpu0, servicesCPU()
	return benchResult{
		rate:               float64(s.tasks) / elapsed.Seconds(),
		cpuPerTask:         float64(cpu.Microseconds()) / float64(s.tasks),
		servicesCPUPerTask: float64((services1.cpu - services0.cpu).Microseconds()) / float64(s.tasks),
		servicesRestarted:  services1.pids != services0.pids,
		idleRSSMB:          float64(idle) / (1 << 20),
	}
}

// fillQueue sends n accumulate tasks to queue over several connections at
// once: one publisher waits for each confirm, and a worker held stopped
// for long enough loses its connection to missed heartbeats.
func fillQueue(b *testing.B, queue string, n int) {
	const publishers = 4
	var wg sync.WaitGroup
	errs := make(chan error, publishers)
	for p := range publishers {
		wg.Go(func() {
			broker, err := rabbitmq.Dial(rabbitmq.Config{URL: testBrokerURL})
			if err != nil {
				errs <- err
				return
			}
			defer broker.Close()
			client := worker.NewClient(broker, worker.ClientConfig{DefaultQueue: queue})
			for i := p; i < n; i += publishers {
				if _, err := client.SendTask(context.Background(), "celery.accumulate", []any{int64(i)}, nil); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		b.Fatalf("filling the queue: %v", err)
	}
}

func deleteQueue(name string) {
	if b, err := rabbitmq.Dial(rabbitmq.Config{URL: testBrokerURL}); err == nil {
		b.DeleteQueue(name) // and its guard queue
		b.Close()
	}
}

// waitKeys waits until the bench's Redis database holds n keys.
func (w *benchWorker) waitKeys(b *testing.B, n int, limit time.Duration) {
	deadline := time.Now().Add(limit)
	for {
		got, err := redigo.Int(w.rc.Do("DBSIZE"))
		if err != nil {
			b.Fatal(err)
		}
		if got >= n {
			return
		}
		if time.Now().After(deadline) {
			b.Fatalf("only %d of %d results after %s\n%s", got, n, limit, w.log())
		}
		select {
		case <-w.exited:
			b.Fatalf("%s exited\n%s", w.name, w.log())
		case <-time.After(2 * time.Millisecond):
		}
	}
}

// groupProcs lists the processes of a process group.
func groupProcs(pgid int) []string {
	return procStats(func(_ string, fields []string) bool { return fields[2] == strconv.Itoa(pgid) })
}

// procStats returns "pid field..." for each process whose command name
// and stat fields (those after the name) match.
func procStats(match func(comm string, fields []string) bool) []string {
	entries, _ := os.ReadDir("/proc")
	var stats []string
	for _, e := range entries {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		data, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// The command name is in parentheses; the fields follow.
		s := string(data)
		open, end := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
		if open < 0 || end < open {
			continue
		}
		fields := strings.Fields(s[end+2:])
		if len(fields) > 15 && match(s[open+1:end], fields) {
			stats = append(stats, e.Name()+" "+strings.Join(fields, " "))
		}
	}
	return stats
}

// groupCPU is the user+system CPU time of a process group's processes.
func groupCPU(pgid int) time.Duration {
	return statsCPU(groupProcs(pgid))
}

// servicesUsage is the user+system CPU time of RabbitMQ and Redis on this
// machine (the share of the work that is the same whichever worker runs),
// and the processes it was read from: when they differ between two
// readings, a service restarted in between and the difference means
// nothing.
type servicesUsage struct {
	cpu  time.Duration
	pids string
}

func servicesCPU() servicesUsage {
	stats := procStats(func(comm string, _ []string) bool { return comm == "beam.smp" || comm == "redis-server" })
	pids := make([]string, len(stats))
	for i, line := range stats {
		pids[i], _, _ = strings.Cut(line, " ")
	}
	slices.Sort(pids)
	return servicesUsage{cpu: statsCPU(stats), pids: strings.Join(pids, ",")}
}

// groupCPUWithChildren is groupCPU plus the CPU time of the children the
// group's processes have waited for (ffmpeg runs of a worker).
func groupCPUWithChildren(pgid int) time.Duration {
	return statsCPU(groupProcs(pgid), 16, 17)
}

// statsCPU sums utime and stime (fields 14 and 15 of stat) and any other
// fields given (16 and 17 are cutime and cstime) of each process.
func statsCPU(stats []string, more ...int) time.Duration {
	var ticks int64
	for _, line := range stats {
		f := strings.Fields(line)
		// f[0] is the pid, f[1] stat's field 3.
		for _, field := range append([]int{14, 15}, more...) {
			n, _ := strconv.ParseInt(f[field-2], 10, 64)
			ticks += n
		}
	}
	return time.Duration(ticks) * time.Second / 100 // USER_HZ is 100 on Linux
}

// groupRSS is the resident memory of a process group's processes, in bytes.
func groupRSS(pgid int) int64 {
	var total int64
	for _, line := range groupProcs(pgid) {
		pid := strings.Fields(line)[0]
		data, err := os.ReadFile(filepath.Join("/proc", pid, "status"))
		if err != nil {
			continue
		}
		for _, l := range strings.Split(string(data), "\n") {
			if strings.HasPrefix(l, "VmRSS:") {
				kb, _ := strconv.ParseInt(strings.Fields(l)[1], 10, 64)
				total += kb << 10
			}
		}
	}
	return total
}

func numCPU() int {
	n := 0
	data, _ := os.ReadFile("/proc/cpuinfo")
	for _, l := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(l, "processor") {
			n++
		}
	}
	return n
}
