//go:build integration

package main

// Mixed-deployment tests: a Python Celery worker running the original
// adaptation.commons tasks (testdata/python/original.py) and a Go worker
// consume the same queue, as during a host-by-host migration, and any step
// of a workflow lands on either.

import (
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/sirupsen/logrus"
	"github.com/vhg/vhg-worker/ffmpeg"
	"github.com/vhg/vhg-worker/protocol"
	"github.com/vhg/vhg-worker/tasks"
	"github.com/vhg/vhg-worker/worker"
	"github.com/vhg/vhg-worker/worker/rabbitmq"
	"github.com/vhg/vhg-worker/worker/redis"
)

// mixedRenditions is the ladder of both kinds of worker in these tests.
const mixedRenditions = "144:100,240:200"

// stepLog records which adaptation.commons steps a worker ran, by task id.
type stepLog struct {
	mu     sync.Mutex
	ran    map[string]string // task id -> task name
	failed map[string]string // task id -> task name, for steps that failed
	// unregistered are the "Received unregistered task" lines of a
	// Python worker: a Go-only task published on its queue.
	unregistered []string
}

func newStepLog() *stepLog {
	return &stepLog{ran: map[string]string{}, failed: map[string]string{}}
}

func (l *stepLog) record(id, name string, failed bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.ran[id] = name
	if failed {
		l.failed[id] = name
	}
}

// ranID reports whether this worker ran task id.
func (l *stepLog) ranID(id string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	_, ok := l.ran[id]
	return ok
}

// counts returns the number of steps run, by short task name.
func (l *stepLog) counts() map[string]int {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := map[string]int{}
	for _, name := range l.ran {
		out[strings.TrimPrefix(name, "adaptation.commons.")]++
	}
	return out
}

func (l *stepLog) total() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.ran)
}

// figure renders counts as "name=n, ..." in name order.
func figure(counts map[string]int) string {
	names := make([]string, 0, len(counts))
	for n := range counts {
		names = append(names, n)
	}
	sort.Strings(names)
	parts := make([]string, len(names))
	for i, n := range names {
		parts[i] = n + "=" + strconv.Itoa(counts[n])
	}
	return strings.Join(parts, ", ")
}

// celeryTaskLine matches the worker log lines of a finished task:
// "Task NAME[ID] succeeded in ..." and "Task NAME[ID] raised unexpected: ...".
var celeryTaskLine = regexp.MustCompile(`Task (adaptation\.commons\.[a-z_]+)\[([0-9a-f-]{36})\] (succeeded in|raised unexpected)`)

// startOriginalWorker runs testdata/python/original.py in a real Celery
// worker (prefork, 2 processes) on queues, writing under outputDir, and
// returns the log of the steps it ran. It stops when the test ends.
func startOriginalWorker(t *testing.T, queues []string, node, outputDir string, env ...string) *stepLog {
	t.Helper()
	steps := newStepLog()
	startCeleryWorker(t, celeryWorker{app: "original", queues: queues, node: node, args: []string{"-c", "2", "-E"},
		env: append([]string{"INTEROP_QUEUE=" + queues[0], "VHG_OUTPUT_DIR=" + outputDir,
			"VHG_RENDITIONS=" + mixedRenditions, "VHG_PRESET=ultrafast"}, env...),
		onLine: func(line string) {
			if m := celeryTaskLine.FindStringSubmatch(line); m != nil {
				steps.record(m[2], m[1], m[3] == "raised unexpected")
			}
			if strings.Contains(line, "Received unregistered task") {
				steps.mu.Lock()
				steps.unregistered = append(steps.unregistered, line)
				steps.mu.Unlock()
			}
		}})
	return steps
}

