// Package redis is the Redis result backend of the worker, byte-compatible
// with Celery's: task states under celery-task-meta-<id> (SETEX + PUBLISH,
// never overwriting SUCCESS) and the native chord join under
// celery-taskset-meta-<gid>.j/.t/.s, so Python and Go workers can store
// results for each other and join the same chords.
package redis

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/gomodule/redigo/redis"
	"github.com/vhg/vhg-worker/protocol"
	"github.com/vhg/vhg-worker/worker"
)

// Config configures a Backend. Every zero value has the meaning given.
type Config struct {
	// URL is redis://[:password@]host[:port][/db]; empty means
	// redis://localhost:6379/0.
	URL string
	// Expires is how long states are kept (Celery's result_expires); zero
	// means one day.
	Expires time.Duration
	// MaxIdle is the number of idle connections kept; zero means 8.
	MaxIdle int
	// KeyPrefix is Celery's global_keyprefix; empty means none.
	KeyPrefix string
}

// Backend is Celery's redis:// result backend.
type Backend struct {
	pool    *redis.Pool
	expires int // seconds
	prefix  string
}

var (
	_ worker.Backend      = (*Backend)(nil)
	_ worker.ResultReader = (*Backend)(nil)
	_ worker.ChordJoiner  = (*Backend)(nil)
)

// New returns a Backend and checks that Redis answers.
func New(ctx context.Context, cfg Config) (*Backend, error) {
	if cfg.URL == "" {
		cfg.URL = "redis://localhost:6379/0"
	}
	if cfg.Expires == 0 {
		cfg.Expires = 24 * time.Hour
	}
	if cfg.MaxIdle == 0 {
		cfg.MaxIdle = 8
	}
	if _, err := url.Parse(cfg.URL); err != nil {
		return nil, fmt.Errorf("redis: bad URL: %w", err)
	}
	rawURL := cfg.URL
	b := &Backend{
		expires: int(cfg.Expires / time.Second),
		prefix:  cfg.KeyPrefix,
		pool: &redis.Pool{
			MaxIdle:     cfg.MaxIdle,
			IdleTimeout: 4 * time.Minute,
			DialContext: func(ctx context.Context) (redis.Conn, error) {
				return redis.DialURLContext(ctx, rawURL, redis.DialConnectTimeout(5*time.Second))
			},
			TestOnBorrow: func(c redis.Conn, idle time.Time) error {
				if time.Since(idle) < time.Minute {
					return nil
				}
				_, err := c.Do("PING")
				return err
			},
		},
	}
	conn, err := b.pool.GetContext(ctx)
	if err != nil {
		return nil, fmt.Errorf("redis: connect to %s: %w", redact(cfg.URL), err)
	}
	defer conn.Close()
	if _, err := conn.Do("PING"); err != nil {
		return nil, fmt.Errorf("redis: connect to %s: %w", redact(cfg.URL), err)
	}
	return b, nil
}

func redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "<unparsable URL>"
	}
	return u.Redacted()
}

// Close releases the connections.
func (b *Backend) Close() error { return b.pool.Close() }

// TaskKey is the key of a task's state.
func (b *Backend) TaskKey(taskID string) string { return b.prefix + "celery-task-meta-" + taskID }

func (b *Backend) groupKey(groupID, suffix string) string {
	return b.prefix + "celery-taskset-meta-" + groupID + suffix
}

// Store implements worker.Backend: SETEX + PUBLISH of the full meta, skipped
// when the key already holds SUCCESS (Celery 4.4.3+).
func (b *Backend) Store(ctx context.Context, meta protocol.ResultMeta, _ worker.ReplyRoute) error {
	value, err := meta.JSON()
	if err != nil {
		return fmt.Errorf("redis: encode state of %s: %w", meta.TaskID, err)
	}
	conn, err := b.pool.GetContext(ctx)
	if err != nil {
		return fmt.Errorf("redis: %w", err)
	}
	defer conn.Close()
	key := b.TaskKey(meta.TaskID)
	if _, err := storeScript.DoContext(ctx, conn, key, b.expires, value); err != nil {
		return fmt.Errorf("redis: store %s: %w", key, err)
	}
	return nil
}

// storeScript is Celery's write in one atomic round trip: GET the key, keep
// it if it already holds SUCCESS, else SETEX and PUBLISH the new value.
// Celery does the same with a GET and a pipeline; doing it server-side also
// closes the race between two writers.
var storeScript = redis.NewScript(1, `
local current = redis.call('GET', KEYS[1])
if current then
  local ok, meta = pcall(cjson.decode, current)
  if ok and type(meta) == 'table' and meta['status'] == 'SUCCESS' then
    return 0
  end
end
redis.call('SETEX', KEYS[1], ARGV[1], ARGV[2])
redis.call('PUBLISH', KEYS[1], ARGV[2])
return 1
`)

