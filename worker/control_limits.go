package worker

import (
	"errors"
	"fmt"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/vhg/vhg-worker/protocol"
)

// The control commands that change a worker's limits at run time, with
// the replies of celery/worker/control.py.

// rateLimit sets a task's rate limit on this worker (celery control
// rate_limit TASK RATE); an empty or zero rate removes it.
func (c *Control) rateLimit(args map[string]any) (any, error) {
	name, _ := args["task_name"].(string)
	raw := args["rate_limit"]
	var perSecond float64
	switch v := raw.(type) {
	case string:
		var err error
		if perSecond, err = ParseRate(v); err != nil {
			var bad *rateSyntaxError
			if errors.As(err, &bad) && bad.pyType == "ValueError" {
				return nokReply(fmt.Sprintf("Invalid rate limit string: ValueError(%s)", protocol.StrRepr(bad.msg))), nil
			}
			// Celery lets the KeyError of an unknown unit out of the
			// command: kombu answers it as the command's error.
			return nil, &controlError{bad.pyType, bad.msg}
		}
	case int64:
		perSecond = max(float64(v), 0)
	case float64:
		perSecond = max(v, 0)
	case nil:
	default:
		return nil, &controlError{"TypeError", fmt.Sprintf("rate_limit is a %T", v)}
	}
	if !c.srv.mux.configure(name, func(tc *TaskConfig) { tc.RateLimit = perSecond }) {
		c.log.WithField("task", name).Error("rate limit attempt for unknown task")
		return nokReply("unknown task"), nil
	}
	if raw == nil || raw == "" || raw == int64(0) || raw == float64(0) {
		c.log.WithField("task", name).Info("rate limits disabled for tasks of this type")
		return okReply("rate limit disabled successfully"), nil
	}
	c.log.WithFields(logrus.Fields{"task": name, "rate_limit": raw}).Info("new rate limit")
	return okReply("new rate limit set successfully"), nil
}

// timeLimit sets a task's soft and hard time limits (celery control
// time_limit TASK SOFT [HARD]); an absent one is removed, as in Celery.
func (c *Control) timeLimit(args map[string]any) (any, error) {
	name, _ := args["task_name"].(string)
	soft, err := seconds(args["soft"])
	if err != nil {
		return nil, err
	}
	hard, err := seconds(args["hard"])
	if err != nil {
		return nil, err
	}
	if !c.srv.mux.configure(name, func(tc *TaskConfig) { tc.SoftTimeLimit, tc.TimeLimit = soft, hard }) {
		c.log.WithField("task", name).Error("change time limit attempt for unknown task")
		return nokReply("unknown task"), nil
	}
	c.log.WithFields(logrus.Fields{"task": name, "soft": soft, "hard": hard}).Info("new time limits")
	return okReply("time limits set successfully"), nil
}

// seconds reads a number of seconds, or none.
func seconds(v any) (time.Duration, error) {
	switch n := v.(type) {
	case nil:
		return 0, nil
	case int64:
		return time.Duration(n) * time.Second, nil
	case float64:
		return time.Duration(n * float64(time.Second)), nil
	default:
		return 0, &controlError{"TypeError", fmt.Sprintf("a time limit is a number of seconds, not a %T", v)}
	}
}

// poolGrow adds n (default 1) to the pool's size (celery control
// pool_grow N). The prefetch count stays what it was at start: RabbitMQ
// applies a per-consumer prefetch only to consumers started after it.
func (c *Control) poolGrow(args map[string]any) (any, error) {
	return c.resizePool(args, 1, "pool will grow")
}

// poolShrink takes n (default 1) from the pool's size as its goroutines
// become free (celery control pool_shrink N); at least one stays.
func (c *Control) poolShrink(args map[string]any) (any, error) {
	return c.resizePool(args, -1, "pool will shrink")
}

