package tasks

import (
	"bufio"
	"encoding/json"
	"os"
	"reflect"
	"testing"

	"github.com/vhg/vhg-worker/worker"
	"github.com/vhg/vhg-worker/worker/memory"
)

// traceMessage is one task message of the captured Python workflow.
type traceMessage struct {
	Task string
	Body []any // [args, kwargs, embed]
}

// readTrace returns the task messages (exchange "", routing key celery) of
// ../testdata/captures/py525-seed-workflow.trace.jsonl, captured from Python Celery
// 5.2.6 running the original workflow with renditions 144:100 and 240:200.
func readTrace(t *testing.T) []traceMessage {
	t.Helper()
	f, err := os.Open("../testdata/captures/py525-seed-workflow.trace.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []traceMessage
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var line struct {
			Exchange   string `json:"exchange"`
			Properties struct {
				Headers map[string]any `json:"headers"`
			} `json:"properties"`
			Body string `json:"body"`
		}
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			t.Fatal(err)
		}
		task, _ := line.Properties.Headers["task"].(string)
		if line.Exchange != "" || task == "" {
			continue
		}
		var body []any
		if err := json.Unmarshal([]byte(line.Body), &body); err != nil {
			t.Fatal(err)
		}
		out = append(out, traceMessage{Task: task, Body: body})
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// shape keeps what a canvas means and drops what differs from run to run
// or between Celery implementations: task ids, reply_to, root and parent
// ids, group ids and errbacks (the Python original had none). What is left
// is task names, args, kwargs and nesting.
func shape(v any) any {
	switch v := v.(type) {
	case map[string]any:
		if _, isSig := v["task"]; isSig {
			return map[string]any{
				"task":         v["task"],
				"args":         shape(v["args"]),
				"kwargs":       shape(v["kwargs"]),
				"subtask_type": v["subtask_type"],
				"immutable":    v["immutable"],
			}
		}
		out := map[string]any{}
		for k, e := range v {
			out[k] = shape(e)
		}
		return out
	case []any:
		out := make([]any, len(v))
		for i, e := range v {
			out[i] = shape(e)
		}
		return out
	}
	return v
}

// embedShape is the shape of a message's embed: its remaining chain and
// chord (callbacks and errbacks are left out).
func embedShape(embed any) any {
	m, _ := embed.(map[string]any)
	return map[string]any{"chain": shape(m["chain"]), "chord": shape(m["chord"])}
}

func TestCanvasMatchesCapturedTrace(t *testing.T) {
	t.Parallel()
	trace := readTrace(t)
	if len(trace) < 2 || trace[1].Task != NameDownloadFile {
		t.Fatalf("unexpected trace: %d task messages, second is %q", len(trace), trace[1].Task)
	}
	captured := trace[1] // the first step of the canvas encode_workflow applied
	ctx := captured.Body[1].(map[string]any)["context"].(map[string]any)
	// The workflow of the capture: same url, folder, id, root and ladder.
	wf := Workflow{
		URL:        ctx["url"].(string),
		FolderOut:  ctx["folder_out"].(string),
		ID:         ctx["id"].(string),
		MainTaskID: "30b74ac3-9907-4291-9d30-ee43f53d6aa8", // encode_workflow's id in the trace
		Renditions: []Rendition{{144, 100}, {240, 200}},
	}
	broker, backend := memory.NewBroker(), memory.NewBackend()
	client := worker.NewClient(broker, worker.ClientConfig{Backend: backend})
	if _, err := client.Apply(t.Context(), wf.Canvas()); err != nil {
		t.Fatal(err)
	}
	published := broker.Published()
	if len(published) != 1 {
		t.Fatalf("applying the canvas published %d messages, want 1 (the first step)", len(published))
	}
	if got := published[0].Envelope.Headers["task"]; got != NameDownloadFile {
		t.Fatalf("first message is %v, want %s", got, NameDownloadFile)
	}
	var body []any
	if err := json.Unmarshal(published[0].Envelope.Body, &body); err != nil {
		t.Fatal(err)
	}
	for i, name := range []string{"args", "kwargs"} {
		if got, want := shape(body[i]), shape(captured.Body[i]); !reflect.DeepEqual(got, want) {
			t.Errorf("%s:\n got %v\nwant %v", name, got, want)
		}
	}
	got, want := embedShape(body[2]), embedShape(captured.Body[2])
	if !reflect.DeepEqual(got, want) {
		g, _ := json.MarshalIndent(got, "", " ")
		w, _ := json.MarshalIndent(want, "", " ")
		t.Errorf("embed shape differs from the capture:\n got %s\nwant %s", g, w)
	}

	// Every step carries the notify_failure errback once.
	var embed struct {
		Errbacks []map[string]any `json:"errbacks"`
		Chain    []map[string]any `json:"chain"`
	}
	if err := json.Unmarshal(mustJSON(t, body[2]), &embed); err != nil {
		t.Fatal(err)
	}
	if len(embed.Errbacks) != 1 || embed.Errbacks[0]["task"] != NameNotifyFailure ||
		embed.Errbacks[0]["kwargs"].(map[string]any)["main_task_id"] != wf.MainTaskID {
		t.Errorf("download_file errbacks = %v, want one notify_failure(main_task_id=%s)", embed.Errbacks, wf.MainTaskID)
	}
	// ... routed to the queue only Go workers consume: the original Python
	// workers have no notify_failure.
	if opts, _ := embed.Errbacks[0]["options"].(map[string]any); opts["queue"] != FailureQueue("celery") {
		t.Errorf("notify_failure errback options = %v, want queue %q", embed.Errbacks[0]["options"], FailureQueue("celery"))
	}
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	data, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return data
}
