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

// autoscale answers as a Celery worker started without --autoscale: this
// worker's pool size is fixed by its concurrency.
func (c *Control) autoscale(map[string]any) (any, error) {
	return nil, &controlError{"ValueError", "Autoscale not enabled"}
}

func nokReply(msg string) map[string]any { return map[string]any{"error": msg} }