// startMixedGoWorker runs the pipeline in-process on queues (the first
// is where its workflows' steps go) plus their failure queues, with the
// Redis backend the Python worker uses, and returns the log of the steps
// it ran.
func startMixedGoWorker(t *testing.T, queues []string, node string, deps tasks.Deps) *stepLog {
	t.Helper()
	steps := newStepLog()
	log := logrus.New()
	log.SetLevel(logrus.WarnLevel)
	log.SetOutput(testWriter{t})
	broker, err := rabbitmq.Dial(rabbitmq.Config{URL: testBrokerURL, Log: log})
	if err != nil {
		t.Fatalf("connect to RabbitMQ: %v (run `make setup`)", err)
	}
	backend, err := redis.New(context.Background(), redis.Config{URL: testRedisURL})
	if err != nil {
		t.Fatalf("connect to Redis: %v (run `make setup`)", err)
	}
	deps.Status = broker.AMQPBackend(0)
	deps.FailureQueue = tasks.FailureQueue(queues[0])
	mux := worker.NewServeMux()
	pipeline := registerTasks(mux, deps)
	mux.Use(func(next worker.Handler) worker.Handler {
		return worker.HandlerFunc(func(ctx context.Context, tk *worker.Task) (any, error) {
			res, err := next.ServeTask(ctx, tk)
			if strings.HasPrefix(tk.Name(), "adaptation.commons.") {
				steps.record(tk.ID(), tk.Name(), err != nil)
			}
			return res, err
		})
	})
	srv := worker.NewServer(worker.Config{Queues: tasks.WithFailureQueues(queues), Concurrency: 2, NodeName: node, ShutdownTimeout: 5 * time.Second},
		broker, backend, mux, log)
	srv.Observe(pipeline.RevokedStatus(log))
	ctx, cancel := context.WithCancel(context.Background())
	events := "vhg.python-failures." + queues[0]
	if err := watchPythonFailures(ctx, pyFailuresConfig{URL: testBrokerURL, Queue: events, Status: deps.Status, Log: log}); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("go worker: %v", err)
		}
		broker.Close()
		backend.Close()
		deleteQueue(events)
	})
	return steps
}

// serveSources serves dir over HTTP; /vanishing.mp4 is clip.mp4 for
// ffprobe (what encode_workflow probes with) and a 404 for every other
// client (what download_file fetches with): a source that disappears
// between the two.
func serveSources(t *testing.T, dir string) *httptest.Server {
	t.Helper()
	files := http.FileServer(http.Dir(dir))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/vanishing.mp4" {
			if !strings.Contains(r.UserAgent(), "Lavf") {
				http.NotFound(w, r)
				return
			}
			r.URL.Path = "/clip.mp4"
		}
		files.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv
}

// awaitStatus reads the status queue of rootID until COMPLETE or FAILURE.
// The deadline only keeps a broken run from hanging the suite.
func awaitStatus(rootID string) ([]protocol.ResultMeta, error) {
	conn, deliveries, err := consumeStatus(testBrokerURL, rootID)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	var statuses []protocol.ResultMeta
	deadline := time.After(5 * time.Minute)
	for {
		select {
		case d, ok := <-deliveries:
			if !ok {
				return statuses, errors.New("status queue consumer closed")
			}
			meta, err := protocol.ParseResultMeta(d.Body)
			if err != nil {
				return statuses, fmt.Errorf("status message %s: %w", d.Body, err)
			}
			if meta.TaskID != rootID {
				return statuses, fmt.Errorf("status for %s on the queue of %s", meta.TaskID, rootID)
			}
			statuses = append(statuses, meta)
			if meta.Status == tasks.StateComplete || meta.Status == protocol.StateFailure {
				return statuses, nil
			}
		case <-deadline:
			return statuses, fmt.Errorf("no COMPLETE or FAILURE for %s; got %d statuses", rootID, len(statuses))
		}
	}
}

// checkComplete checks the statuses of a finished workflow: one PARTIAL
// per rendition then COMPLETE, a valid master playlist listing every
// rendition once with variant playlists ffprobe reads, and an MPD with
// every rendition.
func checkComplete(statuses []protocol.ResultMeta, dims []string) error {
	if len(statuses) == 0 {
		return errors.New("no status")
	}
	last := statuses[len(statuses)-1]
	if last.Status != tasks.StateComplete {
		return fmt.Errorf("ended with %s: %v", last.Status, last.Result)
	}
	partial := 0
	for _, m := range statuses {
		if m.Status == tasks.StatePartial {
			partial++
		}
	}
	if partial != len(dims) {
		return fmt.Errorf("%d PARTIAL, want %d", partial, len(dims))
	}
	r, _ := last.Result.(map[string]any)
	master, _ := r["hls"].(string)
	mpdPath, _ := r["dash"].(string)
	if err := checkMaster(master, dims); err != nil {
		return err
	}
	data, err := os.ReadFile(mpdPath)
	if err != nil {
		return err
	}
	var m mpd
	if err := xml.Unmarshal(data, &m); err != nil {
		return fmt.Errorf("MPD %s: %w", mpdPath, err)
	}
	var videos []string
	audio := false
	for _, p := range m.Periods {
		for _, set := range p.AdaptationSets {
			for _, rep := range set.Representations {
				switch set.ContentType {
				case "video":
					videos = append(videos, strconv.Itoa(rep.Width)+"x"+strconv.Itoa(rep.Height))
				case "audio":
					audio = true
				}
			}
		}
	}
	sort.Strings(videos)
	want := slices.Clone(dims)
	sort.Strings(want)
	if !slices.Equal(videos, want) || !audio {
		return fmt.Errorf("MPD has video %v and audio %v, want video %v and audio", videos, audio, want)
	}
	return nil
}

