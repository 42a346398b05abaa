//go:build integration

package main

// Benchmarks run by `make bench`: the same no-op tasks (celery.accumulate,
// results to Redis) through the Go worker binary and through a Python
// Celery worker (prefork, 2 processes), on the same broker in the same run.
// They report tasks/s and CPU microseconds per task (user+system CPU of the
// worker's whole process group while it drains the queue), and the Go
// worker's idle RSS.

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
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

func BenchmarkNoopTasks(b *testing.B) {
	tasks := 20000
	if s := os.Getenv("BENCH_TASKS"); s != "" {
		tasks, _ = strconv.Atoi(s)
	}
	bin := filepath.Join(b.TempDir(), "vhg-worker")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		b.Fatalf("go build: %v\n%s", err, out)
	}
	results := map[string]benchResult{}
	for _, w := range []struct {
		name  string
		tasks int
		start func(queue string) *exec.Cmd
	}{
		{"go", tasks, func(queue string) *exec.Cmd {
			return exec.Command(bin, append([]string{"worker", "-b", testBrokerURL, "--result-backend", benchRedisURL, "-Q", queue, "-l", "warning"}, strings.Fields(os.Getenv("BENCH_GO_FLAGS"))...)...)
		}},
		{"python-prefork-c2", tasks / 4, func(queue string) *exec.Cmd {
			cmd := exec.Command(pythonBin, "-m", "celery", "-A", "interop", "worker", "-P", "prefork", "-c", "2",
				"-Q", queue, "-l", "warning", "--without-mingle", "--without-gossip", "--without-heartbeat")
			cmd.Dir = pythonDir
			cmd.Env = append(os.Environ(), "CELERY_BROKER_URL="+testBrokerURL, "CELERY_RESULT_BACKEND="+benchRedisURL, "INTEROP_QUEUE="+queue)
			return cmd
		}},
	} {
		b.Run(w.name, func(b *testing.B) {
			for range b.N {
				r := runNoopBench(b, w.tasks, w.start)
				results[w.name] = r
				b.ReportMetric(r.rate, "tasks/s")
				b.ReportMetric(r.cpuPerTask, "cpu-us/task")
				b.ReportMetric(r.idleRSSMB, "idle-RSS-MB")
				b.ReportMetric(r.servicesCPUPerTask, "broker+redis-cpu-us/task")
			}
		})
	}
	g, p := results["go"], results["python-prefork-c2"]
	if p.rate > 0 {
		fmt.Printf("\nno-op tasks (celery.accumulate, results in Redis), same broker, this machine (%d CPUs):\n", numCPU())
		fmt.Printf("  %-20s %10s %14s %12s %24s\n", "worker", "tasks/s", "CPU us/task", "idle RSS", "RabbitMQ+Redis us/task")
		fmt.Printf("  %-20s %10.0f %14.1f %9.1f MB %24.1f\n", "go (default -c)", g.rate, g.cpuPerTask, g.idleRSSMB, g.servicesCPUPerTask)
		fmt.Printf("  %-20s %10.0f %14.1f %9.1f MB %24.1f\n", "python prefork -c 2", p.rate, p.cpuPerTask, p.idleRSSMB, p.servicesCPUPerTask)
		fmt.Printf("  go/python rate: %.1fx   targets: >= 6x, <= 120 CPU us/task, idle RSS <= 25 MB\n\n", g.rate/p.rate)
	}
}

type benchResult struct {
	rate       float64 // tasks per second while draining
	cpuPerTask float64 // microseconds
	// servicesCPUPerTask is what RabbitMQ and Redis spent per task during
	// the drain, in microseconds: on a small machine they share the CPUs
	// with the worker, and bound the rate whichever worker runs.
	servicesCPUPerTask float64
	idleRSSMB          float64 // resident memory of the whole process group when idle
}

