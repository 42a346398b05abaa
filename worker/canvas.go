package worker

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/vhg/vhg-worker/protocol"
)

// ChordJoiner is implemented by result backends with a native chord join
// (Redis). Backends without one get celery.chord_unlock tasks instead.
type ChordJoiner interface {
	// SetChordSize records how many header results the chord waits for
	// (Celery 5.1+ keeps it in celery-taskset-meta-<gid>.s).
	SetChordSize(ctx context.Context, groupID string, size int) error
	// JoinChordPart records one header result. When it completes the chord
	// it returns every part ordered by group index, with done true, and
	// forgets the chord. fallbackSize is Celery 4.x's chord_size, used when
	// no size was recorded.
	JoinChordPart(ctx context.Context, groupID string, part ChordPart, fallbackSize int) (parts []ChordPart, done bool, err error)
}

// ChordPart is one chord header result.
type ChordPart struct {
	TaskID string
	// Index is the group index; nil sorts last.
	Index  *int
	State  protocol.State
	Result any
}

// applyOptions are the apply_async options a worker passes explicitly; they
// win over the signature's own options.
type applyOptions struct {
	parentID   string
	rootID     string
	chain      []protocol.Signature
	chainSet   bool
	groupID    string
	groupIndex *int
	chord      *protocol.Signature
	// replacedTaskNesting is the replaced_task_nesting header of the first
	// message published (Task.Replace).
	replacedTaskNesting int
}

// isChain, isGroup and isChord tell a signature's canvas type, by
// subtask_type or, for hand-built dicts, by builtin task name.
func isChain(s protocol.Signature) bool {
	return s.SubtaskType == protocol.SubtaskChain || (s.SubtaskType == "" && s.Task == "celery.chain" && s.Kwargs["tasks"] != nil)
}

func isGroup(s protocol.Signature) bool {
	return s.SubtaskType == protocol.SubtaskGroup || (s.SubtaskType == "" && s.Task == "celery.group" && s.Kwargs["tasks"] != nil)
}

func isChord(s protocol.Signature) bool {
	return s.SubtaskType == protocol.SubtaskChord || (s.SubtaskType == "" && s.Task == "celery.chord" && s.Kwargs["header"] != nil)
}

// apply dispatches on the signature type.
func (c *Client) apply(ctx context.Context, sig protocol.Signature, args []any, o applyOptions) (string, error) {
	sig = sig.Clone()
	switch {
	case isChain(sig):
		return c.applyChain(ctx, sig, args, o)
	case isGroup(sig):
		return c.applyGroup(ctx, sig, args, o, nil)
	case isChord(sig):
		return c.applyChord(ctx, sig, args, o)
	default:
		return c.applyTask(ctx, sig, args, o)
	}
}

// mergeArgs prepends partial args unless the signature is immutable.
func mergeArgs(sig *protocol.Signature, partial []any) {
	if sig.Immutable || len(partial) == 0 {
		return
	}
	args := make([]any, 0, len(partial)+len(sig.Args))
	args = append(args, partial...)
	sig.Args = append(args, sig.Args...)
}