// Result implements worker.ResultReader.
func (b *Backend) Result(ctx context.Context, taskID string) (protocol.ResultMeta, error) {
	conn, err := b.pool.GetContext(ctx)
	if err != nil {
		return protocol.ResultMeta{}, fmt.Errorf("redis: %w", err)
	}
	defer conn.Close()
	data, err := redis.Bytes(redis.DoContext(conn, ctx, "GET", b.TaskKey(taskID)))
	if errors.Is(err, redis.ErrNil) {
		return protocol.ResultMeta{TaskID: taskID, Status: protocol.StatePending}, nil
	}
	if err != nil {
		return protocol.ResultMeta{}, fmt.Errorf("redis: GET %s: %w", b.TaskKey(taskID), err)
	}
	meta, err := protocol.ParseResultMeta(data)
	if err != nil {
		return protocol.ResultMeta{}, fmt.Errorf("redis: state of %s: %w", taskID, err)
	}
	if meta.TaskID == "" {
		meta.TaskID = taskID
	}
	return meta, nil
}

// SetChordSize implements worker.ChordJoiner (Celery's set_chord_size).
func (b *Backend) SetChordSize(ctx context.Context, groupID string, size int) error {
	conn, err := b.pool.GetContext(ctx)
	if err != nil {
		return fmt.Errorf("redis: %w", err)
	}
	defer conn.Close()
	key := b.groupKey(groupID, ".s")
	conn.Send("MULTI")
	conn.Send("SETEX", key, b.expires, size)
	conn.Send("PUBLISH", key, size)
	if _, err := redis.DoContext(conn, ctx, "EXEC"); err != nil {
		return fmt.Errorf("redis: set chord size %s: %w", key, err)
	}
	return nil
}

// JoinChordPart implements worker.ChordJoiner with Celery's ordered join
// (redis.py on_chord_part_return): ZADD .j [1, id, state, result] scored by
// group index, then compare the count with .s + .t.
func (b *Backend) JoinChordPart(ctx context.Context, groupID string, part worker.ChordPart, fallbackSize int) ([]worker.ChordPart, bool, error) {
	result := part.Result
	if exc, ok := result.(protocol.ExceptionInfo); ok {
		result = exc.Map()
	}
	encoded, err := protocol.MarshalJSON([]any{1, part.TaskID, string(part.State), result})
	if err != nil {
		return nil, false, fmt.Errorf("redis: encode chord part %s: %w", part.TaskID, err)
	}
	score := "+inf"
	if part.Index != nil {
		score = strconv.Itoa(*part.Index)
	}
	jkey, tkey, skey := b.groupKey(groupID, ".j"), b.groupKey(groupID, ".t"), b.groupKey(groupID, ".s")
	conn, err := b.pool.GetContext(ctx)
	if err != nil {
		return nil, false, fmt.Errorf("redis: %w", err)
	}
	defer conn.Close()
	conn.Send("MULTI")
	conn.Send("ZADD", jkey, score, encoded)
	conn.Send("ZCOUNT", jkey, "-inf", "+inf")
	conn.Send("GET", tkey)
	conn.Send("GET", skey)
	conn.Send("EXPIRE", jkey, b.expires)
	conn.Send("EXPIRE", tkey, b.expires)
	conn.Send("EXPIRE", skey, b.expires)
	replies, err := redis.Values(redis.DoContext(conn, ctx, "EXEC"))
	if err != nil {
		return nil, false, fmt.Errorf("redis: join chord %s: %w", groupID, err)
	}
	ready, _ := redis.Int(replies[1], nil)
	extra, _ := redis.Int(replies[2], nil)
	size, err := redis.Int(replies[3], nil)
	if err != nil {
		// No .s: a Celery 4.x/5.0 client sent chord_size in the body instead.
		if fallbackSize == 0 {
			return nil, false, nil
		}
		size = fallbackSize
	}
	if ready != size+extra {
		return nil, false, nil
	}
	members, err := redis.ByteSlices(redis.DoContext(conn, ctx, "ZRANGE", jkey, 0, -1))
	if err != nil {
		return nil, false, fmt.Errorf("redis: read chord %s: %w", groupID, err)
	}
	parts := make([]worker.ChordPart, 0, len(members))
	for _, m := range members {
		p, err := decodeChordPart(m)
		if err != nil {
			return nil, false, fmt.Errorf("redis: chord %s: %w", groupID, err)
		}
		parts = append(parts, p)
	}
	if _, err := redis.DoContext(conn, ctx, "DEL", jkey, tkey, skey); err != nil {
		return nil, false, fmt.Errorf("redis: clear chord %s: %w", groupID, err)
	}
	return parts, true, nil
}

// decodeChordPart reads a .j member [1, id, state, result].
func decodeChordPart(data []byte) (worker.ChordPart, error) {
	v, err := protocol.UnmarshalJSON(data)
	if err != nil {
		return worker.ChordPart{}, err
	}
	tuple, ok := v.([]any)
	if !ok || len(tuple) != 4 {
		return worker.ChordPart{}, fmt.Errorf("bad chord member %s", truncate(data))
	}
	id, _ := tuple[1].(string)
	state, _ := tuple[2].(string)
	return worker.ChordPart{TaskID: id, State: protocol.State(state), Result: tuple[3]}, nil
}

func truncate(b []byte) string {
	s := string(b)
	if len(s) > 200 {
		s = s[:200] + "..."
	}
	return strings.ToValidUTF8(s, "?")
}
