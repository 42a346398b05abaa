package tasks

import (
	"context"
	"testing"
	"time"

	vhgctx "github.com/vhg/vhg-worker/context"
	"github.com/vhg/vhg-worker/protocol"
	"github.com/vhg/vhg-worker/worker"
	"github.com/vhg/vhg-worker/worker/memory"
)

func TestStatusMessages(t *testing.T) {
	t.Parallel()
	c := vhgctx.Context{vhgctx.KeyFolderOut: "/out/abc", vhgctx.KeyID: "abc", vhgctx.KeyTargetWidth: 640, vhgctx.KeyTargetHeight: 360}
	root := "30b74ac3-9907-4291-9d30-ee43f53d6aa8"
	partial, err := partialStatus(root, c)
	if err != nil {
		t.Fatal(err)
	}
	complete, err := completeStatus(root, c)
	if err != nil {
		t.Fatal(err)
	}
	failure := failureStatus(root, "e76892e5-a3de-4570-85ef-8559cce2db46",
		exceptionOf(&worker.TaskError{Module: "builtins", Type: "ValueError", Args: []any{"tasks: download_file: GET x: server answered 404 Not Found"}}))
	tests := []struct {
		meta protocol.ResultMeta
		want string
	}{
		{partial, `{"task_id": "30b74ac3-9907-4291-9d30-ee43f53d6aa8", "status": "PARTIAL", "result": {"hls": "/out/abc/hls/640x360/playlist.m3u8"}, "traceback": null, "children": []}`},
		{complete, `{"task_id": "30b74ac3-9907-4291-9d30-ee43f53d6aa8", "status": "COMPLETE", "result": {"dash": "/out/abc/dash/playlist.mpd", "hls": "/out/abc/hls/playlist.m3u8"}, "traceback": null, "children": []}`},
		{failure, `{"task_id": "30b74ac3-9907-4291-9d30-ee43f53d6aa8", "status": "FAILURE", "result": {"error": "tasks: download_file: GET x: server answered 404 Not Found", "exc_type": "ValueError", "task_id": "e76892e5-a3de-4570-85ef-8559cce2db46"}, "traceback": null, "children": []}`},
	}
	for _, tt := range tests {
		got, err := tt.meta.MessageJSON()
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != tt.want {
			t.Errorf("%s message:\n got %s\nwant %s", tt.meta.Status, got, tt.want)
		}
	}
}

// TestNotifyFailureWaitsForTheChordError plays the race of a failed chord:
// its body's notify_failure errback runs before the body's FAILURE
// ChordError is stored. notify_failure waits for it, and then stays
// silent, since the header step's own errback reported the cause; a state
// that never comes is reported without it after the waits.
func TestNotifyFailureWaitsForTheChordError(t *testing.T) {
	t.Parallel()
	status := &statusRecorder{}
	broker, backend := memory.NewBroker(), memory.NewBackend()
	mux := worker.NewServeMux()
	Register(mux, Deps{OutputDir: t.TempDir(), Status: status})
	srv := worker.NewServer(worker.Config{Concurrency: 2, ShutdownTimeout: time.Second}, broker, backend, mux, testLog(t))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { srv.Run(ctx); close(done) }()
	t.Cleanup(func() { srv.StopNow(); cancel(); <-done })
	client := worker.NewClient(broker, worker.ClientConfig{Backend: backend})

	mainID, bodyID, lostID := worker.NewTaskID(), worker.NewTaskID(), worker.NewTaskID()
	for _, failed := range []string{bodyID, lostID} {
		if _, err := client.Apply(t.Context(), protocol.Signature{Task: NameNotifyFailure, Args: []any{failed},
			Kwargs: map[string]any{"main_task_id": mainID}}); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(1500 * time.Millisecond) // both have looked at least once
	chordErr := protocol.ExceptionInfo{Module: "celery.exceptions", Type: "ChordError", Message: []any{"Dependency x raised ValueError('no')"}}
	if err := backend.Store(t.Context(), protocol.ResultMeta{TaskID: bodyID, Status: protocol.StateFailure, Result: chordErr}, worker.ReplyRoute{}); err != nil {
		t.Fatal(err)
	}
	s := status.waitFor(t, "the FAILURE of the task whose state never came", func(s []protocol.ResultMeta) bool {
		return countStatus(s, protocol.StateFailure) > 0
	})
	if n := countStatus(s, protocol.StateFailure); n != 1 {
		t.Fatalf("%d FAILURE statuses, want only the one without a state: %v", n, s)
	}
	if r, _ := s[0].Result.(map[string]any); r["task_id"] != lostID {
		t.Errorf("FAILURE = %+v, want the one of %s", s[0], lostID)
	}
}