// applyTask publishes one task message (reference §3.2).
func (c *Client) applyTask(ctx context.Context, sig protocol.Signature, args []any, o applyOptions) (string, error) {
	if sig.Task == "" {
		return "", errors.New("worker: signature has no task name")
	}
	mergeArgs(&sig, args)
	opts := sig.Options
	msg := &protocol.Message{
		Version:      2,
		ID:           opts.TaskID,
		Task:         sig.Task,
		Args:         sig.Args,
		Kwargs:       sig.Kwargs,
		Callbacks:    opts.Link,
		Errbacks:     opts.LinkError,
		Chain:        opts.Chain,
		Chord:        opts.Chord,
		Group:        opts.GroupID,
		GroupIndex:   opts.GroupIndex,
		RootID:       opts.RootID,
		ParentID:     opts.ParentID,
		Shadow:       opts.Shadow,
		ReplyTo:      opts.ReplyTo,
		ExtraHeaders: opts.Headers,
	}
	if msg.ID == "" {
		msg.ID = NewTaskID()
	}
	if o.rootID != "" {
		msg.RootID = o.rootID
	}
	if msg.RootID == "" {
		msg.RootID = msg.ID
	}
	if o.parentID != "" {
		msg.ParentID = o.parentID
	}
	if o.chainSet {
		msg.Chain = o.chain
	}
	if msg.Chain == nil && opts.ChainSet {
		msg.Chain = []protocol.Signature{}
	}
	if o.groupID != "" {
		msg.Group = o.groupID
		msg.GroupIndex = o.groupIndex
	}
	if o.chord != nil {
		msg.Chord = o.chord
	}
	msg.StampedHeaders, msg.Stamps = stampsFromOptions(opts)
	// apply_async(ignore_result=True) in a signature's options (send_task
	// pops it into the ignore_result header).
	msg.IgnoreResult, _ = opts.Extra["ignore_result"].(bool)
	msg.ReplacedTaskNesting = nestingFromOptions(opts)
	if o.replacedTaskNesting != 0 {
		msg.ReplacedTaskNesting = o.replacedTaskNesting
	}
	if msg.ReplyTo == "" {
		msg.ReplyTo = c.cfg.ReplyTo
	}
	if opts.Priority != nil && *opts.Priority >= 0 && *opts.Priority <= 255 {
		msg.Priority = uint8(*opts.Priority)
	}
	now := time.Now().UTC()
	switch {
	case !opts.ETA.IsZero():
		msg.ETA = opts.ETA
	case opts.Countdown != nil:
		msg.ETA = now.Add(time.Duration(*opts.Countdown * float64(time.Second)))
	}
	switch {
	case !opts.ExpiresAt.IsZero():
		msg.Expires = opts.ExpiresAt
	case opts.ExpiresIn != nil:
		msg.Expires = now.Add(time.Duration(*opts.ExpiresIn * float64(time.Second)))
	}
	if opts.TimeLimit != nil {
		msg.TimeLimit.Hard = time.Duration(*opts.TimeLimit * float64(time.Second))
	}
	if opts.SoftTimeLimit != nil {
		msg.TimeLimit.Soft = time.Duration(*opts.SoftTimeLimit * float64(time.Second))
	}
	if err := c.publish(ctx, msg, c.route(sig)); err != nil {
		return "", err
	}
	return msg.ID, nil
}

// stampsFromOptions returns the stamps a signature carries, as Celery 5.3+
// keeps them in its options: "stamped_headers" lists the stamp names and
// each stamp is an option of that name (canvas.py Signature.stamp). apply
// sends them as the stamped_headers and stamps headers (amqp.py
// as_task_v2), so every step of a stamped canvas is published with its
// stamps, whoever publishes it. A signature without stamps gives nil, nil.
func stampsFromOptions(opts protocol.Options) ([]string, map[string]any) {
	raw, ok := opts.Extra["stamped_headers"]
	if !ok || raw == nil {
		return nil, nil
	}
	var names []string
	switch raw := raw.(type) {
	case string:
		names = []string{raw}
	case []any:
		for _, n := range raw {
			if n, ok := n.(string); ok {
				names = append(names, n)
			}
		}
	case []string:
		names = append(names, raw...)
	}
	if names == nil {
		names = []string{}
	}
	stamps := make(map[string]any, len(names))
	for _, n := range names {
		stamps[n] = opts.Extra[n]
	}
	return names, stamps
}

// nestingFromOptions reads the replaced_task_nesting option Celery 5.3+'s
// Task.replace sets on a replacement and on every chain step after it.
func nestingFromOptions(opts protocol.Options) int {
	switch n := opts.Extra["replaced_task_nesting"].(type) {
	case int64:
		return int(n)
	case int:
		return n
	case float64:
		return int(n)
	}
	return 0
}