// checkMaster checks that the master playlist at path is valid HLS (RFC
// 8216 §4.3.4): #EXTM3U first; every #EXT-X-STREAM-INF with BANDWIDTH and
// RESOLUTION=WxH, followed by the URI of a variant playlist that ffprobe
// reads at that size; each rendition once; no media playlist tag.
func checkMaster(path string, dims []string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	text := string(data)
	lines := strings.Split(strings.TrimRight(text, "\n"), "\n")
	if len(lines) == 0 || lines[0] != "#EXTM3U" || !strings.HasSuffix(text, "\n") {
		return fmt.Errorf("master %s does not start with #EXTM3U or end with a newline:\n%s", path, text)
	}
	resolution := regexp.MustCompile(`(?:^|,)RESOLUTION=([0-9]+x[0-9]+)(?:,|$)`)
	listed := map[string]int{}
	for i := 1; i < len(lines); i++ {
		line := lines[i]
		switch {
		case strings.HasPrefix(line, "#EXT-X-STREAM-INF:"):
			attrs := strings.TrimPrefix(line, "#EXT-X-STREAM-INF:")
			res := resolution.FindStringSubmatch(attrs)
			if res == nil || !strings.Contains(attrs, "BANDWIDTH=") {
				return fmt.Errorf("master %s: bad entry %q:\n%s", path, line, text)
			}
			if i+1 >= len(lines) || strings.HasPrefix(lines[i+1], "#") || lines[i+1] == "" {
				return fmt.Errorf("master %s: entry %q has no URI line:\n%s", path, line, text)
			}
			i++
			uri := lines[i]
			probe, err := ffmpeg.ProbeFormats(context.Background(), filepath.Join(filepath.Dir(path), uri), []string{"hls", "mpegts"})
			if err != nil {
				return fmt.Errorf("master %s: variant %s: %w", path, uri, err)
			}
			v, ok := probe.Video()
			if !ok || strconv.Itoa(v.Width)+"x"+strconv.Itoa(v.Height) != res[1] {
				return fmt.Errorf("master %s: variant %s is %dx%d, listed as %s", path, uri, v.Width, v.Height, res[1])
			}
			listed[res[1]]++
		case line == "#EXT-X-ENDLIST" || strings.HasPrefix(line, "#EXTINF") || strings.HasPrefix(line, "#EXT-X-TARGETDURATION") || line == "#EXTM3U":
			return fmt.Errorf("master %s: %q has no place in a master playlist:\n%s", path, line, text)
		case strings.HasPrefix(line, "#EXT-X-VERSION:"), strings.HasPrefix(line, "#"):
		default:
			return fmt.Errorf("master %s: URI %q without #EXT-X-STREAM-INF:\n%s", path, line, text)
		}
	}
	for _, d := range dims {
		if listed[d] != 1 {
			return fmt.Errorf("master %s lists %s %d times, want once:\n%s", path, d, listed[d], text)
		}
	}
	if len(listed) != len(dims) {
		return fmt.Errorf("master %s lists %v, want %v:\n%s", path, listed, dims, text)
	}
	return nil
}

// submitWithBinary runs `vhg-worker submit -Q queue input` and returns the
// root task id it prints.
func submitWithBinary(t *testing.T, bin, queue, input string) string {
	t.Helper()
	out, err := exec.Command(bin, "submit", "-b", testBrokerURL, "-Q", queue, input).Output()
	if err != nil {
		t.Fatalf("vhg-worker submit: %v", err)
	}
	return strings.TrimSpace(string(out))
}

