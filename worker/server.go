package worker

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/vhg/vhg-worker/protocol"
)

// Config configures a Server. Every zero value has the meaning given.
type Config struct {
	// Queues to consume; empty means ["celery"].
	Queues []string
	// Concurrency is how many tasks run at once; zero means runtime.NumCPU().
	Concurrency int
	// PrefetchMultiplier times Concurrency is the broker prefetch count;
	// zero means Celery's default of 4.
	PrefetchMultiplier int
	// NodeName is the worker's Celery node name; empty means celery@<hostname>.
	NodeName string
	// ShutdownTimeout is how long a soft stop waits for running tasks before
	// cancelling them; zero means 60 s.
	ShutdownTimeout time.Duration
	// Routes maps task names to queues (Celery's task_routes) for the
	// messages this worker publishes; unlisted tasks go to DefaultQueue.
	Routes map[string]string
	// DefaultQueue receives published tasks with no route; empty means the
	// first of Queues.
	DefaultQueue string
	// MaxRedeliveries is how many times a message may come back because
	// the worker running it died or lost its connection (see
	// DeliveryInfo.Redeliveries) before it ends as FAILURE instead of
	// running again; zero means 5, a negative value no limit.
	MaxRedeliveries int
	// Autoscale, when Max is set, sizes the pool between Min and Max by
	// the tasks held, as Celery's --autoscale; Concurrency is then unused
	// and the prefetch count is Max times PrefetchMultiplier.
	Autoscale Autoscale
	// TaskTimeLimit and TaskSoftTimeLimit are the hard and soft time limits
	// of every task whose message and registration set none (Celery's
	// task_time_limit and task_soft_time_limit, --time-limit and
	// --soft-time-limit); zero means none.
	TaskTimeLimit     time.Duration
	TaskSoftTimeLimit time.Duration
}

func (c Config) withDefaults() Config {
	if len(c.Queues) == 0 {
		c.Queues = []string{"celery"}
	}
	if c.Concurrency <= 0 {
		c.Concurrency = runtime.NumCPU()
	}
	if c.PrefetchMultiplier <= 0 {
		c.PrefetchMultiplier = 4
	}
	if c.NodeName == "" {
		host, _ := os.Hostname()
		c.NodeName = "celery@" + host
	}
	if c.ShutdownTimeout <= 0 {
		c.ShutdownTimeout = 60 * time.Second
	}
	if c.Autoscale.Max > 0 {
		c.Autoscale.Min = min(max(c.Autoscale.Min, 1), c.Autoscale.Max)
		c.Concurrency = c.Autoscale.Max
	}
	if c.DefaultQueue == "" {
		c.DefaultQueue = c.Queues[0]
	}
	return c
}

// Server consumes task messages from a Broker, runs them with the handlers of
// a ServeMux and stores their states in a Backend, the way a Celery worker
// does.
type Server struct {
	cfg     Config
	broker  Broker
	backend Backend
	mux     *ServeMux
	log     logrus.FieldLogger
	client  *Client

	// hardStop cancels every running task (StopNow).
	hardCtx  context.Context
	hardStop context.CancelCauseFunc

	clock      protocol.LamportClock
	rates      rateLimits
	revoked    *revokedSet
	observers  []Observer
	created    time.Time
	consuming  atomic.Bool
	pool       atomic.Pointer[pool]       // while Run runs
	queues     atomic.Pointer[queueSet]   // while Run runs
	autoscaler atomic.Pointer[autoscaler] // while Run runs, with Config.Autoscale
	// revokedStamps are the stamps revoked by revoke_by_stamped_headers.
	revokedStamps revokedStamps

	// ackLost holds the messages (id and retries) settled here whose
	// acknowledgement was lost with the broker connection: when one comes
	// back it is acknowledged without running again. Bounded as the
	// revoked set is, and locked by itself.
	ackLost *revokedSet
	// recent holds the last messages acknowledged here, to tell an
	// acknowledgement lost after it was written (recentacks.go).
	recent *recentAcks

	mu        sync.Mutex
	running   map[string]*runningTask // task id -> its request and cancel
	held      map[*request]bool       // received, not started -> waiting for its ETA
	total     map[string]int          // tasks started, by name
	processed int                     // tasks started
}

