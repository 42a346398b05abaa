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
	"io"
	"math/rand/v2"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/gomodule/redigo/redis"
	"github.com/sirupsen/logrus"
	"github.com/vhg/vhg-worker/protocol"
	"github.com/vhg/vhg-worker/worker"
)

// Config configures a Backend. Every zero value has the meaning given.
type Config struct {
	// URL is redis://[:password@]host[:port][/db], or rediss:// for TLS,
	// whose query may carry Celery's options ssl_cert_reqs, ssl_ca_certs,
	// ssl_certfile and ssl_keyfile (worker.TLSFromURL); empty means
	// redis://localhost:6379/0.
	URL string
	// TLS is the TLS settings of a rediss:// URL, under those of its
	// query; the zero value checks the server's certificate against the
	// system's CAs and the URL's host.
	TLS worker.TLSFiles
	// Expires is how long states are kept (Celery's result_expires); zero
	// means one day.
	Expires time.Duration
	// MaxIdle is the number of idle connections kept; zero means 8.
	MaxIdle int
	// KeyPrefix is Celery's global_keyprefix (result_backend_transport_options
	// = {"global_keyprefix": ...}): it is put before every key the backend
	// reads or writes and every channel it publishes to, followed by "_"
	// unless it ends in one of ":_-." (backends/base.py
	// _add_global_keyprefix). Empty means none.
	KeyPrefix string
	// RetryFor is how long a write keeps retrying, with a jittered
	// exponential backoff, while Redis cannot be reached (a restart, a
	// failover) before the error is returned; a shorter ctx ends it
	// sooner. Zero means 5 minutes; a negative value means no retry.
	RetryFor time.Duration
	// Log receives the retries; nil discards them.
	Log logrus.FieldLogger
}

