package redis

import (
	"context"
	"errors"
	"fmt"

	"github.com/gomodule/redigo/redis"
	"github.com/vhg/vhg-worker/protocol"
	"github.com/vhg/vhg-worker/worker"
)

var _ worker.GroupReader = (*Backend)(nil)

// SavedGroup implements worker.GroupReader: the "result" of the group
// result a client saved under celery-taskset-meta-<gid>.
func (b *Backend) SavedGroup(ctx context.Context, groupID string) (any, bool, error) {
	key := b.groupKey(groupID, "")
	var data []byte
	err := b.do(ctx, "GET "+key, func(conn redis.Conn) error {
		var err error
		data, err = redis.Bytes(redis.DoContext(conn, ctx, "GET", key))
		if errors.Is(err, redis.ErrNil) {
			data, err = nil, nil
		}
		return err
	})
	if err != nil || data == nil {
		return nil, false, err
	}
	v, err := protocol.UnmarshalJSON(data)
	if err != nil {
		return nil, false, fmt.Errorf("redis: saved group %s: %w", groupID, err)
	}
	saved, ok := v.(map[string]any)
	if !ok {
		return nil, false, fmt.Errorf("redis: saved group %s is not a dict", groupID)
	}
	tuple, ok := saved["result"]
	return tuple, ok && tuple != nil, nil
}