// applyChain applies a chain like Celery's chain.run/prepare_steps: nested
// chains are spliced, a group followed by a task becomes a chord, every step
// gets a frozen id and the chain's link_error, the last step carries the
// group/chord it belongs to, and the first step is published with the rest
// of the chain (reversed) in its embed.
func (c *Client) applyChain(ctx context.Context, sig protocol.Signature, args []any, o applyOptions) (string, error) {
	tasks, err := sig.ChainTasks()
	if err != nil {
		return "", fmt.Errorf("worker: chain: %w", err)
	}
	mergeArgs(&sig, args)
	args = sig.Args
	if len(tasks) == 0 {
		return "", nil
	}
	rootID := o.rootID
	if rootID == "" {
		rootID = sig.Options.RootID
	}

	// Walk the steps from the last one, as prepare_steps does.
	steps := append([]protocol.Signature(nil), tasks...)
	var prepared []protocol.Signature // reversed: prepared[0] is the last step
	for len(steps) > 0 {
		step := steps[len(steps)-1].Clone()
		steps = steps[:len(steps)-1]
		isFirst, isLast := len(steps) == 0, len(prepared) == 0
		if isFirst {
			mergeArgs(&step, args)
			// Merged once: a nested chain passes them on to its first
			// step, which is then first again and must not get them twice.
			args = nil
		}
		if isChain(step) {
			inner, err := step.ChainTasks()
			if err != nil {
				return "", fmt.Errorf("worker: nested chain: %w", err)
			}
			if isFirst && len(inner) > 0 && !step.Immutable {
				inner[0] = inner[0].Clone()
				mergeArgs(&inner[0], step.Args)
			}
			steps = append(steps, inner...)
			continue
		}
		if isGroup(step) && len(prepared) > 0 {
			// group | sig is upgraded to chord(group, sig).
			body := prepared[len(prepared)-1]
			prepared = prepared[:len(prepared)-1]
			header, err := step.GroupTasks()
			if err != nil {
				return "", fmt.Errorf("worker: chain group: %w", err)
			}
			chord := protocol.NewChord(header, body)
			if step.Options.TaskID != "" {
				// The group's frozen id becomes the chord's group id.
				group := protocol.NewGroup(header...)
				group.Options.TaskID = step.Options.TaskID
				chord.Kwargs["header"] = group.Map()
			}
			chord.Options.TaskID = body.Options.TaskID
			chord.Args = step.Args
			step = chord
			isLast = len(prepared) == 0
		}
		// Freezing keeps an id the client already gave; chain(task_id=x)
		// names the last step.
		if isLast && step.Options.TaskID == "" {
			step.Options.TaskID = sig.Options.TaskID
		}
		if step.Options.TaskID == "" {
			step.Options.TaskID = NewTaskID()
		}
		if rootID != "" {
			step.Options.RootID = rootID
		}
		if isLast {
			if o.groupID != "" {
				step.Options.GroupID = o.groupID
				step.Options.GroupIndex = o.groupIndex
			}
			if o.chord != nil {
				step.Options.Chord = o.chord
			}
		}
		step = withErrbacks(step, sig.Options.LinkError)
		prepared = append(prepared, step)
	}
	if len(sig.Options.Link) > 0 {
		prepared[0].Options.Link = append(prepared[0].Options.Link, sig.Options.Link...)
	}
	first := prepared[len(prepared)-1]
	rest := prepared[:len(prepared)-1]
	// Celery (_prepare_chain_from_options): an existing chain option runs
	// after this chain's steps; both lists are reversed, so it goes first.
	existing := sig.Options.Chain
	if o.chainSet {
		existing = o.chain
	}
	rest = append(append([]protocol.Signature{}, existing...), rest...)

	firstOpts := applyOptions{parentID: o.parentID, rootID: rootID, chain: rest, chainSet: true, replacedTaskNesting: o.replacedTaskNesting}
	if len(prepared) == 1 {
		// The first step is also the last: it carries the group and chord.
		firstOpts.groupID, firstOpts.groupIndex, firstOpts.chord = first.Options.GroupID, first.Options.GroupIndex, first.Options.Chord
	}
	if _, err := c.apply(ctx, first, nil, firstOpts); err != nil {
		return "", err
	}
	return lastTaskID(prepared[0]), nil
}