func (c *Control) resizePool(args map[string]any, sign int, reply string) (any, error) {
	if c.srv.autoscaler.Load() != nil {
		verb := "pool_grow"
		if sign < 0 {
			verb = "pool_shrink"
		}
		return nokReply(verb + " is not supported with autoscale. Adjust autoscale range instead."), nil
	}
	n := int64(1)
	switch v := args["n"].(type) {
	case nil:
	case int64:
		n = v
	case float64:
		n = int64(v)
	default:
		return nil, &controlError{"TypeError", fmt.Sprintf("n is a %T, not a number", v)}
	}
	p := c.srv.pool.Load()
	if p == nil {
		return nil, &controlError{"RuntimeError", "the worker is not running"}
	}
	var err error
	if sign > 0 {
		err = p.grow(int(n))
	} else {
		err = p.shrink(int(n))
	}
	if err != nil {
		return nil, &controlError{"ValueError", err.Error()}
	}
	c.log.WithField("concurrency", p.len()).Info(reply)
	return okReply(reply), nil
}

// autoscale changes the autoscaler's range (celery control autoscale MAX
// [MIN]); a worker started without it answers as Celery's does.
func (c *Control) autoscale(args map[string]any) (any, error) {
	a := c.srv.autoscaler.Load()
	if a == nil {
		return nil, &controlError{"ValueError", "Autoscale not enabled"}
	}
	bound := func(key string) (int, error) {
		switch v := args[key].(type) {
		case nil:
			return 0, nil
		case int64:
			return int(v), nil
		case float64:
			return int(v), nil
		default:
			return 0, &controlError{"TypeError", fmt.Sprintf("%s is a %T, not a number", key, v)}
		}
	}
	newMax, err := bound("max")
	if err != nil {
		return nil, err
	}
	newMin, err := bound("min")
	if err != nil {
		return nil, err
	}
	gotMax, gotMin := a.update(newMax, newMin)
	c.log.WithField("max", gotMax).WithField("min", gotMin).Info("autoscale range changed")
	return okReply(fmt.Sprintf("autoscale now max=%d min=%d", gotMax, gotMin)), nil
}

func nokReply(msg string) map[string]any { return map[string]any{"error": msg} }

// addConsumer starts consuming a queue (celery control add_consumer
// QUEUE), declared as Celery declares a task queue; Celery answers before
// the consumer starts, and so does this worker: a failure is logged.
// Celery's exchange, exchange_type and routing_key options, which declare
// a queue differently, are not supported here and refused.
func (c *Control) addConsumer(args map[string]any) (any, error) {
	queue, _ := args["queue"].(string)
	if queue == "" {
		return nil, &controlError{"TypeError", "missing required argument: 'queue'"}
	}
	for _, opt := range []string{"exchange", "exchange_type", "routing_key"} {
		if v, ok := args[opt]; ok && v != nil && v != queue && !(opt == "exchange_type" && v == "direct") {
			return nil, &controlError{"ValueError", fmt.Sprintf("add_consumer with %s=%v is not supported: queues are declared as Celery declares its default ones", opt, v)}
		}
	}
	qs := c.srv.queues.Load()
	if qs == nil {
		return nil, &controlError{"RuntimeError", "the worker is not running"}
	}
	go func() {
		if err := qs.add(queue); err != nil {
			c.log.WithError(err).WithField("queue", queue).Error("add_consumer failed")
			return
		}
		c.log.WithField("queue", queue).Info("started consuming")
	}()
	return okReply("add consumer " + queue), nil
}

// cancelConsumer stops consuming a queue (celery control cancel_consumer
// QUEUE); the messages already received still run.
func (c *Control) cancelConsumer(args map[string]any) (any, error) {
	queue, _ := args["queue"].(string)
	if queue == "" {
		return nil, &controlError{"TypeError", "missing required argument: 'queue'"}
	}
	if qs := c.srv.queues.Load(); qs != nil && qs.cancel(queue) {
		c.log.WithField("queue", queue).Info("canceling queue")
	}
	return okReply("no longer consuming from " + queue), nil
}
