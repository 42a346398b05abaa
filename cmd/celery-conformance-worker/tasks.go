package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/gomodule/redigo/redis"
	"github.com/vhg/vhg-worker/protocol"
	"github.com/vhg/vhg-worker/worker"
)

// prefix is the module of Celery's integration test tasks; every task is
// registered under prefix + its Python function name.
const prefix = "t.integration.tasks."

// suiteTasks holds what the tasks share: the Redis connection the Python
// tasks open with get_redis_connection(), and the per-process attempt
// counter of the retry task (Python keeps it on the task object).
type suiteTasks struct {
	redis    *redis.Pool
	attempts atomic.Int64
}

// register registers every task of t/integration/tasks.py (v5.2.6), the
// v5.6 suite's mul, xsum, redis_echo_group_id and replaced_with_me, plus
// celery.ping, which the suite's worker fixture uses.
func (s *suiteTasks) register(mux *worker.ServeMux) {
	handle := func(name string, f worker.HandlerFunc, opts ...worker.TaskOption) {
		mux.Handle(prefix+name, f, opts...)
	}
	handle("identity", s.identity)
	handle("add", s.add("add"))
	handle("add_not_typed", s.add("add_not_typed"))
	handle("add_ignore_result", s.add("add_ignore_result"), worker.IgnoreResult())
	handle("write_to_file_and_return_int", s.writeToFileAndReturnInt)
	handle("raise_error", s.raiseError)
	handle("chain_add", s.chainAdd)
	handle("chord_add", s.chordAdd)
	handle("delayed_sum", s.delayedSum("delayed_sum", false))
	handle("delayed_sum_with_soft_guard", s.delayedSum("delayed_sum_with_soft_guard", true))
	handle("tsum", s.tsum)
	handle("add_replaced", s.addReplaced)
	handle("replace_with_chain", s.replaceWithChain("replace_with_chain", false))
	handle("replace_with_chain_which_raises", s.replaceWithChain("replace_with_chain_which_raises", true))
	handle("replace_with_empty_chain", s.replaceWithEmptyChain)
	handle("add_to_all", s.addToAll)
	handle("add_to_all_to_chord", s.addToAllToChord)
	handle("add_chord_to_chord", s.addChordToChord)
	handle("print_unicode", s.printUnicode)
	handle("return_exception", s.returnException)
	handle("sleeping", s.sleeping)
	handle("ids", s.ids)
	handle("collect_ids", s.collectIDs)
	handle("retry", s.retry, worker.MaxRetries(3))
	handle("retry_once", s.retryOnce("retry_once", false), worker.MaxRetries(1))
	handle("retry_once_priority", s.retryOnce("retry_once_priority", true), worker.MaxRetries(1))
	handle("redis_echo", s.redisEcho)
	handle("redis_count", s.redisCount)
	handle("second_order_replace1", s.secondOrderReplace("second_order_replace1", "A"))
	handle("second_order_replace2", s.secondOrderReplace("second_order_replace2", "B"))
	handle("build_chain_inside_task", s.buildChainInsideTask)
	handle("fail", s.fail)
	handle("fail_replaced", s.failReplaced)
	handle("return_priority", s.returnPriority)
	handle("return_properties", s.returnProperties)
	for name, build := range nestedSignatures {
		handle(name, returnSignature(name, build))
	}
	handle("rebuild_signature", s.rebuildSignature)
	handle("errback_old_style", s.errbackOldStyle)
	mux.HandleErrback(prefix+"errback_new_style", s.errbackNewStyle)
	mux.Handle("auto_retry_class_task", worker.HandlerFunc(s.autoRetryClassTask), worker.MaxRetries(1))
	// Celery 5.6's suite.
	handle("mul", s.mul)
	handle("xsum", s.xsum)
	handle("redis_echo_group_id", s.redisEchoGroupID)
	handle("replaced_with_me", func(context.Context, *worker.Task) (any, error) { return true, nil })
	mux.HandleFunc("celery.ping", func(context.Context, *worker.Task) (any, error) { return "pong", nil })
}