// withErrbacks links errbacks to a step as Celery's link_error methods do
// (canvas.py, 5.2): a chord links them to its body only, a group to every
// member, any other signature to its own options.
func withErrbacks(s protocol.Signature, errbacks []protocol.Signature) protocol.Signature {
	if len(errbacks) == 0 {
		return s
	}
	switch {
	case isChord(s):
		_, body, err := s.ChordParts()
		if err != nil {
			break
		}
		s.Kwargs["body"] = withErrbacks(body, errbacks).Map()
		return s
	case isGroup(s):
		members, err := s.GroupTasks()
		if err != nil {
			break
		}
		list := make([]any, len(members))
		for i, m := range members {
			list[i] = withErrbacks(m, errbacks).Map()
		}
		s.Kwargs["tasks"] = list
		return s
	}
	s.Options.LinkError = append(s.Options.LinkError, errbacks...)
	return s
}

// lastTaskID is the id a client holds for a frozen signature's result.
func lastTaskID(s protocol.Signature) string {
	if isChain(s) {
		if tasks, err := s.ChainTasks(); err == nil && len(tasks) > 0 {
			return lastTaskID(tasks[len(tasks)-1])
		}
	}
	return s.Options.TaskID
}

// applyGroup publishes every member with the group id and its index
// (reference §3.5). For a chord header, chord is the body: each member
// carries it, and the chord size (or chord_unlock) is set up before the last
// member is published.
func (c *Client) applyGroup(ctx context.Context, sig protocol.Signature, args []any, o applyOptions, chord *protocol.Signature) (string, error) {
	members, err := sig.GroupTasks()
	if err != nil {
		return "", fmt.Errorf("worker: group: %w", err)
	}
	mergeArgs(&sig, args)
	members = flattenGroups(members)
	groupID := sig.Options.TaskID
	if groupID == "" {
		groupID = NewTaskID()
	}
	rootID := o.rootID
	if rootID == "" {
		rootID = sig.Options.RootID
	}
	if chord == nil {
		// A group that carries a chord body itself (the last step of a
		// chain in a chord header) is a chord header of its own, sized
		// under its own id, as Celery's group._apply_tasks does.
		chord = sig.Options.Chord
	}
	if chord != nil {
		if err := c.setUpChord(ctx, groupID, members, *chord); err != nil {
			return "", err
		}
	}
	for i, m := range members {
		m = m.Clone()
		mergeArgs(&m, sig.Args)
		index := i
		mo := applyOptions{parentID: o.parentID, rootID: rootID, groupID: groupID, groupIndex: &index, chord: chord}
		if m.Options.TaskID == "" && !isChain(m) {
			m.Options.TaskID = NewTaskID()
		}
		if _, err := c.apply(ctx, m, nil, mo); err != nil {
			return "", err
		}
	}
	return groupID, nil
}

// flattenGroups splices nested groups into their parent, as Celery does.
func flattenGroups(members []protocol.Signature) []protocol.Signature {
	var out []protocol.Signature
	for _, m := range members {
		if isGroup(m) {
			if inner, err := m.GroupTasks(); err == nil {
				for _, im := range flattenGroups(inner) {
					im = im.Clone()
					mergeArgs(&im, m.Args)
					out = append(out, im)
				}
				continue
			}
		}
		out = append(out, m)
	}
	return out
}

