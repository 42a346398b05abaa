package protocol

import "fmt"

// Task names of Celery's canvas primitives.
const (
	TaskChain = "celery.chain"
	TaskGroup = "celery.group"
	TaskChord = "celery.chord"
)

// NewChain returns the signature Python's chain(*tasks) serializes to:
// task celery.chain, subtask_type "chain", kwargs {"tasks": [...]} in
// forward order.
func NewChain(tasks ...Signature) Signature {
	return Signature{
		Task:        TaskChain,
		Args:        []any{},
		Kwargs:      map[string]any{"tasks": signatureMaps(tasks)},
		SubtaskType: SubtaskChain,
	}
}

// NewGroup returns the signature Python's group(tasks) serializes to:
// task celery.group, subtask_type "group", kwargs {"tasks": [...]}.
func NewGroup(tasks ...Signature) Signature {
	return Signature{
		Task:        TaskGroup,
		Args:        []any{},
		Kwargs:      map[string]any{"tasks": signatureMaps(tasks)},
		SubtaskType: SubtaskGroup,
	}
}

// NewChord returns the signature Python's chord(header, body) serializes to:
// task celery.chord, subtask_type "chord", kwargs {"kwargs": {}, "header":
// <celery.group signature>, "body": <body>}.
func NewChord(header []Signature, body Signature) Signature {
	return Signature{
		Task: TaskChord,
		Args: []any{},
		Kwargs: map[string]any{
			"kwargs": map[string]any{},
			"header": NewGroup(header...).Map(),
			"body":   body.Map(),
		},
		SubtaskType: SubtaskChord,
	}
}

// ChainTasks returns the steps of a chain signature, in forward order, from
// kwargs["tasks"]. The chain's own Args, if any, are partial args for the
// first step; they are not merged here.
func (s Signature) ChainTasks() ([]Signature, error) {
	return s.memberTasks(SubtaskChain)
}

// GroupTasks returns the members of a group signature, from
// kwargs["tasks"]. The group's own Args, if any, are partial args for every
// member; they are not merged here.
func (s Signature) GroupTasks() ([]Signature, error) {
	return s.memberTasks(SubtaskGroup)
}

func (s Signature) memberTasks(kind string) ([]Signature, error) {
	tasks, ok := s.Kwargs["tasks"]
	if !ok {
		return nil, fmt.Errorf("protocol: %s signature %s has no kwargs.tasks", kind, s.Task)
	}
	sigs, err := ParseSignatures(tasks)
	if err != nil {
		return nil, fmt.Errorf("protocol: %s signature %s: %w", kind, s.Task, unprefixed(err))
	}
	return sigs, nil
}

// ChordParts returns the header tasks and the body of a chord signature.
// The header may be a group signature (as Python writes a frozen chord), a
// single signature or a plain list of signatures.
func (s Signature) ChordParts() (header []Signature, body Signature, err error) {
	h, ok := s.Kwargs["header"]
	if !ok {
		return nil, Signature{}, fmt.Errorf("protocol: chord signature %s has no kwargs.header", s.Task)
	}
	b, ok := s.Kwargs["body"]
	if !ok || b == nil {
		return nil, Signature{}, fmt.Errorf("protocol: chord signature %s has no kwargs.body", s.Task)
	}
	if header, err = ParseSignatures(h); err != nil {
		return nil, Signature{}, fmt.Errorf("protocol: chord header: %w", unprefixed(err))
	}
	if _, isList := h.([]any); !isList && len(header) == 1 &&
		(header[0].SubtaskType == SubtaskGroup || header[0].SubtaskType == SubtaskChain) {
		// Python's _maybe_group: a group or chain header stands for its tasks.
		if header, err = header[0].memberTasks(header[0].SubtaskType); err != nil {
			return nil, Signature{}, fmt.Errorf("protocol: chord header: %w", unprefixed(err))
		}
	}
	if body, err = ParseSignature(b); err != nil {
		return nil, Signature{}, fmt.Errorf("protocol: chord body: %w", unprefixed(err))
	}
	return header, body, nil
}