// NewServer returns a Server. backend may be nil to store no results.
func NewServer(cfg Config, broker Broker, backend Backend, mux *ServeMux, log logrus.FieldLogger) *Server {
	cfg = cfg.withDefaults()
	if log == nil {
		l := logrus.New()
		l.SetOutput(os.Stderr)
		log = l
	}
	s := &Server{
		cfg:     cfg,
		broker:  broker,
		backend: backend,
		mux:     mux,
		log:     log,
		revoked: newRevokedSet(revokedMaxLen, revokedExpires),
		created: time.Now(),
		running: make(map[string]*runningTask),
		ackLost: newRevokedSet(ackLostMaxLen, ackLostExpires),
		recent:  newRecentAcks(),
		held:    make(map[*request]bool),
		total:   make(map[string]int),
	}
	s.client = NewClient(broker, ClientConfig{Routes: cfg.Routes, DefaultQueue: cfg.DefaultQueue, Origin: cfg.NodeName, Backend: backend, Log: log})
	s.client.inlineErrback = s.callInlineErrback
	s.hardCtx, s.hardStop = context.WithCancelCause(context.Background())
	registerBuiltins(mux)
	return s
}

// Config returns the configuration in force, defaults filled in.
func (s *Server) Config() Config { return s.cfg }

// StopNow cancels every running task; Run then returns as soon as they have
// returned. Use it on a second interrupt.
func (s *Server) StopNow() { s.hardStop(ErrShutdown) }

// Run consumes until ctx is done, then stops softly: it stops consuming,
// requeues messages it holds but has not started, and waits up to
// ShutdownTimeout for running tasks before cancelling them.
func (s *Server) Run(ctx context.Context) error {
	// A hard stop also ends consuming; otherwise the requeued messages of
	// the cancelled tasks would be redelivered and cancelled again forever.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(s.hardCtx, cancel)()
	prefetch := s.cfg.Concurrency * s.cfg.PrefetchMultiplier
	queues := newQueueSet(ctx, s.broker, prefetch, s.log)
	for _, q := range s.cfg.Queues {
		if err := queues.add(q); err != nil {
			return err
		}
	}
	s.queues.Store(queues)
	work := make(chan *request)
	size := s.cfg.Concurrency
	if s.cfg.Autoscale.Max > 0 {
		size = s.cfg.Autoscale.Min
	}
	pool := newPool(work, s.executeSafely, size)
	s.pool.Store(pool)
	if s.cfg.Autoscale.Max > 0 {
		a := newAutoscaler(pool, s.cfg.Autoscale, s.heldCount)
		s.autoscaler.Store(a)
		go a.run(ctx)
	}
	s.consuming.Store(true)
	s.log.WithFields(logrus.Fields{
		"node": s.cfg.NodeName, "queues": s.cfg.Queues,
		"concurrency": s.cfg.Concurrency, "prefetch": prefetch,
		"tasks": len(s.mux.Names()),
	}).Info("worker ready")

	var held sync.WaitGroup // messages waiting for their ETA or a free slot
	consumeErr := s.consume(ctx, queues, work, &held)
	s.consuming.Store(false)

	held.Wait() // they see ctx done and requeue themselves
	close(work)

	drained := make(chan struct{})
	go func() { pool.wait(); close(drained) }()
	select {
	case <-drained:
	case <-s.hardCtx.Done():
		<-drained
	case <-time.After(s.cfg.ShutdownTimeout):
		s.log.WithField("timeout", s.cfg.ShutdownTimeout).Warn("shutdown timeout: cancelling running tasks")
		s.hardStop(ErrShutdown)
		<-drained
	}
	s.log.Info("worker stopped")
	return consumeErr
}

// consume reads deliveries until ctx is done or the broker closes a
// queue's deliveries.
func (s *Server) consume(ctx context.Context, queues *queueSet, work chan<- *request, held *sync.WaitGroup) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-queues.lost:
			if ctx.Err() != nil {
				return nil
			}
			return err
		case d := <-queues.out:
			r := s.accept(ctx, d)
			if r == nil {
				continue
			}
			held.Add(1)
			go func() {
				defer held.Done()
				defer func() { s.lastNet(r, "hand", recover()) }()
				s.hand(ctx, r, work)
			}()
		}
	}
}

