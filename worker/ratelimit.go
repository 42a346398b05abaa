package worker

import (
	"math"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/vhg/vhg-worker/protocol"
)

// Rate limits, as a Celery worker applies them: a task with a rate limit
// runs at most that often on this worker (not across workers), through a
// token bucket of capacity one per task name; a message that comes too
// soon is held until its turn, as Celery's consumer holds it on its timer.
// The limit is the task option (RateLimit) until the rate_limit control
// command changes it.

// ParseRate reads Celery's rate syntax (celery.utils.time.rate): "10/s",
// "100/m", "1000/h", or a plain number of tasks per second; "" means no
// limit, and so does a rate of zero or less. It returns tasks per second.
func ParseRate(s string) (float64, error) {
	if s == "" {
		return 0, nil
	}
	ops, unit, _ := strings.Cut(s, "/")
	n, err := strconv.ParseFloat(strings.TrimSpace(ops), 64)
	if err != nil {
		return 0, &rateSyntaxError{pyType: "ValueError", msg: "could not convert string to float: " + protocol.StrRepr(ops)}
	}
	switch unit {
	case "", "s":
	case "m":
		n /= 60
	case "h":
		n /= 3600
	default:
		// Python's lookup in its modifier map fails with KeyError.
		return 0, &rateSyntaxError{pyType: "KeyError", msg: unit}
	}
	if n <= 0 || math.IsNaN(n) {
		return 0, nil
	}
	return n, nil
}

// rateSyntaxError is a rate that Celery's rate() refuses, with the
// exception it raises.
type rateSyntaxError struct{ pyType, msg string }

func (e *rateSyntaxError) Error() string { return "worker: bad rate limit: " + e.msg }

// RateLimit limits how often the task starts on this worker, in Celery's
// syntax ("10/s", "100/m", "1000/h"). A rate that does not parse panics:
// it is a programming error found at start-up.
func RateLimit(rate string) TaskOption {
	perSecond, err := ParseRate(rate)
	if err != nil {
		panic(err)
	}
	return func(c *TaskConfig) { c.RateLimit = perSecond }
}

// tokenBucket holds one token, refilled at rate per second: the time of the
// next free turn is enough to hold that state.
type tokenBucket struct {
	rate float64
	next time.Time
}

// reserve takes the next turn and returns how long to wait for it.
func (b *tokenBucket) reserve(now time.Time) time.Duration {
	turn := now
	if b.next.After(now) {
		turn = b.next
	}
	b.next = turn.Add(time.Duration(float64(time.Second) / b.rate))
	return turn.Sub(now)
}

// rateLimits are the buckets of one worker, by task name.
type rateLimits struct {
	mu      sync.Mutex
	buckets map[string]*tokenBucket
}

// wait reserves a turn for a task whose current limit is rate (tasks per
// second, zero for none) and returns how long to wait for it. A changed
// limit starts a fresh bucket, as Celery's reset_rate_limits does.
func (l *rateLimits) wait(task string, rate float64, now time.Time) time.Duration {
	if rate <= 0 {
		return 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.buckets[task]
	if b == nil || b.rate != rate {
		if l.buckets == nil {
			l.buckets = make(map[string]*tokenBucket)
		}
		b = &tokenBucket{rate: rate}
		l.buckets[task] = b
	}
	return b.reserve(now)
}