// sig is task.s(*args): a mutable signature of one of the suite's tasks.
func sig(name string, args ...any) protocol.Signature {
	if args == nil {
		args = []any{}
	}
	return protocol.Signature{Task: prefix + name, Args: args, Kwargs: map[string]any{}}
}

// si is task.si(*args): an immutable signature.
func si(name string, args ...any) protocol.Signature {
	s := sig(name, args...)
	s.Immutable = true
	return s
}

// expectedException is the suite's ExpectedException, which the Python
// client rebuilds from its module and name.
func expectedException(args ...any) error {
	return &worker.TaskError{Module: "t.integration.tasks", Type: "ExpectedException", Args: args}
}

// sleep waits d, or returns the context's cause (a soft time limit, a
// revoke) as Python's time.sleep is interrupted by SoftTimeLimitExceeded.
func sleep(ctx context.Context, seconds float64) error {
	timer := time.NewTimer(time.Duration(seconds * float64(time.Second)))
	defer timer.Stop()
	select {
	case <-timer.C:
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

func (s *suiteTasks) identity(_ context.Context, t *worker.Task) (any, error) {
	b, err := pyParams{fn: "identity", names: []string{"x"}, required: 1}.bind(t)
	if err != nil {
		return nil, err
	}
	return b.named["x"], nil
}

// add is add(x, y, z=None): x + y, plus z when z is truthy.
func (s *suiteTasks) add(fn string) worker.HandlerFunc {
	return func(_ context.Context, t *worker.Task) (any, error) {
		b, err := pyParams{fn: fn, names: []string{"x", "y", "z"}, required: 2}.bind(t)
		if err != nil {
			return nil, err
		}
		sum, err := pyAdd(b.named["x"], b.named["y"])
		if err != nil || !pyTruthy(b.named["z"]) {
			return sum, err
		}
		return pyAdd(sum, b.named["z"])
	}
}

func (s *suiteTasks) writeToFileAndReturnInt(_ context.Context, t *worker.Task) (any, error) {
	b, err := pyParams{fn: "write_to_file_and_return_int", names: []string{"file_name", "i"}, required: 2}.bind(t)
	if err != nil {
		return nil, err
	}
	name, err := b.str("file_name")
	if err != nil {
		return nil, err
	}
	line, err := redisValue(b.named["i"])
	if err != nil {
		return nil, err
	}
	f, err := os.OpenFile(name, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return nil, worker.NewTaskError("OSError", "%v", err)
	}
	defer f.Close()
	if _, err := f.WriteString(line + "\n"); err != nil {
		return nil, worker.NewTaskError("OSError", "%v", err)
	}
	return b.named["i"], nil
}

func (s *suiteTasks) raiseError(context.Context, *worker.Task) (any, error) {
	return nil, worker.NewTaskError("ValueError", "deliberate error")
}

// chainAdd applies (add.s(x, x) | add.s(y)) and returns None.
func (s *suiteTasks) chainAdd(ctx context.Context, t *worker.Task) (any, error) {
	b, err := pyParams{fn: "chain_add", names: []string{"x", "y"}, required: 2}.bind(t)
	if err != nil {
		return nil, err
	}
	_, err = t.Client().Apply(ctx, protocol.NewChain(sig("add", b.named["x"], b.named["x"]), sig("add", b.named["y"])))
	return nil, err
}

// chordAdd applies chord(add.s(x, x), add.s(y)) and returns None.
func (s *suiteTasks) chordAdd(ctx context.Context, t *worker.Task) (any, error) {
	b, err := pyParams{fn: "chord_add", names: []string{"x", "y"}, required: 2}.bind(t)
	if err != nil {
		return nil, err
	}
	header := []protocol.Signature{sig("add", b.named["x"], b.named["x"])}
	_, err = t.Client().Apply(ctx, protocol.NewChord(header, sig("add", b.named["y"])))
	return nil, err
}

// delayedSum sleeps pause_time seconds then sums numbers. With guard, a
// soft time limit during the sleep makes it return 0 (the Python task
// catches SoftTimeLimitExceeded).
func (s *suiteTasks) delayedSum(fn string, guard bool) worker.HandlerFunc {
	return func(ctx context.Context, t *worker.Task) (any, error) {
		b, err := pyParams{fn: fn, names: []string{"numbers", "pause_time"}, required: 1,
			defaults: map[string]any{"pause_time": int64(1)}}.bind(t)
		if err != nil {
			return nil, err
		}
		pause, err := pySeconds(b.named["pause_time"])
		if err != nil {
			return nil, err
		}
		if err := sleep(ctx, pause); err != nil {
			if guard && errors.Is(err, worker.ErrSoftTimeLimitExceeded) {
				return int64(0), nil
			}
			return nil, err
		}
		return pySum(b.named["numbers"])
	}
}

func (s *suiteTasks) tsum(_ context.Context, t *worker.Task) (any, error) {
	b, err := pyParams{fn: "tsum", names: []string{"nums"}, required: 1}.bind(t)
	if err != nil {
		return nil, err
	}
	return pySum(b.named["nums"])
}

// mul is x * y on numbers.
func (s *suiteTasks) mul(_ context.Context, t *worker.Task) (any, error) {
	b, err := pyParams{fn: "mul", names: []string{"x", "y"}, required: 2}.bind(t)
	if err != nil {
		return nil, err
	}
	return pyMul(b.named["x"], b.named["y"])
}

// xsum is sum(sum(num) if iterable else num for num in nums).
func (s *suiteTasks) xsum(_ context.Context, t *worker.Task) (any, error) {
	b, err := pyParams{fn: "xsum", names: []string{"nums"}, required: 1}.bind(t)
	if err != nil {
		return nil, err
	}
	nums, ok := b.named["nums"].([]any)
	if !ok {
		return nil, worker.NewTaskError("TypeError", "'%s' object is not iterable", pyTypeName(b.named["nums"]))
	}
	flat := make([]any, len(nums))
	for i, n := range nums {
		flat[i] = n
		if list, ok := n.([]any); ok {
			if flat[i], err = pySum(list); err != nil {
				return nil, err
			}
		}
	}
	return pySum(flat)
}

func (s *suiteTasks) addReplaced(ctx context.Context, t *worker.Task) (any, error) {
	b, err := pyParams{fn: "add_replaced", names: []string{"x", "y"}, required: 2}.bind(t)
	if err != nil {
		return nil, err
	}
	return nil, t.Replace(ctx, sig("add", b.named["x"], b.named["y"]))
}

// replaceWithChain replaces the task with chain(identity.s(*args),
// identity.s()) (or raise_error.s() as the second step), with
// redis_echo.s() linked as callback (or errback); with link_msg, the echo
// is immutable and echoes link_msg.
func (s *suiteTasks) replaceWithChain(fn string, raises bool) worker.HandlerFunc {
	return func(ctx context.Context, t *worker.Task) (any, error) {
		b, err := pyParams{fn: fn, varargs: true, kwonly: map[string]any{"link_msg": nil}}.bind(t)
		if err != nil {
			return nil, err
		}
		second := sig("identity")
		if raises {
			second = sig("raise_error")
		}
		c := protocol.NewChain(sig("identity", b.rest...), second)
		link := sig("redis_echo")
		if msg := b.named["link_msg"]; msg != nil {
			link = si("redis_echo", msg)
		}
		if raises {
			c.Options.LinkError = append(c.Options.LinkError, link)
		} else {
			c.Options.Link = append(c.Options.Link, link)
		}
		return nil, t.Replace(ctx, c)
	}
}

func (s *suiteTasks) replaceWithEmptyChain(ctx context.Context, t *worker.Task) (any, error) {
	return nil, t.Replace(ctx, protocol.NewChain())
}

// addSigs is [add.s(num, val) for num in nums].
func addSigs(t *worker.Task, fn string) ([]protocol.Signature, error) {
	b, err := pyParams{fn: fn, names: []string{"nums", "val"}, required: 2}.bind(t)
	if err != nil {
		return nil, err
	}
	nums, err := b.list("nums")
	if err != nil {
		return nil, err
	}
	sigs := make([]protocol.Signature, len(nums))
	for i, n := range nums {
		sigs[i] = sig("add", n, b.named["val"])
	}
	return sigs, nil
}

func (s *suiteTasks) addToAll(ctx context.Context, t *worker.Task) (any, error) {
	sigs, err := addSigs(t, "add_to_all")
	if err != nil {
		return nil, err
	}
	return nil, t.Replace(ctx, protocol.NewGroup(sigs...))
}

func (s *suiteTasks) addToAllToChord(ctx context.Context, t *worker.Task) (any, error) {
	sigs, err := addSigs(t, "add_to_all_to_chord")
	if err != nil {
		return nil, err
	}
	for _, sg := range sigs {
		if _, err := t.AddToChord(ctx, sg); err != nil {
			return nil, err
		}
	}
	return int64(0), nil
}

func (s *suiteTasks) addChordToChord(ctx context.Context, t *worker.Task) (any, error) {
	sigs, err := addSigs(t, "add_chord_to_chord")
	if err != nil {
		return nil, err
	}
	if _, err := t.AddToChord(ctx, protocol.NewChord(sigs, sig("tsum"))); err != nil {
		return nil, err
	}
	return int64(0), nil
}

func (s *suiteTasks) printUnicode(_ context.Context, t *worker.Task) (any, error) {
	b, err := pyParams{fn: "print_unicode", names: []string{"log_message", "print_message"},
		defaults: map[string]any{"log_message": "håå®ƒ valmuefrø", "print_message": "hiöäüß"}}.bind(t)
	if err != nil {
		return nil, err
	}
	t.Log.Warn(fmt.Sprint(b.named["log_message"]))
	fmt.Println(b.named["print_message"])
	return nil, nil
}

func (s *suiteTasks) returnException(_ context.Context, t *worker.Task) (any, error) {
	b, err := pyParams{fn: "return_exception", names: []string{"e"}, required: 1}.bind(t)
	if err != nil {
		return nil, err
	}
	return []any{b.named["e"], true}, nil
}

func (s *suiteTasks) sleeping(ctx context.Context, t *worker.Task) (any, error) {
	b, err := pyParams{fn: "sleeping", names: []string{"i"}, required: 1, varkw: true}.bind(t)
	if err != nil {
		return nil, err
	}
	secs, err := pySeconds(b.named["i"])
	if err != nil {
		return nil, err
	}
	return nil, sleep(ctx, secs)
}

// pyOptional is "" as None.
func pyOptional(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// ids returns (root_id, parent_id, i).
func (s *suiteTasks) ids(_ context.Context, t *worker.Task) (any, error) {
	b, err := pyParams{fn: "ids", names: []string{"i"}, required: 1}.bind(t)
	if err != nil {
		return nil, err
	}
	return []any{pyOptional(t.RootID()), pyOptional(t.ParentID()), b.named["i"]}, nil
}

// collectIDs returns (res, (root_id, parent_id, i)).
func (s *suiteTasks) collectIDs(_ context.Context, t *worker.Task) (any, error) {
	b, err := pyParams{fn: "collect_ids", names: []string{"res", "i"}, required: 2}.bind(t)
	if err != nil {
		return nil, err
	}
	return []any{b.named["res"], []any{pyOptional(t.RootID()), pyOptional(t.ParentID()), b.named["i"]}}, nil
}

// retry retries every 5 s with ExpectedException; with return_value it
// returns it after three attempts counted in this process.
func (s *suiteTasks) retry(_ context.Context, t *worker.Task) (any, error) {
	b, err := pyParams{fn: "retry", names: []string{"return_value"}}.bind(t)
	if err != nil {
		return nil, err
	}
	if rv := b.named["return_value"]; pyTruthy(rv) {
		attempt := s.attempts.Load()
		fmt.Println("attempt", attempt)
		if attempt >= 3 {
			s.attempts.Store(0)
			return rv, nil
		}
		s.attempts.Store(attempt + 1)
	}
	return nil, t.Retry(expectedException(), 5*time.Second)
}

// retryOnce retries once after countdown seconds (None: the default
// delay), then returns the number of retries, or with priority the
// delivery priority.
func (s *suiteTasks) retryOnce(fn string, priority bool) worker.HandlerFunc {
	return func(_ context.Context, t *worker.Task) (any, error) {
		b, err := pyParams{fn: fn, varargs: true, kwonly: map[string]any{
			"expires": 60.0, "max_retries": int64(1), "countdown": 0.1}}.bind(t)
		if err != nil {
			return nil, err
		}
		if t.Retries() > 0 {
			if priority {
				return int64(t.Priority()), nil
			}
			return int64(t.Retries()), nil
		}
		var opts []worker.RetryOption
		if n, ok := b.named["max_retries"].(int64); ok {
			opts = append(opts, worker.RetryMaxRetries(int(n)))
		} else if b.named["max_retries"] == nil {
			opts = append(opts, worker.RetryMaxRetries(-1))
		}
		var countdown time.Duration
		if c := b.named["countdown"]; c != nil {
			secs, err := pySeconds(c)
			if err != nil {
				return nil, err
			}
			if secs <= 0 {
				opts = append(opts, worker.RetryAt(time.Now()))
			}
			countdown = time.Duration(secs * float64(time.Second))
		}
		return nil, t.Retry(nil, countdown, opts...)
	}
}

func (s *suiteTasks) rpush(ctx context.Context, key string, value any) error {
	v, err := redisValue(value)
	if err != nil {
		return err
	}
	conn, err := s.redis.GetContext(ctx)
	if err != nil {
		return fmt.Errorf("redis: %w", err)
	}
	defer conn.Close()
	_, err = redis.DoContext(conn, ctx, "RPUSH", key, v)
	return err
}

func (s *suiteTasks) incr(ctx context.Context, key any) error {
	k, err := redisValue(key)
	if err != nil {
		return err
	}
	conn, err := s.redis.GetContext(ctx)
	if err != nil {
		return fmt.Errorf("redis: %w", err)
	}
	defer conn.Close()
	_, err = redis.DoContext(conn, ctx, "INCR", k)
	return err
}

func (s *suiteTasks) redisEcho(ctx context.Context, t *worker.Task) (any, error) {
	b, err := pyParams{fn: "redis_echo", names: []string{"message", "redis_key"}, required: 1,
		defaults: map[string]any{"redis_key": "redis-echo"}}.bind(t)
	if err != nil {
		return nil, err
	}
	key, err := redisValue(b.named["redis_key"])
	if err != nil {
		return nil, err
	}
	return nil, s.rpush(ctx, key, b.named["message"])
}

// redisEchoGroupID appends the task's group id to a Redis list.
func (s *suiteTasks) redisEchoGroupID(ctx context.Context, t *worker.Task) (any, error) {
	b, err := pyParams{fn: "redis_echo_group_id", names: []string{"_", "redis_key"}, required: 1,
		defaults: map[string]any{"redis_key": "redis-group-ids"}}.bind(t)
	if err != nil {
		return nil, err
	}
	key, err := redisValue(b.named["redis_key"])
	if err != nil {
		return nil, err
	}
	if t.Msg.Group == "" {
		// redis-py refuses None.
		return nil, &worker.TaskError{Module: "redis.exceptions", Type: "DataError",
			Args: []any{"Invalid input of type: 'NoneType'. Convert to a bytes, string, int or float first."}}
	}
	return nil, s.rpush(ctx, key, t.Msg.Group)
}

func (s *suiteTasks) redisCount(ctx context.Context, t *worker.Task) (any, error) {
	b, err := pyParams{fn: "redis_count", names: []string{"redis_key"},
		defaults: map[string]any{"redis_key": "redis-count"}}.bind(t)
	if err != nil {
		return nil, err
	}
	return nil, s.incr(ctx, b.named["redis_key"])
}

// secondOrderReplace is second_order_replace1 (letter A, replaced by
// chain(second_order_replace2.s(), second_order_replace1.si(state=True)))
// and second_order_replace2 (letter B, replaced by
// chain(redis_echo.s("In/Out C"), second_order_replace2.si(state=True))).
func (s *suiteTasks) secondOrderReplace(fn, letter string) worker.HandlerFunc {
	return func(ctx context.Context, t *worker.Task) (any, error) {
		b, err := pyParams{fn: fn, names: []string{"state"}, defaults: map[string]any{"state": false}}.bind(t)
		if err != nil {
			return nil, err
		}
		if pyTruthy(b.named["state"]) {
			return nil, s.rpush(ctx, "redis-echo", "Out "+letter)
		}
		if err := s.rpush(ctx, "redis-echo", "In "+letter); err != nil {
			return nil, err
		}
		again := si(fn)
		again.Kwargs["state"] = true
		first := sig("second_order_replace2")
		if letter == "B" {
			first = sig("redis_echo", "In/Out C")
		}
		return nil, t.Replace(ctx, protocol.NewChain(first, again))
	}
}

// buildChainInsideTask applies add.s(1, 1) | add.s(2) | group(add.s(3),
// add.s(4)) | add.s(5) and returns its result as Celery serializes an
// AsyncResult returned by a task: its as_tuple(), parents included.
func (s *suiteTasks) buildChainInsideTask(ctx context.Context, t *worker.Task) (any, error) {
	withID := func(s protocol.Signature) protocol.Signature {
		s.Options.TaskID = worker.NewTaskID()
		return s
	}
	first, second := withID(sig("add", int64(1), int64(1))), withID(sig("add", int64(2)))
	m1, m2 := withID(sig("add", int64(3))), withID(sig("add", int64(4)))
	group := withID(protocol.NewGroup(m1, m2))
	last := withID(sig("add", int64(5)))
	if _, err := t.Client().Apply(ctx, protocol.NewChain(first, second, group, last)); err != nil {
		return nil, err
	}
	tuple := func(id string, parent any) any { return []any{[]any{id, parent}, nil} }
	secondTuple := tuple(second.Options.TaskID, tuple(first.Options.TaskID, nil))
	groupTuple := []any{[]any{group.Options.TaskID, secondTuple},
		[]any{tuple(m1.Options.TaskID, nil), tuple(m2.Options.TaskID, nil)}}
	return tuple(last.Options.TaskID, groupTuple), nil
}

func (s *suiteTasks) fail(_ context.Context, t *worker.Task) (any, error) {
	return nil, expectedException(append([]any{"Task expected to fail"}, t.Args()...)...)
}

func (s *suiteTasks) failReplaced(ctx context.Context, t *worker.Task) (any, error) {
	return nil, t.Replace(ctx, si("fail", t.Args()...))
}

func (s *suiteTasks) returnPriority(_ context.Context, t *worker.Task) (any, error) {
	return "Priority: " + strconv.Itoa(t.Priority()), nil
}

func (s *suiteTasks) returnProperties(_ context.Context, t *worker.Task) (any, error) {
	return t.Properties(), nil
}

// errbackOldStyle is an errback called with the failed task's id: it counts
// under that id in Redis and returns it.
func (s *suiteTasks) errbackOldStyle(ctx context.Context, t *worker.Task) (any, error) {
	b, err := pyParams{fn: "errback_old_style", names: []string{"request_id"}, required: 1}.bind(t)
	if err != nil {
		return nil, err
	}
	return b.named["request_id"], s.incr(ctx, b.named["request_id"])
}

// errbackNewStyle is errback_new_style(request, exc, tb), called inline
// with the failed request: it counts under the failed task's id.
func (s *suiteTasks) errbackNewStyle(ctx context.Context, failed *worker.Task, _ protocol.ExceptionInfo, _ string) error {
	return s.incr(ctx, failed.ID())
}

// autoRetryClassTask is ClassBasedAutoRetryTask: autoretry_for ValueError,
// one retry with exponential backoff and full jitter (at most 2**retries s).
func (s *suiteTasks) autoRetryClassTask(_ context.Context, t *worker.Task) (any, error) {
	if t.Retries() > 0 {
		return int64(t.Retries()), nil
	}
	countdown := time.Duration(rand.Float64() * float64(time.Second<<t.Retries()))
	return nil, t.Retry(&worker.TaskError{Module: "builtins", Type: "ValueError"}, 0, worker.RetryAt(time.Now().Add(countdown)))
}