// accept receives one delivery: it returns the request, held until it
// runs, or nil when the message was settled here (invalid, unknown,
// expired, revoked, postponed) or when handling it panicked (lastNet).
func (s *Server) accept(ctx context.Context, d Delivery) (r *request) {
	r = &request{delivery: d, log: s.log, gone: make(chan struct{}), ackLost: s.ackLost, recent: s.recent}
	defer func() {
		if p := recover(); p != nil {
			s.lastNet(r, "receive", p)
			r = nil
		}
	}()
	r.log = s.log.WithField("delivery_tag", d.Info().DeliveryTag)
	if !s.receive(ctx, r) {
		return nil
	}
	s.watchHold(r)
	s.hold(r, !r.msg.ETA.IsZero() && time.Now().Before(r.msg.ETA))
	return r
}

// executeSafely runs execute under the last net.
func (s *Server) executeSafely(r *request) {
	defer func() { s.lastNet(r, "execute", recover()) }()
	s.execute(r)
}

// lastNet is the last net under every goroutine that handles one message
// (receive, hand, execute, the hold timer): a panic that escaped
// everything else is logged with its stack and the delivery tag, a
// FAILURE is stored when the task id is known and no outcome was stored
// yet, and the message is rejected without requeue (a panic would most
// likely come back with it, on every worker in turn). The worker goes on.
// p is what recover returned; nil means no panic.
func (s *Server) lastNet(r *request, stage string, p any) {
	if p == nil {
		return
	}
	log := r.log.WithFields(logrus.Fields{"panic": fmt.Sprint(p), "stage": stage, "stack": string(debug.Stack())})
	log.Error("panic while handling a message: rejecting it without requeue; the worker goes on")
	// Each step on its own: a second panic must not skip the others.
	safely := func(what string, f func()) {
		defer func() {
			if p := recover(); p != nil {
				log.WithField("second_panic", fmt.Sprint(p)).Error(what + " panicked too")
			}
		}()
		f()
	}
	safely("unholding", func() { s.unhold(r) })
	if r.msg != nil && r.msg.ID != "" && !r.outcome.Load() && !r.ignoreResult() {
		safely("storing FAILURE", func() {
			exc := protocol.ExceptionInfo{Module: "builtins", Type: "RuntimeError",
				Message: []any{fmt.Sprintf("panic while handling the message (%s): %v", stage, p)}}
			r.outcome.Store(true)
			s.store(context.Background(), r.msg, protocol.ResultMeta{TaskID: r.msg.ID, Status: protocol.StateFailure,
				Result: exc, Traceback: traceback(r.msg.Task, r.msg.ID, exc, nil)})
		})
	}
	safely("rejecting", func() { r.reject(log, false) })
}

// hand waits for the request's ETA, then for a free slot, and gives it to
// the pool; on stop it requeues the message instead. The request stays
// held (see Reserved and Scheduled) until execute takes it.
func (s *Server) hand(ctx context.Context, r *request, work chan<- *request) {
	if wait := time.Until(r.msg.ETA); !r.msg.ETA.IsZero() && wait > 0 {
		if !s.wait(ctx, r, wait) {
			return
		}
		// Expiry is checked again before running (revocation in execute).
		if s.expired(ctx, r) {
			s.unhold(r)
			return
		}
		s.hold(r, false)
	}
	if cfg, ok := s.mux.config(r.msg.Task); ok {
		if turn := s.rates.wait(r.msg.Task, cfg.RateLimit, time.Now()); turn > 0 && !s.wait(ctx, r, turn) {
			return
		}
	}
	select {
	case work <- r:
	case <-r.gone: // postponed
		s.unhold(r)
	case <-ctx.Done():
		s.unhold(r)
		r.requeue(s.log)
	}
}

// wait holds r for d (its ETA, or its turn under a rate limit). It reports
// false when r left this worker meanwhile: postponed by the hold timer, or
// requeued because ctx is done.
func (s *Server) wait(ctx context.Context, r *request, d time.Duration) bool {
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
		return true
	case <-r.gone: // postponed
		s.unhold(r)
		return false
	case <-ctx.Done():
		s.unhold(r)
		r.requeue(s.log)
		return false
	}
}