// applyChord applies chord(header, body) like Celery's _chord.run: the
// chord's options (a remaining chain, parent and root) go onto the body,
// the body gets the chord's task id, and the header is applied as a group
// whose members carry the body. An empty header applies the body with [].
func (c *Client) applyChord(ctx context.Context, sig protocol.Signature, args []any, o applyOptions) (string, error) {
	header, body, err := sig.ChordParts()
	if err != nil {
		return "", fmt.Errorf("worker: chord: %w", err)
	}
	mergeArgs(&sig, args)
	body = body.Clone()
	// The body keeps the id its client froze; otherwise it takes the
	// chord's (body.freeze(task_id) in Celery).
	if body.Options.TaskID == "" && !isChain(body) {
		body.Options.TaskID = sig.Options.TaskID
		if body.Options.TaskID == "" {
			body.Options.TaskID = NewTaskID()
		}
	}
	if o.chainSet {
		body.Options.Chain, body.Options.ChainSet = o.chain, true
	} else if sig.Options.ChainSet {
		body.Options.Chain, body.Options.ChainSet = sig.Options.Chain, true
	}
	if o.parentID != "" {
		body.Options.ParentID = o.parentID
	}
	rootID := o.rootID
	if rootID == "" {
		rootID = sig.Options.RootID
	}
	if rootID != "" {
		body.Options.RootID = rootID
	}
	// The group and chord the chord belongs to (a chain step in another
	// chord's header carries them in its options) go onto the body, as
	// Celery's _chord.run updates the body's options with the chord's.
	switch {
	case o.groupID != "":
		body.Options.GroupID, body.Options.GroupIndex = o.groupID, o.groupIndex
	case sig.Options.GroupID != "":
		body.Options.GroupID, body.Options.GroupIndex = sig.Options.GroupID, sig.Options.GroupIndex
	}
	switch {
	case o.chord != nil:
		body.Options.Chord = o.chord
	case sig.Options.Chord != nil:
		body.Options.Chord = sig.Options.Chord
	}
	// The chord's errbacks go to the body and, as in Celery 5.2 where the
	// chord's options are passed on to the header group, to every member.
	body.Options.LinkError = append(body.Options.LinkError, sig.Options.LinkError...)
	if len(sig.Options.LinkError) > 0 {
		for i := range header {
			header[i] = header[i].Clone()
			header[i].Options.LinkError = append(header[i].Options.LinkError, sig.Options.LinkError...)
		}
	}
	// Celery 5.6 freezes the body with the header's group id
	// (body.freeze(task_id, group_id=group_id)), so a task body is
	// published with the group header set; 5.2 left it out.
	groupID := chordGroupID(sig)
	if groupID == "" {
		groupID = NewTaskID()
	}
	if body.Options.GroupID == "" && !isChain(body) && !isGroup(body) && !isChord(body) {
		body.Options.GroupID = groupID
	}
	freezeChainIDs(&body, rootID)
	if len(header) == 0 {
		_, err := c.apply(ctx, body, []any{[]any{}}, applyOptions{parentID: o.parentID, rootID: rootID})
		if err != nil {
			return "", err
		}
		return lastTaskID(body), nil
	}
	groupSig := protocol.NewGroup(header...)
	groupSig.Options.TaskID = groupID
	_, err = c.applyGroup(ctx, groupSig, sig.Args, applyOptions{parentID: o.parentID, rootID: rootID}, &body)
	if err != nil {
		return "", err
	}
	return lastTaskID(body), nil
}

// chordGroupID is the header group's frozen id, if the client froze one.
func chordGroupID(chord protocol.Signature) string {
	if h, ok := chord.Kwargs["header"].(map[string]any); ok {
		if hs, err := protocol.ParseSignature(h); err == nil {
			return hs.Options.TaskID
		}
	}
	return ""
}