// TestMixedPythonAndGoWorkers runs the original Python tasks and the Go
// worker on one queue: workflows started by a Python client and by
// `vhg-worker submit`, with canvases built by either encode_workflow, all
// reach COMPLETE with valid HLS and DASH whatever worker ran each step;
// workflows whose source is a 404 end with FAILURE on their status queue
// whichever worker ran the failing step; and no Go-only task ever reaches
// the Python worker.
func TestMixedPythonAndGoWorkers(t *testing.T) {
	requireServices(t)
	shared := uniqueQueue(t)
	goOnly, pyOnly := uniqueQueue(t), uniqueQueue(t) // to force who builds a canvas
	out := t.TempDir()
	sources := t.TempDir()
	encodeTestClip(t, filepath.Join(sources, "clip.mp4"), 320, 240, true)
	srv := serveSources(t, sources)
	dims := []string{"192x144", "320x240"}

	py := startOriginalWorker(t, []string{shared, pyOnly}, "py-original@mixed", out)
	gow := startMixedGoWorker(t, []string{shared, goOnly}, "go@mixed", tasks.Deps{OutputDir: out,
		Renditions: testRenditions(t, mixedRenditions), Preset: "ultrafast"})
	bin := buildBinary(t)

	type run struct {
		name, root string
		wantFail   bool
		failOn     string // "Go" or "Python": the worker the failing step was sent to
	}
	var runs []run
	pyClient := func(name, queue, input string, wantFail bool) {
		got := scenario(t, "encode", queue, "INTEROP_INPUT="+input)
		root, _ := got["id"].(string)
		runs = append(runs, run{name: name, root: root, wantFail: wantFail})
	}
	clip := srv.URL + "/clip.mp4"
	for i := range 2 {
		pyClient(fmt.Sprintf("python client #%d", i+1), shared, clip, false)
		runs = append(runs, run{name: fmt.Sprintf("submit #%d", i+1), root: submitWithBinary(t, bin, shared, clip)})
	}
	pyClient("python client, original canvas", pyOnly, clip, false)
	runs = append(runs, run{name: "submit, Go canvas", root: submitWithBinary(t, bin, goOnly, clip)})
	// 404s: a source gone before encode_workflow probes it, and sources
	// gone between the probe and download_file, which then fails on
	// whichever worker receives it.
	runs = append(runs, run{name: "submit, 404 at the probe", root: submitWithBinary(t, bin, goOnly, srv.URL+"/missing.mp4"), wantFail: true, failOn: "Go"})
	for i := range 2 {
		pyClient(fmt.Sprintf("python client, 404 at download #%d", i+1), goOnly, srv.URL+"/vanishing.mp4", true)
		runs = append(runs, run{name: fmt.Sprintf("submit, 404 at download #%d", i+1), root: submitWithBinary(t, bin, goOnly, srv.URL+"/vanishing.mp4"), wantFail: true})
	}

	// 404s in canvases built by the original encode_workflow (which has
	// no errbacks): download_file fails on whichever worker receives it;
	// on Go the worker reports it, on Python the Go workers learn it from
	// the Python worker's task events.
	for i := range 3 {
		pyClient(fmt.Sprintf("python client, original canvas, 404 at download #%d", i+1), pyOnly, srv.URL+"/missing.mp4", true)
	}

	// The same 404 at download_file in the canvas the Go encode_workflow
	// builds, with that first step sent to each worker in turn: the
	// FAILURE arrives whichever ran it.
	for _, forced := range []struct{ name, queue string }{{"Python", pyOnly}, {"Go", goOnly}} {
		runs = append(runs, run{"Go canvas, 404 at download forced onto " + forced.name,
			applyGoCanvas(t, shared, forced.queue, out, srv.URL+"/missing.mp4"), true, forced.name})
	}

	type outcome struct {
		statuses []protocol.ResultMeta
		err      error
	}
	outcomes := make([]outcome, len(runs))
	var wg sync.WaitGroup
	for i, r := range runs {
		wg.Go(func() {
			s, err := awaitStatus(r.root)
			outcomes[i] = outcome{s, err}
		})
	}
	wg.Wait()

	completed, failures := 0, 0
	canvases := map[string]int{}
	failedOn := map[string]int{}
	for i, r := range runs {
		o := outcomes[i]
		if o.err != nil {
			t.Errorf("%s (%s): %v", r.name, r.root, o.err)
			continue
		}
		canvas := "?"
		switch {
		case gow.ranID(r.root):
			canvas = "Go"
		case py.ranID(r.root):
			canvas = "Python"
		}
		last := o.statuses[len(o.statuses)-1]
		if !r.wantFail {
			if err := checkComplete(o.statuses, dims); err != nil {
				t.Errorf("%s (canvas built by %s): %v", r.name, canvas, err)
				continue
			}
			completed++
			canvases[canvas]++
			t.Logf("%s: COMPLETE, canvas built by the %s encode_workflow", r.name, canvas)
			continue
		}
		res, _ := last.Result.(map[string]any)
		failedID, _ := res["task_id"].(string)
		if last.Status != protocol.StateFailure {
			t.Errorf("%s: ended with %s, want FAILURE", r.name, last.Status)
			continue
		}
		failures++
		who := "?"
		switch {
		case gow.ranID(failedID):
			who = "Go"
		case py.ranID(failedID):
			who = "Python"
		}
		failedOn[who]++
		if r.failOn != "" && who != r.failOn {
			t.Errorf("%s: the failing step ran on %s", r.name, who)
		}
		t.Logf("%s: FAILURE %v: %v (failing step %s ran on the %s worker)", r.name, res["exc_type"], res["error"], failedID, who)
		if !strings.Contains(fmt.Sprint(res["error"]), "404") {
			t.Errorf("%s: FAILURE does not name the 404: %v", r.name, res)
		}
	}
	if canvases["Go"] == 0 || canvases["Python"] == 0 {
		t.Errorf("completed canvases by builder: %v; want both encode_workflows", canvases)
	}
	if gow.total() == 0 || py.total() == 0 {
		t.Errorf("steps run: Go %d, Python %d; want both workers to take part", gow.total(), py.total())
	}
	py.mu.Lock()
	if len(py.unregistered) > 0 {
		t.Errorf("the Python worker received tasks it lacks:\n%s", strings.Join(py.unregistered, "\n"))
	}
	py.mu.Unlock()
	t.Logf("FIGURE mixed: %d workflows, %d COMPLETE (canvas built by Go %d, by Python %d), %d FAILURE as wanted (failing step on Go %d, on Python %d)",
		len(runs), completed, canvases["Go"], canvases["Python"], failures, failedOn["Go"], failedOn["Python"])
	t.Logf("FIGURE mixed steps on Go (%d): %s", gow.total(), figure(gow.counts()))
	t.Logf("FIGURE mixed steps on Python (%d): %s", py.total(), figure(py.counts()))
}