// request is a received, decoded message on its way to a handler.
type request struct {
	delivery Delivery
	// env is the message as received (its properties reach the Task).
	env     protocol.Envelope
	msg     *protocol.Message
	handler Handler
	config  TaskConfig
	log     logrus.FieldLogger
	// acked is set once the message is settled; inspect reads it from
	// other goroutines.
	acked atomic.Bool
	// runtime is how long the handler ran, for the outcome's event.
	runtime time.Duration

	// mu orders settling with the hold timer (holdlimit.go).
	mu        sync.Mutex
	started   bool
	leased    bool
	holdTimer *time.Timer
	gone      chan struct{} // closed when the hold timer postponed it
	// adopted replaces delivery when the message came back after a lost
	// connection while its task was still running here.
	adopted atomic.Pointer[Delivery]
	ackLost *revokedSet // the Server's
	recent  *recentAcks // the Server's
	// outcome is set once the task's final state is being stored, so
	// that lastNet does not store a FAILURE over it.
	outcome atomic.Bool
}

func (r *request) ack(log logrus.FieldLogger) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.settled()
	if r.acked.Swap(true) {
		return
	}
	err := r.current().Ack()
	// Written or not: an ack that fails before the connection is seen
	// lost (the channel goes first) is lost as surely.
	if sd, ok := r.current().(StaleDelivery); ok && r.recent != nil {
		r.recent.add(ackLostKey(r.msg), sd)
	}
	if sd, ok := r.current().(StaleDelivery); ok && err != nil && sd.Stale() {
		r.ackLost.add(time.Now(), ackLostKey(r.msg))
		log.WithError(err).Warn("ack lost with the broker connection: the broker redelivers the message, and this worker acknowledges it without running it again")
		return
	}
	if err != nil {
		log.WithError(err).Error("ack failed; the broker will redeliver the message")
	}
}

func (r *request) reject(log logrus.FieldLogger, requeue bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.settled()
	if r.acked.Swap(true) {
		return
	}
	if err := r.current().Reject(requeue); err != nil {
		log.WithError(err).Error("reject failed")
	}
}

func (r *request) requeue(log logrus.FieldLogger) { r.reject(log, true) }

// giveBack returns the message to its queue as a failed delivery, which
// counts as a redelivery (ReturningDelivery), so that Config.MaxRedeliveries
// bounds how often it comes back; a plain requeue where the delivery
// cannot tell.
func (r *request) giveBack(log logrus.FieldLogger) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.settled()
	if r.acked.Swap(true) {
		return
	}
	var err error
	if rd, ok := r.current().(ReturningDelivery); ok {
		err = rd.Return()
	} else {
		err = r.current().Reject(true)
	}
	if err != nil {
		log.WithError(err).Error("giving the message back failed")
	}
}

// receive decodes and checks r's delivery and fills r in. It returns false
// when the message was settled here (invalid, unknown, expired, revoked,
// postponed).
func (s *Server) receive(ctx context.Context, r *request) bool {
	r.env = r.delivery.Envelope()
	msg, err := protocol.Decode(r.env)
	if err != nil {
		s.rejectInvalid(ctx, r, err)
		return false
	}
	r.msg = msg
	r.log = r.log.WithFields(logrus.Fields{"task": msg.Task, "id": msg.ID, "retries": msg.Retries})
	h, cfg, ok := s.mux.lookup(msg.Task)
	if cfg.TimeLimit == 0 {
		cfg.TimeLimit = s.cfg.TaskTimeLimit
	}
	if cfg.SoftTimeLimit == 0 {
		cfg.SoftTimeLimit = s.cfg.TaskSoftTimeLimit
	}
	if !ok {
		// Celery: log, reject without requeue, store NotRegistered.
		r.log.Error("received unregistered task; rejecting it (is a worker for it consuming this queue?)")
		exc := notRegistered(msg.Task)
		tb := traceback(msg.Task, msg.ID, exc, nil)
		s.storeOutcome(ctx, r, protocol.ResultMeta{TaskID: msg.ID, Status: protocol.StateFailure, Result: exc, Traceback: tb})
		s.notify(TaskEvent{Type: protocol.EventTaskFailed, Msg: msg, Exception: exc, Traceback: tb})
		r.reject(r.log, false)
		return false
	}
	r.handler, r.config = h, cfg
	if s.adopt(r) || s.settledBefore(r) || s.expired(ctx, r) || s.discardRevoked(ctx, r) || s.tooManyRedeliveries(ctx, r) || s.delayETA(ctx, r) {
		return false
	}
	r.log.WithField("eta", msg.ETA).Debug("task received")
	s.notify(TaskEvent{Type: protocol.EventTaskReceived, Msg: msg})
	return true
}