// freezeChainIDs gives every step of a chain body a task id now, so the
// chord can report them (and store FAILURE under them) before they run.
func freezeChainIDs(sig *protocol.Signature, rootID string) {
	if !isChain(*sig) {
		return
	}
	tasks, err := sig.ChainTasks()
	if err != nil {
		return
	}
	for i := range tasks {
		if isChain(tasks[i]) {
			// A nested chain is spliced in when applied: its steps
			// need the ids.
			freezeChainIDs(&tasks[i], rootID)
			continue
		}
		if tasks[i].Options.TaskID == "" {
			tasks[i].Options.TaskID = NewTaskID()
		}
		if rootID != "" && tasks[i].Options.RootID == "" {
			tasks[i].Options.RootID = rootID
		}
	}
	list := make([]any, len(tasks))
	for i, t := range tasks {
		list[i] = t.Map()
	}
	sig.Kwargs["tasks"] = list
}

// chordSize counts the results a header produces (Celery's _chord._descend).
func chordSize(members []protocol.Signature) int {
	n := 0
	for _, m := range members {
		switch {
		case isGroup(m):
			inner, _ := m.GroupTasks()
			n += chordSize(inner)
		case isChain(m):
			inner, _ := m.ChainTasks()
			for i := len(inner) - 1; i >= 0; i-- {
				if size := chordSize(inner[i : i+1]); size > 0 {
					n += size
					break
				}
			}
		case isChord(m):
			_, body, err := m.ChordParts()
			if err == nil {
				n += chordSize([]protocol.Signature{body})
			}
		default:
			n++
		}
	}
	return n
}

// setUpChord prepares the join before the header is published: the chord
// size for a native-join backend, a celery.chord_unlock task otherwise.
func (c *Client) setUpChord(ctx context.Context, groupID string, members []protocol.Signature, body protocol.Signature) error {
	switch b := c.cfg.Backend.(type) {
	case nil:
		return errors.New("worker: chords need a result backend")
	case ChordJoiner:
		if err := b.SetChordSize(ctx, groupID, chordSize(members)); err != nil {
			return fmt.Errorf("worker: set chord size: %w", err)
		}
		return nil
	case interface{ SupportsChords() bool }:
		if !b.SupportsChords() {
			return errors.New(`worker: the "rpc" result backend does not support chords`)
		}
	}
	// Backends without a native join: poll with celery.chord_unlock. The
	// header members need their ids now, so freeze them in place.
	results := make([]any, len(members))
	for i := range members {
		if !isChain(members[i]) && members[i].Options.TaskID == "" {
			members[i].Options.TaskID = NewTaskID()
		}
		if isChain(members[i]) {
			freezeChainIDs(&members[i], "")
		}
		results[i] = []any{[]any{lastTaskID(members[i]), nil}, nil}
	}
	countdown := 1.0
	unlock := protocol.Signature{
		Task:   "celery.chord_unlock",
		Args:   []any{groupID, body.Map()},
		Kwargs: map[string]any{"interval": nil, "max_retries": nil, "result": results},
		Options: protocol.Options{
			Countdown: &countdown,
			Queue:     body.Options.Queue,
			Priority:  body.Options.Priority,
		},
	}
	if unlock.Options.Queue == "" {
		unlock.Options.Queue = c.route(body).RoutingKey
	}
	_, err := c.applyTask(ctx, unlock, nil, applyOptions{})
	return err
}

// afterSuccess runs what Celery's tracer does after a task succeeds and
// before its result is stored: callbacks, then the next chain step. It
// returns the children for the stored result.
func (c *Client) afterSuccess(ctx context.Context, req *protocol.Message, retval any) ([]any, error) {
	var children []any
	o := applyOptions{parentID: req.ID, rootID: rootIDOf(req)}
	var plain []protocol.Signature
	for _, cb := range req.Callbacks {
		if isGroup(cb) || len(req.Callbacks) == 1 {
			id, err := c.apply(ctx, cb, []any{retval}, o)
			if err != nil {
				return nil, err
			}
			children = append(children, resultTuple(id))
			continue
		}
		plain = append(plain, cb)
	}
	if len(plain) > 0 {
		gid, err := c.apply(ctx, protocol.NewGroup(plain...), []any{retval}, o)
		if err != nil {
			return nil, err
		}
		children = append(children, resultTuple(gid))
	}
	if len(req.Chain) > 0 {
		next := req.Chain[len(req.Chain)-1]
		rest := req.Chain[:len(req.Chain)-1]
		o.chain, o.chainSet = rest, true
		id, err := c.apply(ctx, next, []any{retval}, o)
		if err != nil {
			return nil, err
		}
		children = append(children, resultTuple(id))
	}
	return children, nil
}

