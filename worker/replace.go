package worker

import (
	"context"
	"errors"
	"fmt"

	"github.com/vhg/vhg-worker/protocol"
)

// ErrReplaced is what Task.Replace returns once the replacement has been
// applied. It wraps ErrIgnore: the worker acknowledges the message and
// stores nothing under the task id, which the replacement now owns.
var ErrReplaced = fmt.Errorf("%w: replaced by a new task", ErrIgnore)

// ErrNoChord is returned by Task.AddToChord when the task is not a chord
// header member.
var ErrNoChord = errors.New("worker: current task is not member of any chord")

// ChordExtender is implemented by result backends that let a running
// header member grow its chord (Celery's add_to_chord; Redis only): the
// chord then waits for one more result.
type ChordExtender interface {
	// AddToChord counts one more result for the chord of groupID
	// (Redis: INCR celery-taskset-meta-<gid>.t).
	AddToChord(ctx context.Context, groupID string) error
}

// accumulateIndex0 is celery.accumulate.s(index=0): the body Celery puts
// after a group that replaces a task, so the task's result is the list of
// the group's results.
func accumulateIndex0() protocol.Signature {
	return protocol.Signature{Task: "celery.accumulate", Args: []any{}, Kwargs: map[string]any{"index": int64(0)}}
}

func improperlyConfigured(msg string) *TaskError {
	return &TaskError{Module: "celery.exceptions", Type: "ImproperlyConfigured", Args: []any{msg}}
}

// Replace replaces the running task by sig, like Celery's Task.replace: sig
// (a task, chain, group or chord) is applied under this task's id, so that
// whoever waits for this task gets sig's result, and it inherits what the
// task would have done next:
//
//   - the task's callbacks and errbacks are linked to sig (to the last
//     step of a chain, to the body of a chord);
//   - the group and chord the task belongs to: sig's result is counted in
//     the chord in place of the task's;
//   - the rest of the chain: sig is followed by the remaining steps;
//   - root_id, and replaced_task_nesting one higher.
//
// A group is first turned into chord(group, celery.accumulate(index=0)),
// so the task's result is the list of the group's results. On success
// Replace returns ErrReplaced, which the handler returns:
//
//	return nil, t.Replace(ctx, sig)
//
// A sig that is itself part of a chord, or an empty chain, is refused
// with a celery.exceptions.ImproperlyConfigured TaskError, as in Celery.
func (t *Task) Replace(ctx context.Context, sig protocol.Signature) error {
	if sig.Options.Chord != nil {
		return improperlyConfigured("A signature replacing a task must not be part of a chord")
	}
	sig = sig.Clone()
	if isChain(sig) {
		steps, err := sig.ChainTasks()
		if err != nil {
			return fmt.Errorf("worker: replace: %w", err)
		}
		if len(steps) == 0 {
			return improperlyConfigured("Cannot replace with an empty chain")
		}
	}
	if isGroup(sig) {
		members, err := sig.GroupTasks()
		if err != nil {
			return fmt.Errorf("worker: replace: %w", err)
		}
		for i := range members {
			members[i] = members[i].Clone()
			mergeArgs(&members[i], sig.Args)
		}
		sig = protocol.NewChord(members, accumulateIndex0())
	}
	for _, cb := range t.Msg.Callbacks {
		sig = withCallback(sig, cb)
	}
	sig = withErrbacks(sig, t.Msg.Errbacks)
	sig = freezeAs(sig, t.Msg.ID)

	// The rest of the chain follows the replacement; a chain replacement
	// is spliced in, its errbacks copied to each of its steps as Celery's
	// chain.unchain_tasks does.
	if len(t.Msg.Chain) > 0 {
		var steps []protocol.Signature
		if isChain(sig) {
			inner, err := sig.ChainTasks()
			if err != nil {
				return fmt.Errorf("worker: replace: %w", err)
			}
			if len(inner) > 0 && !sig.Immutable {
				mergeArgs(&inner[0], sig.Args)
			}
			for _, s := range inner {
				steps = append(steps, withErrbacks(s, sig.Options.LinkError))
			}
		} else {
			steps = []protocol.Signature{sig}
		}
		for i := len(t.Msg.Chain) - 1; i >= 0; i-- {
			steps = append(steps, t.Msg.Chain[i])
		}
		sig = protocol.NewChain(steps...)
	}

	// Celery 5.3+ marks every step of a chain replacement, and every step
	// left of the task's chain, with the new nesting, so the steps carry it
	// when the next workers publish them.
	nesting := t.Msg.ReplacedTaskNesting + 1
	if isChain(sig) {
		steps, err := sig.ChainTasks()
		if err != nil {
			return fmt.Errorf("worker: replace: %w", err)
		}
		for i := range steps {
			steps[i] = steps[i].Clone()
			steps[i].Options.SetExtra("replaced_task_nesting", int64(nesting))
		}
		sig.Kwargs["tasks"] = protocol.NewChain(steps...).Kwargs["tasks"]
	}

	o := applyOptions{
		parentID:            t.Msg.ID,
		rootID:              t.RootID(),
		groupID:             t.Msg.Group,
		groupIndex:          t.Msg.GroupIndex,
		chord:               t.Msg.Chord,
		replacedTaskNesting: nesting,
	}
	if _, err := t.server.client.apply(ctx, sig, nil, o); err != nil {
		return fmt.Errorf("worker: replace %s: %w", t, err)
	}
	t.Log.WithField("replacement", sig.Task).Info("task replaced")
	return ErrReplaced
}