// Backend is Celery's redis:// result backend. The connection pool dials
// again by itself after Redis restarts; writes and chord joins retry
// across the outage (Config.RetryFor), and are idempotent, so that a
// retried write never counts twice.
type Backend struct {
	pool     *redis.Pool
	expires  int // seconds
	prefix   string
	retryFor time.Duration
	log      logrus.FieldLogger
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
	if cfg.RetryFor == 0 {
		cfg.RetryFor = 5 * time.Minute
	}
	if cfg.Log == nil {
		l := logrus.New()
		l.Out = io.Discard
		cfg.Log = l
	}
	u, err := url.Parse(cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("redis: bad URL: %w", err)
	}
	files, rawURL, err := worker.TLSFromURL(cfg.URL, cfg.TLS)
	if err != nil {
		return nil, fmt.Errorf("redis: %s: %w", redact(cfg.URL), err)
	}
	dialOpts := []redis.DialOption{redis.DialConnectTimeout(5 * time.Second)}
	switch {
	case u.Scheme == "rediss":
		tlsCfg, err := files.Config()
		if err != nil {
			return nil, fmt.Errorf("redis: %s: %w", redact(cfg.URL), err)
		}
		dialOpts = append(dialOpts, redis.DialTLSConfig(tlsCfg))
	case files != cfg.TLS:
		return nil, fmt.Errorf("redis: %s: ssl_* options need a rediss:// URL", redact(cfg.URL))
	}
	b := &Backend{
		expires:  int(cfg.Expires / time.Second),
		prefix:   GlobalKeyPrefix(cfg.KeyPrefix),
		retryFor: cfg.RetryFor,
		log:      cfg.Log,
		pool: &redis.Pool{
			MaxIdle:     cfg.MaxIdle,
			IdleTimeout: 4 * time.Minute,
			DialContext: func(ctx context.Context) (redis.Conn, error) {
				return redis.DialURLContext(ctx, rawURL, dialOpts...)
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

// GlobalKeyPrefix returns the key prefix Celery makes of a
// global_keyprefix: as given if empty or ending in one of ":_-.", else
// with "_" after it ("tenant1" -> "tenant1_celery-task-meta-<id>").
func GlobalKeyPrefix(p string) string {
	if p == "" || strings.ContainsAny(p[len(p)-1:], ":_-.") {
		return p
	}
	return p + "_"
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
	key := b.TaskKey(meta.TaskID)
	return b.do(ctx, "store "+key, func(conn redis.Conn) error {
		_, err := storeScript.DoContext(ctx, conn, key, b.expires, value)
		return err
	})
}

// do runs fn on a pooled connection, again on a new one while Redis cannot
// be reached, for up to RetryFor. fn must be idempotent.
func (b *Backend) do(ctx context.Context, what string, fn func(conn redis.Conn) error) error {
	start := time.Now()
	for attempt := 0; ; attempt++ {
		conn, err := b.pool.GetContext(ctx)
		if err == nil {
			err = fn(conn)
			conn.Close()
		}
		if err == nil {
			if attempt > 0 {
				b.log.WithFields(logrus.Fields{"op": what, "attempts": attempt + 1}).Info("redis: reachable again")
			}
			return nil
		}
		wait := backoff(attempt)
		if !retryable(err) || ctx.Err() != nil || b.retryFor < 0 || time.Since(start)+wait > b.retryFor {
			return fmt.Errorf("redis: %s: %w", what, err)
		}
		if attempt == 0 {
			b.log.WithError(err).WithField("op", what).Warn("redis: unreachable; retrying")
		}
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return fmt.Errorf("redis: %s: %w (then %w)", what, err, context.Cause(ctx))
		}
	}
}

// retryable reports the errors of a Redis that is down or not ready yet,
// as opposed to a command that Redis refused.
func retryable(err error) bool {
	var rerr redis.Error
	if errors.As(err, &rerr) {
		msg := string(rerr)
		return strings.HasPrefix(msg, "LOADING") || strings.HasPrefix(msg, "MASTERDOWN") ||
			strings.HasPrefix(msg, "TRYAGAIN") || strings.HasPrefix(msg, "READONLY")
	}
	return !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded)
}

// backoff is the wait before retry n: exponential from 100 ms, capped at
// 5 s, the upper half jittered.
func backoff(attempt int) time.Duration {
	d := 100 * time.Millisecond
	for range min(attempt, 10) {
		d *= 2
	}
	d = min(d, 5*time.Second)
	return d/2 + rand.N(d/2+1)
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
	var data []byte
	err := b.do(ctx, "GET "+b.TaskKey(taskID), func(conn redis.Conn) error {
		var err error
		data, err = redis.Bytes(redis.DoContext(conn, ctx, "GET", b.TaskKey(taskID)))
		if errors.Is(err, redis.ErrNil) {
			data, err = nil, nil
		}
		return err
	})
	if err != nil {
		return protocol.ResultMeta{}, err
	}
	if data == nil {
		return protocol.ResultMeta{TaskID: taskID, Status: protocol.StatePending}, nil
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
	key := b.groupKey(groupID, ".s")
	return b.do(ctx, "set chord size "+key, func(conn redis.Conn) error {
		conn.Send("MULTI")
		conn.Send("SETEX", key, b.expires, size)
		conn.Send("PUBLISH", key, size)
		_, err := redis.DoContext(conn, ctx, "EXEC")
		return err
	})
}

// JoinChordPart implements worker.ChordJoiner with Celery's ordered join
// (redis.py on_chord_part_return): ZADD .j [1, id, state, result] scored by
// group index, then compare the count with .s + .t; when it is reached,
// read the members in order and DEL the keys.
//
// Unlike Celery's pipeline, it runs as one script, and a task id already
// in .j is not added again: a member that ran twice (its worker died after
// the join, or its message was redelivered) counts once even when its
// second result differs from the first, and a join retried after a lost
// connection does no harm. The keys and members stay byte-compatible with
// Celery's, so Python and Go workers can join the same chord.
func (b *Backend) JoinChordPart(ctx context.Context, groupID string, part worker.ChordPart, fallbackSize int) ([]worker.ChordPart, bool, error) {
	result := part.Result
	if exc, ok := result.(protocol.ExceptionInfo); ok {
		result = exc.Map()
	}
	encoded, err := protocol.MarshalJSON([]any{1, part.TaskID, string(part.State), result})
	if err != nil {
		return nil, false, fmt.Errorf("redis: encode chord part %s: %w", part.TaskID, err)
	}
	encodedID, err := protocol.MarshalJSON(part.TaskID)
	if err != nil {
		return nil, false, fmt.Errorf("redis: encode chord part %s: %w", part.TaskID, err)
	}
	score := "+inf"
	if part.Index != nil {
		score = strconv.Itoa(*part.Index)
	}
	jkey, tkey, skey := b.groupKey(groupID, ".j"), b.groupKey(groupID, ".t"), b.groupKey(groupID, ".s")
	var reply []any
	err = b.do(ctx, "join chord "+groupID, func(conn redis.Conn) error {
		var err error
		reply, err = redis.Values(joinScript.DoContext(ctx, conn, jkey, tkey, skey,
			encodedID, encoded, score, b.expires, fallbackSize))
		return err
	})
	if err != nil {
		return nil, false, err
	}
	if len(reply) < 2 {
		return nil, false, nil
	}
	members, err := redis.ByteSlices(reply[1], nil)
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
	return parts, true, nil
}

// joinScript is the chord join. KEYS: .j .t .s; ARGV: the task id as JSON,
// the member, its score, the expiry in seconds, the size to use when .s
// is missing (0: none). It returns {0} while the chord is incomplete and
// {1, members in order} once, when it completes; the keys are then deleted,
// unless a member failed (Celery keeps them for inspection then).
var joinScript = redis.NewScript(3, `
local found = false
local prefixes = {'[1, ' .. ARGV[1], '[1,' .. ARGV[1]}
for _, m in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  for _, p in ipairs(prefixes) do
    if string.sub(m, 1, #p) == p then
      local rest = string.sub(m, #p + 1, #p + 1)
      if rest == ',' or rest == ']' then found = true end
    end
  end
  if found then break end
end
if not found then
  redis.call('ZADD', KEYS[1], ARGV[3], ARGV[2])
end
local ready = redis.call('ZCOUNT', KEYS[1], '-inf', '+inf')
local extra = tonumber(redis.call('GET', KEYS[2]) or '0') or 0
local sv = redis.call('GET', KEYS[3])
redis.call('EXPIRE', KEYS[1], ARGV[4])
redis.call('EXPIRE', KEYS[2], ARGV[4])
redis.call('EXPIRE', KEYS[3], ARGV[4])
local size = sv and tonumber(sv)
if not size then
  size = tonumber(ARGV[5])
  if not size or size == 0 then return {0} end
end
if ready ~= size + extra then return {0} end
local members = redis.call('ZRANGE', KEYS[1], 0, -1)
-- As in Celery, a chord with a failed or revoked member keeps its keys
-- (until they expire), so the results of the others can still be read.
for _, m in ipairs(members) do
  local ok, part = pcall(cjson.decode, m)
  if ok and (part[3] == 'FAILURE' or part[3] == 'REVOKED') then
    -- Without .s a member joining again (a redelivery) completes nothing.
    redis.call('DEL', KEYS[2], KEYS[3])
    return {1, members}
  end
end
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3])
return {1, members}
`)

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
