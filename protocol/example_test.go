package protocol_test

import (
	"fmt"

	"github.com/vhg/vhg-worker/protocol"
)

func ExampleDecode() {
	env := protocol.Envelope{
		ContentType:     "application/json",
		ContentEncoding: "utf-8",
		Headers: map[string]any{
			"lang": "py", "task": "proj.add", "id": "1111", "retries": int32(0),
			"timelimit": []any{int32(10), nil}, "eta": "2026-11-27T12:26:13.421915+00:00",
		},
		Body: []byte(`[[2, 2], {}, {"callbacks": [{"task": "proj.mul", "args": [10], "kwargs": {},
			"options": {}, "subtask_type": null, "immutable": false}], "errbacks": null,
			"chain": null, "chord": null}]`),
	}
	m, err := protocol.Decode(env)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(m.Task, m.ID, m.Args, m.TimeLimit.Hard, m.ETA)
	fmt.Println("then:", m.Callbacks[0].Task, m.Callbacks[0].Args)

	_, err = protocol.Decode(protocol.Envelope{ContentType: "application/x-python-serialize",
		Headers: map[string]any{"task": "proj.add", "id": "2222"}})
	fmt.Println(err)
	// Output:
	// proj.add 1111 [2 2] 10s 2026-11-27 12:26:13.421915 +0000 UTC
	// then: proj.mul [10]
	// protocol: decode task proj.add[2222]: content type not allowed: "application/x-python-serialize"
}

func ExampleSignature_Map() {
	add := protocol.Signature{Task: "proj.add", Args: []any{2, 2}}
	add.Options.TaskID = "4b27"
	body, _ := protocol.MarshalJSON(add.Map())
	fmt.Println(string(body))

	chain, _ := protocol.MarshalJSON(protocol.NewChain(add, protocol.Signature{Task: "proj.mul", Args: []any{10}}))
	fmt.Println(string(chain))
	// Output:
	// {"args": [2, 2], "immutable": false, "kwargs": {}, "options": {"task_id": "4b27"}, "subtask_type": null, "task": "proj.add"}
	// {"args": [], "immutable": false, "kwargs": {"tasks": [{"args": [2, 2], "immutable": false, "kwargs": {}, "options": {"task_id": "4b27"}, "subtask_type": null, "task": "proj.add"}, {"args": [10], "immutable": false, "kwargs": {}, "options": {}, "subtask_type": null, "task": "proj.mul"}]}, "options": {}, "subtask_type": "chain", "task": "celery.chain"}
}