// applyGoCanvas applies the canvas the Go encode_workflow builds for
// input, with steps on queue but its first step, download_file, sent to
// firstQueue, and returns its main task id (that of its status queue).
func applyGoCanvas(t *testing.T, queue, firstQueue, out, input string) string {
	t.Helper()
	broker, err := rabbitmq.Dial(rabbitmq.Config{URL: testBrokerURL})
	if err != nil {
		t.Fatal(err)
	}
	defer broker.Close()
	backend, err := redis.New(context.Background(), redis.Config{URL: testRedisURL})
	if err != nil {
		t.Fatal(err)
	}
	defer backend.Close()
	id := strings.ReplaceAll(worker.NewTaskID(), "-", "")
	main := worker.NewTaskID()
	wf := tasks.Workflow{URL: input, FolderOut: filepath.Join(out, id), ID: id, MainTaskID: main,
		Renditions: testRenditions(t, mixedRenditions), FailureQueue: tasks.FailureQueue(queue)}
	sig := wf.Canvas()
	first := sig.Kwargs["tasks"].([]any)[0].(map[string]any)
	first["options"].(map[string]any)["queue"] = firstQueue
	client := worker.NewClient(broker, worker.ClientConfig{DefaultQueue: queue, Backend: backend})
	if _, err := client.Apply(t.Context(), sig); err != nil {
		t.Fatal(err)
	}
	return main
}