// runNoopBench starts a worker, measures it idle, fills its queue with n
// accumulate tasks, and measures the drain.
func runNoopBench(b *testing.B, n int, start func(queue string) *exec.Cmd) benchResult {
	b.StopTimer()
	queue := "bench-" + worker.NewTaskID()[:8]
	rc, err := redigo.DialURL(benchRedisURL)
	if err != nil {
		b.Fatalf("redis: %v (run `make setup`)", err)
	}
	defer rc.Close()
	if _, err := rc.Do("FLUSHDB"); err != nil {
		b.Fatal(err)
	}
	broker, err := rabbitmq.Dial(rabbitmq.Config{URL: testBrokerURL})
	if err != nil {
		b.Fatalf("rabbitmq: %v (run `make setup`)", err)
	}
	defer broker.Close()
	defer deleteQueue(queue)

	cmd := start(queue)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-done
		}
	}()

	// Warm up with one task, so that start-up is not measured, then let it idle.
	client := worker.NewClient(broker, worker.ClientConfig{DefaultQueue: queue})
	ctx := context.Background()
	if _, err := client.SendTask(ctx, "celery.accumulate", []any{int64(0)}, nil); err != nil {
		b.Fatal(err)
	}
	waitKeys(b, rc, 1, time.Minute)
	time.Sleep(2 * time.Second)
	idle := groupRSS(cmd.Process.Pid)

	// Fill the queue while the worker is paused, so the drain is measured
	// without the publisher in the way.
	syscall.Kill(-cmd.Process.Pid, syscall.SIGSTOP)
	for i := range n {
		if _, err := client.SendTask(ctx, "celery.accumulate", []any{int64(i)}, nil); err != nil {
			syscall.Kill(-cmd.Process.Pid, syscall.SIGCONT)
			b.Fatal(err)
		}
	}
	cpu0, services0 := groupCPU(cmd.Process.Pid), servicesCPU()
	t0 := time.Now()
	b.StartTimer()
	syscall.Kill(-cmd.Process.Pid, syscall.SIGCONT)
	waitKeys(b, rc, n+1, 10*time.Minute)
	elapsed := time.Since(t0)
	b.StopTimer()
	cpu, services := groupCPU(cmd.Process.Pid)-cpu0, servicesCPU()-services0
	return benchResult{
		rate:               float64(n) / elapsed.Seconds(),
		cpuPerTask:         float64(cpu.Microseconds()) / float64(n),
		servicesCPUPerTask: float64(services.Microseconds()) / float64(n),
		idleRSSMB:          float64(idle) / (1 << 20),
	}
}

func deleteQueue(name string) {
	if b, err := rabbitmq.Dial(rabbitmq.Config{URL: testBrokerURL}); err == nil {
		b.DeleteQueue(name)
		b.Close()
	}
}

func waitKeys(b *testing.B, rc redigo.Conn, n int, limit time.Duration) {
	deadline := time.Now().Add(limit)
	for {
		got, err := redigo.Int(rc.Do("DBSIZE"))
		if err != nil {
			b.Fatal(err)
		}
		if got >= n {
			return
		}
		if time.Now().After(deadline) {
			b.Fatalf("only %d of %d results after %s", got, n, limit)
		}
		time.Sleep(2 * time.Millisecond)
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
		if len(fields) > 13 && match(s[open+1:end], fields) {
			stats = append(stats, e.Name()+" "+strings.Join(fields, " "))
		}
	}
	return stats
}

// groupCPU is the user+system CPU time of a process group's processes.
func groupCPU(pgid int) time.Duration {
	return statsCPU(groupProcs(pgid))
}

// servicesCPU is the user+system CPU time of RabbitMQ and Redis on this
// machine: the share of the work that is the same whichever worker runs.
func servicesCPU() time.Duration {
	return statsCPU(procStats(func(comm string, _ []string) bool { return comm == "beam.smp" || comm == "redis-server" }))
}

func statsCPU(stats []string) time.Duration {
	var ticks int64
	for _, line := range stats {
		f := strings.Fields(line)
		// f[0] is the pid; utime and stime are fields 14 and 15 of stat.
		ut, _ := strconv.ParseInt(f[12], 10, 64)
		st, _ := strconv.ParseInt(f[13], 10, 64)
		ticks += ut + st
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
