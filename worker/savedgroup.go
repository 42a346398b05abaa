package worker

import (
	"context"
	"fmt"

	"github.com/vhg/vhg-worker/protocol"
)

// GroupReader is implemented by result backends that keep the group
// results clients save (GroupResult.save(): celery-taskset-meta-<gid> on
// Redis). A Python client saves the header of a chord whose members are
// themselves groups, so that the body gets nested result lists instead of
// a flat one.
type GroupReader interface {
	// SavedGroup returns the saved result tuple of groupID,
	// ((gid, parent), [member tuples]), and false when none was saved.
	SavedGroup(ctx context.Context, groupID string) (tuple any, ok bool, err error)
}

// savedGroupResults shapes a completed chord's results after the group
// result saved for it, as Celery's on_chord_part_return joins a restored
// GroupResult: a member that is a group gives the list of its members'
// results. It returns false when nothing was saved or the saved tuple does
// not read, and the flat results are then used.
func (c *Client) savedGroupResults(ctx context.Context, groupID string, parts []ChordPart) ([]any, bool) {
	reader, ok := c.cfg.Backend.(GroupReader)
	if !ok {
		return nil, false
	}
	tuple, ok, err := reader.SavedGroup(ctx, groupID)
	if err != nil || !ok {
		return nil, false
	}
	byID := make(map[string]any, len(parts))
	for _, p := range parts {
		byID[p.TaskID] = p.Result
	}
	results, err := c.joinTuple(ctx, tuple, byID)
	if err != nil {
		c.logError(&protocol.Message{Group: groupID}, err, "reading the saved group result failed; the chord body gets the flat results")
		return nil, false
	}
	list, ok := results.([]any)
	return list, ok
}

// joinTuple returns the result of a result tuple: a task's result, or for
// a group the list of its members' results.
func (c *Client) joinTuple(ctx context.Context, tuple any, byID map[string]any) (any, error) {
	pair, ok := tuple.([]any)
	if !ok || len(pair) != 2 {
		return nil, fmt.Errorf("worker: bad result tuple %v", tuple)
	}
	if members, isGroup := pair[1].([]any); isGroup {
		out := make([]any, len(members))
		for i, m := range members {
			r, err := c.joinTuple(ctx, m, byID)
			if err != nil {
				return nil, err
			}
			out[i] = r
		}
		return out, nil
	}
	head, ok := pair[0].([]any)
	if !ok || len(head) == 0 {
		return nil, fmt.Errorf("worker: bad result tuple %v", tuple)
	}
	id, ok := head[0].(string)
	if !ok {
		return nil, fmt.Errorf("worker: bad task id in result tuple %v", tuple)
	}
	if r, ok := byID[id]; ok {
		return r, nil
	}
	reader, ok := c.cfg.Backend.(ResultReader)
	if !ok {
		return nil, fmt.Errorf("worker: result of %s: %w", id, ErrNoResultReader)
	}
	meta, err := reader.Result(ctx, id)
	if err != nil {
		return nil, err
	}
	return meta.Result, nil
}