// routeSteps sets options.queue on every step of a canvas (nested chains,
// groups, chords) to queueOf(task name).
func routeSteps(sig map[string]any, queueOf func(task string) string) {
	if kw, ok := sig["kwargs"].(map[string]any); ok {
		for _, key := range []string{"tasks", "header", "body"} {
			switch v := kw[key].(type) {
			case []any:
				for _, e := range v {
					if m, ok := e.(map[string]any); ok {
						routeSteps(m, queueOf)
					}
				}
			case map[string]any:
				routeSteps(v, queueOf)
			}
		}
	}
	name, _ := sig["task"].(string)
	if !strings.HasPrefix(name, "adaptation.commons.") {
		return
	}
	opts, _ := sig["options"].(map[string]any)
	if opts == nil {
		opts = map[string]any{}
		sig["options"] = opts
	}
	opts["queue"] = queueOf(name)
}

// TestMixedOriginalMasterPlaylist runs the canvas of the Go encode_workflow
// with the original's exact master playlist writes
// (VHG_ORIGINAL_PLAYLIST=legacy: RESOLUTION=<playlist path>, no URI line,
// #EXT-X-ENDLIST from the footer), each step sent to a chosen kind of
// worker:
//   - Python runs everything up to the renditions' add_playlist_info, Go the
//     chord body: Go reads the original's entries back and the master ends
//     valid, each variant once;
//   - Go runs everything but the chord body, Python runs it: the original
//     footer appends #EXT-X-ENDLIST to the valid master Go wrote, and no Go
//     step comes after to remove it. The test pins that documented outcome.
func TestMixedOriginalMasterPlaylist(t *testing.T) {
	requireServices(t)
	shared, goOnly, pyOnly := uniqueQueue(t), uniqueQueue(t), uniqueQueue(t)
	out, sources := t.TempDir(), t.TempDir()
	encodeTestClip(t, filepath.Join(sources, "clip.mp4"), 320, 240, true)
	srv := serveSources(t, sources)
	py := startOriginalWorker(t, []string{shared, pyOnly}, "py-legacy@mixed", out, "VHG_ORIGINAL_PLAYLIST=legacy")
	gow := startMixedGoWorker(t, []string{shared, goOnly}, "go-legacy@mixed", tasks.Deps{OutputDir: out,
		Renditions: testRenditions(t, mixedRenditions), Preset: "ultrafast"})
	body := map[string]bool{tasks.NameAddPlaylistFooter: true, tasks.NameChunkDash: true}
	isBody := func(name string, complete bool) bool { return body[name] || (name == tasks.NameNotify && complete) }

	broker, err := rabbitmq.Dial(rabbitmq.Config{URL: testBrokerURL})
	if err != nil {
		t.Fatal(err)
	}
	defer broker.Close()
	backend, err := redis.New(context.Background(), redis.Config{URL: testRedisURL})
	if err != nil {
		t.Fatal(err)
	}
	defer backend.Close()
	start := func(bodyQueue, otherQueue string) string {
		id := strings.ReplaceAll(worker.NewTaskID(), "-", "")
		main := worker.NewTaskID()
		wf := tasks.Workflow{URL: srv.URL + "/clip.mp4", FolderOut: filepath.Join(out, id), ID: id, MainTaskID: main,
			Renditions: testRenditions(t, mixedRenditions), FailureQueue: tasks.FailureQueue(shared)}
		sig := wf.Canvas().Map()
		// The final notify is the one with complete=True: route by task
		// name, then fix that one up.
		routeSteps(sig, func(name string) string {
			if isBody(name, false) {
				return bodyQueue
			}
			return otherQueue
		})
		chord := sig["kwargs"].(map[string]any)["tasks"].([]any)[3].(map[string]any)
		steps := chord["kwargs"].(map[string]any)["body"].(map[string]any)["kwargs"].(map[string]any)["tasks"].([]any)
		steps[len(steps)-1].(map[string]any)["options"].(map[string]any)["queue"] = bodyQueue
		parsed, err := protocol.ParseSignature(sig)
		if err != nil {
			t.Fatal(err)
		}
		client := worker.NewClient(broker, worker.ClientConfig{DefaultQueue: shared, Backend: backend})
		if _, err := client.Apply(t.Context(), parsed); err != nil {
			t.Fatal(err)
		}
		return main
	}
	dims := []string{"192x144", "320x240"}

	pyThenGo := start(goOnly, pyOnly)
	goThenPy := start(pyOnly, goOnly)

	statuses, err := awaitStatus(pyThenGo)
	if err != nil {
		t.Fatal(err)
	}
	if err := checkComplete(statuses, dims); err != nil {
		t.Errorf("original header and entries, Go body: %v", err)
	}

	statuses, err = awaitStatus(goThenPy)
	if err != nil {
		t.Fatal(err)
	}
	last := statuses[len(statuses)-1]
	if last.Status != tasks.StateComplete {
		t.Fatalf("Go steps, original body: ended with %s: %v", last.Status, last.Result)
	}
	master, _ := last.Result.(map[string]any)["hls"].(string)
	data, err := os.ReadFile(master)
	if err != nil {
		t.Fatal(err)
	}
	text := string(data)
	if !strings.HasSuffix(text, "#EXT-X-ENDLIST\n") {
		t.Errorf("Go steps, original body: master does not end with the original footer's #EXT-X-ENDLIST:\n%s", text)
	}
	if err := os.WriteFile(master, []byte(strings.TrimSuffix(text, "#EXT-X-ENDLIST\n")), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := checkMaster(master, dims); err != nil {
		t.Errorf("Go steps, original body: the master before the original footer's line is not valid: %v", err)
	}
	t.Logf("Go steps, original body: the master Go wrote is valid; the original footer appended #EXT-X-ENDLIST after it, as documented")
	// Each kind ran the playlist steps it was sent.
	for _, w := range []struct {
		name  string
		steps *stepLog
	}{{"Go", gow}, {"Python", py}} {
		c := w.steps.counts()
		if c["add_playlist_header"] != 1 || c["add_playlist_info"] != 2 || c["add_playlist_footer"] != 1 {
			t.Errorf("%s worker ran %s; want one header, two entries and one footer", w.name, figure(c))
		}
	}
}

// TestMixedFailureNoticeWaitsForGoWorker fails a step of a Go-built
// workflow on a Python worker while no Go worker runs: Python Celery
// publishes the notify_failure errback to the failure queue, declaring it
// durable, where it waits; the Go worker started later reports the FAILURE.
func TestMixedFailureNoticeWaitsForGoWorker(t *testing.T) {
	requireServices(t)
	queue := uniqueQueue(t)
	out, sources := t.TempDir(), t.TempDir()
	srv := serveSources(t, sources)
	py := startOriginalWorker(t, []string{queue}, "py-alone@mixed", out)
	main := applyGoCanvas(t, queue, queue, out, srv.URL+"/missing.mp4")

	// Wait (no upper bound but the suite's) until the notice is in the queue.
	conn, err := amqp.Dial(testBrokerURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var waiting int
	for waiting == 0 {
		ch, err := conn.Channel()
		if err != nil {
			t.Fatal(err)
		}
		if q, err := ch.QueueDeclarePassive(tasks.FailureQueue(queue), true, false, false, false, nil); err == nil {
			waiting = q.Messages
			ch.Close()
		}
		if waiting == 0 {
			time.Sleep(200 * time.Millisecond)
		}
	}
	py.mu.Lock()
	failedOnPython := len(py.failed)
	py.mu.Unlock()
	if failedOnPython != 1 || waiting != 1 {
		t.Fatalf("%d steps failed on Python, %d notices waiting; want 1 and 1", failedOnPython, waiting)
	}

	gow := startMixedGoWorker(t, []string{queue}, "go-late@mixed", tasks.Deps{OutputDir: out,
		Renditions: testRenditions(t, mixedRenditions), Preset: "ultrafast"})
	statuses, err := awaitStatus(main)
	if err != nil {
		t.Fatal(err)
	}
	last := statuses[len(statuses)-1]
	if r, _ := last.Result.(map[string]any); last.Status != protocol.StateFailure || !strings.Contains(fmt.Sprint(r["error"]), "404") {
		t.Fatalf("ended with %s %v, want FAILURE naming the 404", last.Status, last.Result)
	}
	if c := gow.counts(); c["notify_failure"] != 1 {
		t.Errorf("the Go worker ran %s; want one notify_failure", figure(c))
	}
	t.Logf("FIGURE failure notice: published by Python while no Go worker ran, waited in %s, reported by the Go worker started later", tasks.FailureQueue(queue))
}
