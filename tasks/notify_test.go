package tasks

import (
	"testing"

	vhgctx "github.com/vhg/vhg-worker/context"
	"github.com/vhg/vhg-worker/protocol"
	"github.com/vhg/vhg-worker/worker"
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