// withCallback links cb to sig as Celery's link methods do: to the body of
// a chord, to the last step of a chain (Task.replace pushes a chain's
// links down to its final task), to sig itself otherwise.
func withCallback(sig protocol.Signature, cb protocol.Signature) protocol.Signature {
	switch {
	case isChord(sig):
		_, body, err := sig.ChordParts()
		if err == nil {
			sig.Kwargs["body"] = withCallback(body, cb).Map()
			return sig
		}
	case isChain(sig):
		steps, err := sig.ChainTasks()
		if err == nil && len(steps) > 0 {
			steps[len(steps)-1] = withCallback(steps[len(steps)-1], cb)
			sig.Kwargs["tasks"] = sigsToValues(steps)
			return sig
		}
	}
	sig.Options.Link = append(sig.Options.Link, cb)
	return sig
}

// freezeAs gives sig the task id id where its result will be: the last
// step of a chain, the body of a chord (through the chord's own id), the
// task itself.
func freezeAs(sig protocol.Signature, id string) protocol.Signature {
	if isChain(sig) {
		steps, err := sig.ChainTasks()
		if err == nil && len(steps) > 0 {
			// Chain links are pushed to the last step, so the chain's own
			// options no longer carry them.
			last := steps[len(steps)-1]
			for _, cb := range sig.Options.Link {
				last = withCallback(last, cb)
			}
			sig.Options.Link = nil
			steps[len(steps)-1] = freezeAs(last, id)
			sig.Kwargs["tasks"] = sigsToValues(steps)
			return sig
		}
	}
	sig.Options.TaskID = id
	return sig
}

// AddToChord adds sig to the chord this task is a header member of, like
// Celery's Task.add_to_chord: the backend counts one more header result
// (Redis: INCR of the chord's .t key), then sig is applied as a member of
// the same group, with the same group index and chord body, so the body
// waits for its result too. sig may be a task or a canvas (a chord's body
// becomes the member). It returns the id of sig's result.
//
// A task outside any chord gets ErrNoChord; a backend that is not a
// ChordExtender an error saying so.
func (t *Task) AddToChord(ctx context.Context, sig protocol.Signature) (string, error) {
	if t.Msg.Chord == nil || t.Msg.Group == "" {
		return "", ErrNoChord
	}
	ext, ok := t.server.backend.(ChordExtender)
	if !ok {
		return "", fmt.Errorf("worker: add_to_chord: the result backend (%T) cannot grow a chord; Celery supports it on Redis only", t.server.backend)
	}
	sig = sig.Clone()
	if !isChain(sig) && !isGroup(sig) && !isChord(sig) && sig.Options.TaskID == "" {
		sig.Options.TaskID = NewTaskID()
	}
	if err := ext.AddToChord(ctx, t.Msg.Group); err != nil {
		return "", fmt.Errorf("worker: add_to_chord %s: %w", t.Msg.Group, err)
	}
	o := applyOptions{
		parentID:   t.Msg.ID,
		rootID:     t.RootID(),
		groupID:    t.Msg.Group,
		groupIndex: t.Msg.GroupIndex,
		chord:      t.Msg.Chord,
	}
	id, err := t.server.client.apply(ctx, sig, nil, o)
	if err != nil {
		return "", fmt.Errorf("worker: add_to_chord: %w", err)
	}
	return id, nil
}