// expired settles a request whose expires time has passed: REVOKED stored,
// message acknowledged, as Celery does.
func (s *Server) expired(ctx context.Context, r *request) bool {
	if r.msg.Expires.IsZero() || time.Now().Before(r.msg.Expires) {
		return false
	}
	r.log.WithField("expires", r.msg.Expires).Info("task expired; storing REVOKED")
	exc := taskRevoked("expired")
	s.storeOutcome(ctx, r, protocol.ResultMeta{TaskID: r.msg.ID, Status: protocol.StateRevoked, Result: exc})
	s.client.chordPartReturn(ctx, r.msg, protocol.StateRevoked, exc)
	s.notify(TaskEvent{Type: protocol.EventTaskRevoked, Msg: r.msg, Expired: true})
	r.ack(r.log)
	return true
}

// discardRevoked settles a request whose id was revoked, on arrival and
// again just before it runs: REVOKED "revoked" stored, task-revoked sent,
// message acknowledged, as Celery does.
func (s *Server) discardRevoked(ctx context.Context, r *request) bool {
	if !s.isRevoked(r.msg.ID) {
		header, value, byStamp := s.revokedStamps.match(r.msg)
		if !byStamp {
			return false
		}
		r.log.WithField("revoked_by_header", map[string]any{header: value}).Info("discarding task revoked by stamped header; storing REVOKED")
	} else {
		r.log.Info("discarding revoked task; storing REVOKED")
	}
	exc := taskRevoked("revoked")
	s.storeOutcome(ctx, r, protocol.ResultMeta{TaskID: r.msg.ID, Status: protocol.StateRevoked, Result: exc})
	s.client.chordPartReturn(ctx, r.msg, protocol.StateRevoked, exc)
	s.notify(TaskEvent{Type: protocol.EventTaskRevoked, Msg: r.msg})
	r.ack(r.log)
	return true
}

// rejectInvalid drops a message that cannot be decoded. Celery rejects it
// without a trace in the backend; we also store a FAILURE when the id is
// known and usable (protocol.DecodeError carries only values that passed
// the decoder's checks), so a client waiting on it gets an error instead
// of waiting forever. Without one, the log line (with the delivery tag)
// is all that is left of it.
func (s *Server) rejectInvalid(ctx context.Context, r *request, err error) {
	var de *protocol.DecodeError
	log := r.log.WithError(err).WithField("content_type", shortText(r.env.ContentType))
	if errors.As(err, &de) {
		log = log.WithFields(logrus.Fields{"task": de.Task, "id": de.TaskID})
		if de.TaskID != "" {
			exc := protocol.ExceptionInfo{Module: "kombu.exceptions", Type: "DecodeError", Message: []any{err.Error()}}
			if errors.Is(err, protocol.ErrContentDisallowed) {
				exc = protocol.ExceptionInfo{Module: "kombu.exceptions", Type: "ContentDisallowed", Message: []any{err.Error()}}
			}
			r.msg = &protocol.Message{ID: de.TaskID, Task: de.Task, ReplyTo: de.ReplyTo, CorrelationID: de.CorrelationID}
			s.storeOutcome(ctx, r, protocol.ResultMeta{TaskID: de.TaskID, Status: protocol.StateFailure, Result: exc, Traceback: traceback(de.Task, de.TaskID, exc, err)})
		}
	}
	log.Error("rejecting undecodable task message")
	r.reject(log, false)
}

// shortText makes a value from a message safe for a log field: valid
// UTF-8, at most 64 bytes.
func shortText(s string) string {
	if len(s) > 64 {
		s = s[:64] + "..."
	}
	return strings.ToValidUTF8(s, "\uFFFD")
}

// store writes a state unless the backend is absent.
func (s *Server) store(ctx context.Context, req *protocol.Message, meta protocol.ResultMeta) error {
	return s.client.storeState(ctx, req, meta)
}

// storeOutcome stores the final state of r's task. A failure (the
// backend's own retries are behind it) is reported to the observers
// (EventStoreFailed) and returned: the caller decides what becomes of the
// message (see execute).
func (s *Server) storeOutcome(ctx context.Context, r *request, meta protocol.ResultMeta) error {
	r.outcome.Store(true)
	err := s.store(ctx, r.msg, meta)
	if err != nil {
		s.notify(TaskEvent{Type: EventStoreFailed, Msg: r.msg, Exception: ExceptionFor(err)})
	}
	return err
}