func resultTuple(id string) any { return []any{[]any{id, nil}, nil} }

func rootIDOf(m *protocol.Message) string {
	if m.RootID != "" {
		return m.RootID
	}
	return m.ID
}

// afterFailure runs what Celery does after storing a FAILURE: the chord part
// return, FAILURE for every remaining chain step that has an id (5.1+), and
// the errbacks, applied as one group with the failed task id.
func (c *Client) afterFailure(ctx context.Context, req *protocol.Message, exc protocol.ExceptionInfo, tb string) {
	c.chordPartReturn(ctx, req, protocol.StateFailure, exc)
	for _, step := range req.Chain {
		for _, id := range taskIDsOf(step) {
			c.storeState(ctx, req, protocol.ResultMeta{TaskID: id, Status: protocol.StateFailure, Result: exc, Traceback: tb})
		}
		if step.Options.Chord != nil && step.Options.GroupID != "" {
			stepMsg := &protocol.Message{ID: step.Options.TaskID, Group: step.Options.GroupID, GroupIndex: step.Options.GroupIndex, Chord: step.Options.Chord, RootID: req.RootID}
			c.chordPartReturn(ctx, stepMsg, protocol.StateFailure, exc)
		}
	}
	if len(req.Errbacks) == 0 {
		return
	}
	c.callErrbacks(ctx, req, req.Errbacks, exc, tb, applyOptions{parentID: req.ID, rootID: rootIDOf(req)})
}

// taskIDsOf lists the frozen task ids of a signature (every step of a chain).
func taskIDsOf(s protocol.Signature) []string {
	if isChain(s) {
		tasks, _ := s.ChainTasks()
		var ids []string
		for _, t := range tasks {
			ids = append(ids, taskIDsOf(t)...)
		}
		return ids
	}
	if s.Options.TaskID != "" && !isGroup(s) {
		return []string{s.Options.TaskID}
	}
	return nil
}

// chordPartReturn joins a finished chord header member (native join only;
// chord_unlock polls otherwise).
func (c *Client) chordPartReturn(ctx context.Context, req *protocol.Message, state protocol.State, result any) {
	if req.Chord == nil || req.Group == "" {
		return
	}
	joiner, ok := c.cfg.Backend.(ChordJoiner)
	if !ok {
		return
	}
	body := *req.Chord
	fallback := 0
	if body.ChordSize != nil {
		fallback = *body.ChordSize
	}
	parts, done, err := joiner.JoinChordPart(ctx, req.Group, ChordPart{TaskID: req.ID, Index: req.GroupIndex, State: state, Result: result}, fallback)
	if err != nil {
		c.chordError(ctx, req, body, fmt.Sprintf("Join error: %v", err))
		return
	}
	if !done {
		return
	}
	c.completeChord(ctx, req, body, parts)
}

// completeChord applies the body with the ordered results, or fails it with
// a ChordError when a member failed.
func (c *Client) completeChord(ctx context.Context, req *protocol.Message, body protocol.Signature, parts []ChordPart) {
	results := make([]any, len(parts))
	for i, p := range parts {
		if p.State == protocol.StateFailure || p.State == protocol.StateRevoked {
			c.chordError(ctx, req, body, fmt.Sprintf("Dependency %s raised %s", p.TaskID, exceptionRepr(p.Result)))
			return
		}
		results[i] = p.Result
	}
	if nested, ok := c.savedGroupResults(ctx, req.Group, parts); ok {
		results = nested
	}
	rootID := body.Options.RootID
	if rootID == "" {
		rootID = rootIDOf(req)
	}
	if _, err := c.apply(ctx, body, []any{results}, applyOptions{parentID: req.ID, rootID: rootID}); err != nil {
		c.chordError(ctx, req, body, fmt.Sprintf("Callback error: %v", err))
	}
}

