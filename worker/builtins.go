package worker

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/vhg/vhg-worker/protocol"
)

// registerBuiltins registers Celery's builtin tasks that are not already
// registered: celery.accumulate, celery.chain, celery.group, celery.chord
// and celery.chord_unlock (app/builtins.py).
func registerBuiltins(mux *ServeMux) {
	builtins := []struct {
		name string
		fn   HandlerFunc
		opts []TaskOption
	}{
		{"celery.accumulate", accumulate, nil},
		{"celery.chain", chainTask, nil},
		{"celery.group", groupTask, nil},
		{"celery.chord", chordTask, nil},
		{"celery.chord_unlock", chordUnlock, []TaskOption{MaxRetries(-1), IgnoreResult()}},
	}
	for _, b := range builtins {
		if !mux.Has(b.name) {
			mux.Handle(b.name, b.fn, b.opts...)
		}
	}
}

// accumulate returns its positional arguments, or the one at kwargs
// "index" when given.
func accumulate(_ context.Context, t *Task) (any, error) {
	args := t.Args()
	if args == nil {
		args = []any{}
	}
	idx, ok := t.Kwargs()["index"]
	if !ok || idx == nil {
		return args, nil
	}
	i, ok := idx.(int64)
	if !ok {
		return nil, NewTaskError("TypeError", "tuple indices must be integers or slices, not %T", idx)
	}
	if i < 0 {
		i += int64(len(args))
	}
	if i < 0 || i >= int64(len(args)) {
		return nil, NewTaskError("IndexError", "tuple index out of range")
	}
	return args[i], nil
}

// chainTask is kept, as in Celery 5, only to fail clearly.
func chainTask(context.Context, *Task) (any, error) {
	return nil, NewTaskError("NotImplementedError", "chain is not a real task")
}

// groupTask applies group members: celery.group(tasks, result, group_id,
// partial_args).
func groupTask(ctx context.Context, t *Task) (any, error) {
	params := namedArgs(t, "tasks", "result", "group_id", "partial_args")
	tasks, err := protocol.ParseSignatures(params["tasks"])
	if err != nil {
		return nil, NewTaskError("TypeError", "celery.group: %v", err)
	}
	partial, _ := params["partial_args"].([]any)
	group := protocol.NewGroup(tasks...)
	if gid, ok := params["group_id"].(string); ok {
		group.Options.TaskID = gid
	}
	id, err := t.Client().Apply(ctx, group, partial...)
	if err != nil {
		return nil, err
	}
	return []any{[]any{id, nil}, nil}, nil
}

// chordTask applies a chord: celery.chord(header, body, partial_args, ...).
func chordTask(ctx context.Context, t *Task) (any, error) {
	params := namedArgs(t, "header", "body", "partial_args")
	header := params["header"]
	if m, ok := header.(map[string]any); ok {
		if hs, err := protocol.ParseSignature(m); err == nil && isGroup(hs) {
			members, err := hs.GroupTasks()
			if err != nil {
				return nil, NewTaskError("TypeError", "celery.chord header: %v", err)
			}
			header = sigsToValues(members)
		}
	}
	members, err := protocol.ParseSignatures(header)
	if err != nil {
		return nil, NewTaskError("TypeError", "celery.chord header: %v", err)
	}
	body, err := protocol.ParseSignature(params["body"])
	if err != nil {
		return nil, NewTaskError("TypeError", "celery.chord body: %v", err)
	}
	partial, _ := params["partial_args"].([]any)
	id, err := t.Client().Apply(ctx, protocol.NewChord(members, body), partial...)
	if err != nil {
		return nil, err
	}
	return []any{[]any{id, nil}, nil}, nil
}

func sigsToValues(sigs []protocol.Signature) []any {
	out := make([]any, len(sigs))
	for i, s := range sigs {
		out[i] = s.Map()
	}
	return out
}

// namedArgs maps positional then keyword arguments to parameter names, as a
// Python call would.
func namedArgs(t *Task, names ...string) map[string]any {
	out := make(map[string]any, len(names))
	for i, a := range t.Args() {
		if i < len(names) {
			out[names[i]] = a
		}
	}
	for k, v := range t.Kwargs() {
		out[k] = v
	}
	return out
}

// chordUnlock waits for a chord header whose backend has no native join
// (the legacy amqp:// backend), then applies the body:
// celery.chord_unlock(group_id, callback, interval=None, max_retries=None,
// result=[[[id, parent], None], ...]). It retries every interval (1 s) until
// every header result is ready.
func chordUnlock(ctx context.Context, t *Task) (any, error) {
	params := namedArgs(t, "group_id", "callback", "interval", "max_retries", "result")
	body, err := protocol.ParseSignature(params["callback"])
	if err != nil {
		return nil, NewTaskError("TypeError", "celery.chord_unlock callback: %v", err)
	}
	ids, err := headerIDs(params["result"])
	if err != nil {
		return nil, NewTaskError("TypeError", "celery.chord_unlock result: %v", err)
	}
	interval := time.Second
	if f, ok := params["interval"].(float64); ok && f > 0 {
		interval = time.Duration(f * float64(time.Second))
	} else if n, ok := params["interval"].(int64); ok && n > 0 {
		interval = time.Duration(n) * time.Second
	}
	reader, ok := t.server.backend.(ResultReader)
	if !ok {
		return nil, errors.New("worker: celery.chord_unlock needs a result backend that can read results")
	}
	parts := make([]ChordPart, len(ids))
	for i, id := range ids {
		meta, err := reader.Result(ctx, id)
		if err != nil {
			return nil, t.Retry(err, interval)
		}
		if !meta.Status.Ready() {
			t.Log.WithField("waiting_for", id).Debug("chord not ready")
			return nil, t.Retry(nil, interval)
		}
		index := i
		parts[i] = ChordPart{TaskID: id, Index: &index, State: meta.Status, Result: meta.Result}
	}
	t.Client().completeChord(ctx, t.Msg, body, parts)
	return nil, nil
}

// headerIDs reads the task ids from result tuples [[id, parent], null].
func headerIDs(v any) ([]string, error) {
	list, ok := v.([]any)
	if !ok {
		return nil, fmt.Errorf("not a list: %T", v)
	}
	ids := make([]string, 0, len(list))
	for _, item := range list {
		id, err := tupleID(item)
		if err != nil {
			return nil, err
		}
		ids = append(ids, id)
	}
	return ids, nil
}

func tupleID(v any) (string, error) {
	outer, ok := v.([]any)
	if !ok || len(outer) == 0 {
		return "", fmt.Errorf("bad result tuple %v", v)
	}
	inner, ok := outer[0].([]any)
	if !ok || len(inner) == 0 {
		return "", fmt.Errorf("bad result tuple %v", v)
	}
	id, ok := inner[0].(string)
	if !ok {
		return "", fmt.Errorf("bad result id %v", inner[0])
	}
	return id, nil
}
