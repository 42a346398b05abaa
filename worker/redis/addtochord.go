package redis

import (
	"context"

	"github.com/gomodule/redigo/redis"
	"github.com/vhg/vhg-worker/worker"
)

var _ worker.ChordExtender = (*Backend)(nil)

// AddToChord implements worker.ChordExtender as Celery's Redis backend
// does (add_to_chord): INCR celery-taskset-meta-<gid>.t, which the chord
// join adds to the chord size. The key expires with the chord's others.
func (b *Backend) AddToChord(ctx context.Context, groupID string) error {
	key := b.groupKey(groupID, ".t")
	return b.do(ctx, "add to chord "+key, func(conn redis.Conn) error {
		conn.Send("MULTI")
		conn.Send("INCR", key)
		conn.Send("EXPIRE", key, b.expires)
		_, err := redis.DoContext(conn, ctx, "EXEC")
		return err
	})
}