// chordError is Celery's chord_error_from_stack: the body's errbacks run
// with its id and FAILURE ChordError is stored under it (every step of a
// chain body, so whoever waits on any of them is told).
func (c *Client) chordError(ctx context.Context, req *protocol.Message, body protocol.Signature, reason string) {
	exc := protocol.ExceptionInfo{Module: "celery.exceptions", Type: "ChordError", Message: []any{reason}}
	tb := traceback(body.Task, lastTaskID(body), exc, nil)
	c.logError(req, errors.New(reason), "chord failed")
	errbacks := body.Options.LinkError
	if isChain(body) {
		if tasks, err := body.ChainTasks(); err == nil && len(tasks) > 0 {
			errbacks = append(errbacks, tasks[0].Options.LinkError...)
		}
	}
	// As in Celery, the errbacks run first, and the group they are
	// applied as is stored as the body's child (clients follow it from the
	// body's result to the errbacks' results). The failed request they
	// see is the body's, as chord_error_from_stack builds it.
	var children []any
	if len(errbacks) > 0 {
		failed := &protocol.Message{ID: lastTaskID(body), Task: body.Task, Args: body.Args, Kwargs: body.Kwargs,
			Errbacks: errbacks, RootID: rootIDOf(req), ParentID: req.ID, ReplyTo: req.ReplyTo}
		if child := c.callErrbacks(ctx, failed, errbacks, exc, tb, applyOptions{parentID: failed.ID, rootID: rootIDOf(req)}); child != nil {
			children = []any{child}
		}
	}
	for _, id := range taskIDsOf(body) {
		c.storeState(ctx, req, protocol.ResultMeta{TaskID: id, Status: protocol.StateFailure, Result: exc, Traceback: tb, DateDone: time.Now().UTC(), Children: children})
	}
}

// exceptionRepr renders a stored exception like Python's repr.
func exceptionRepr(v any) string {
	if e, ok := protocol.ParseExceptionInfo(v); ok {
		args := protocol.PythonRepr(e.Message)
		if len(e.Message) == 1 {
			args = protocol.PythonRepr(e.Message[0])
		} else if len(args) >= 2 {
			args = args[1 : len(args)-1]
		}
		return fmt.Sprintf("%s(%s)", e.Type, args)
	}
	return protocol.PythonRepr(v)
}

// storeState stores a state as a Python worker would for the request being
// run: date_done on ready states, children as [], the request's group and
// parent on its own states, the reply route for rpc://. Results outlive a
// soft stop, so a cancelled ctx does not stop the write. Failures are logged
// (with the task) and returned.
func (c *Client) storeState(ctx context.Context, req *protocol.Message, meta protocol.ResultMeta) error {
	if c.cfg.Backend == nil || meta.TaskID == "" {
		return nil
	}
	if meta.Status.Ready() && meta.DateDone.IsZero() {
		meta.DateDone = time.Now().UTC()
	}
	if meta.Children == nil {
		meta.Children = []any{} // what a Python worker writes
	}
	if meta.TaskID == req.ID {
		meta.GroupID = req.Group
		meta.ParentID = req.ParentID
	}
	to := ReplyRoute{ReplyTo: req.ReplyTo, CorrelationID: req.CorrelationID}
	if to.CorrelationID == "" {
		to.CorrelationID = req.ID
	}
	err := c.cfg.Backend.Store(context.WithoutCancel(ctx), meta, to)
	if err != nil {
		c.logError(req, err, fmt.Sprintf("storing %s for %s failed", meta.Status, meta.TaskID))
	}
	return err
}
