package main

import (
	"context"
	"fmt"

	"github.com/vhg/vhg-worker/protocol"
	"github.com/vhg/vhg-worker/worker"
)

// nestedSignatures are the return_nested_signature_* tasks: each returns a
// canvas nesting one canvas type in another, as Python serializes it (the
// signatures would not run: add.s() lacks its arguments).
var nestedSignatures = map[string]func() protocol.Signature{
	"return_nested_signature_chain_chain": func() protocol.Signature {
		return protocol.NewChain(protocol.NewChain(sig("add")))
	},
	"return_nested_signature_chain_group": func() protocol.Signature {
		return protocol.NewChain(protocol.NewGroup(sig("add")))
	},
	"return_nested_signature_chain_chord": func() protocol.Signature {
		return protocol.NewChain(protocol.NewChord([]protocol.Signature{sig("add")}, sig("add")))
	},
	"return_nested_signature_group_chain": func() protocol.Signature {
		return protocol.NewGroup(protocol.NewChain(sig("add")))
	},
	"return_nested_signature_group_group": func() protocol.Signature {
		// group(group([...])) takes the inner group's tasks.
		return protocol.NewGroup(sig("add"))
	},
	"return_nested_signature_group_chord": func() protocol.Signature {
		return protocol.NewGroup(protocol.NewChord([]protocol.Signature{sig("add")}, sig("add")))
	},
	"return_nested_signature_chord_chain": func() protocol.Signature {
		return protocol.NewChord([]protocol.Signature{protocol.NewChain(sig("add"))}, sig("add"))
	},
	"return_nested_signature_chord_group": func() protocol.Signature {
		return protocol.NewChord([]protocol.Signature{protocol.NewGroup(sig("add"))}, sig("add"))
	},
	"return_nested_signature_chord_chord": func() protocol.Signature {
		inner := protocol.NewChord([]protocol.Signature{sig("add")}, sig("add"))
		return protocol.NewChord([]protocol.Signature{inner}, sig("add"))
	},
}

// returnSignature is a task returning build()'s signature as a dict.
func returnSignature(name string, build func() protocol.Signature) worker.HandlerFunc {
	return func(_ context.Context, t *worker.Task) (any, error) {
		if _, err := (pyParams{fn: name}).bind(t); err != nil {
			return nil, err
		}
		return build().Map(), nil
	}
}

// rebuildSignature rebuilds a signature dict and checks that every nested
// element (chain and group tasks, chord header and body) is a signature,
// failing with a TypeError otherwise, like the Python task.
func (s *suiteTasks) rebuildSignature(_ context.Context, t *worker.Task) (any, error) {
	b, err := pyParams{fn: "rebuild_signature", names: []string{"sig_dict"}, required: 1}.bind(t)
	if err != nil {
		return nil, err
	}
	sg, err := protocol.ParseSignature(b.named["sig_dict"])
	if err != nil {
		return nil, worker.NewTaskError("TypeError", "%s is not a signature object: %v", protocol.PythonRepr(b.named["sig_dict"]), err)
	}
	return nil, checkNested(sg)
}

// checkNested walks a canvas, failing on any member that is not a signature.
func checkNested(sg protocol.Signature) error {
	if sg.Task == "" {
		return worker.NewTaskError("TypeError", "%s is not a signature object", protocol.PythonRepr(sg.Map()))
	}
	var members []protocol.Signature
	var err error
	switch sg.SubtaskType {
	case protocol.SubtaskChain:
		members, err = sg.ChainTasks()
	case protocol.SubtaskGroup:
		members, err = sg.GroupTasks()
	case protocol.SubtaskChord:
		var body protocol.Signature
		members, body, err = sg.ChordParts()
		members = append(members, body)
	}
	if err != nil {
		return worker.NewTaskError("TypeError", "%v", fmt.Errorf("nested element: %w", err))
	}
	for _, m := range members {
		if err := checkNested(m); err != nil {
			return err
		}
	}
	return nil
}
