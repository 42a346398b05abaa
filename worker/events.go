package worker

import (
	"context"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/vhg/vhg-worker/protocol"
)

// EventPublisher sends one Celery event; worker/rabbitmq publishes it on
// the celeryev topic exchange.
type EventPublisher interface {
	PublishEvent(ctx context.Context, e protocol.Event) error
}

// EventsConfig configures an Events dispatcher. Every zero value has the
// meaning given.
type EventsConfig struct {
	// TaskEvents sends task-* events from the start (the worker's -E flag);
	// false sends only worker events until an enable_events command.
	TaskEvents bool
	// HeartbeatInterval is the time between worker-heartbeat events; zero
	// means Celery's 2 s.
	HeartbeatInterval time.Duration
	// Log receives publishing failures; nil discards them.
	Log logrus.FieldLogger
}

// Events is the worker's event dispatcher, as Celery's EventDispatcher and
// Heart: worker-online, a worker-heartbeat every interval and
// worker-offline from Run, and the task-* events of every TaskEvent while
// task events are enabled. Add it to the Server with Observe.
type Events struct {
	srv  *Server
	pub  EventPublisher
	cfg  EventsConfig
	log  logrus.FieldLogger
	pid  int
	task atomic.Bool // task events enabled
	// failing is set while publishing fails, so that a broker outage is
	// logged once rather than at every event.
	failing atomic.Bool
	// sending is held from stamping an event's clock to publishing it, so
	// that events leave in clock order (a monitor such as celery's
	// events.state expects each worker's clock to increase).
	sending sync.Mutex
}

var _ Observer = (*Events)(nil)

// NewEvents returns the event dispatcher of srv, publishing through pub.
func NewEvents(srv *Server, pub EventPublisher, cfg EventsConfig) *Events {
	if cfg.HeartbeatInterval <= 0 {
		cfg.HeartbeatInterval = time.Duration(protocol.HeartbeatFrequency * float64(time.Second))
	}
	log := cfg.Log
	if log == nil {
		l := logrus.New()
		l.SetOutput(discard{})
		log = l
	}
	e := &Events{srv: srv, pub: pub, cfg: cfg, log: log, pid: os.Getpid()}
	e.task.Store(cfg.TaskEvents)
	return e
}

// SetTaskEvents turns task events on or off (the enable_events and
// disable_events commands); it reports whether that changed anything.
func (e *Events) SetTaskEvents(on bool) bool {
	return e.task.Swap(on) != on
}

// TaskEvents reports whether task events are being sent.
func (e *Events) TaskEvents() bool { return e.task.Load() }

// Run sends worker-online, then worker-heartbeat every interval until ctx
// is done, then worker-offline.
func (e *Events) Run(ctx context.Context) {
	e.Online(ctx)
	e.Beat(ctx)
}

// Online sends worker-online. A worker sends it before it consumes, as
// Celery does, so that a monitor knows the worker before its first task
// event.
func (e *Events) Online(ctx context.Context) {
	e.sendWorker(ctx, protocol.EventWorkerOnline)
}

// Beat sends worker-heartbeat every interval until ctx is done, then
// worker-offline.
func (e *Events) Beat(ctx context.Context) {
	tick := time.NewTicker(e.cfg.HeartbeatInterval)
	defer tick.Stop()
	for {
		select {
		case <-tick.C:
			e.sendWorker(ctx, protocol.EventWorkerHeartbeat)
		case <-ctx.Done():
			offline, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			e.sendWorker(offline, protocol.EventWorkerOffline)
			cancel()
			return
		}
	}
}

// Heartbeat sends a worker-heartbeat now (the heartbeat command).
func (e *Events) Heartbeat(ctx context.Context) {
	e.sendWorker(ctx, protocol.EventWorkerHeartbeat)
}

func (e *Events) sendWorker(ctx context.Context, typ string) {
	stats := e.srv.Stats()
	e.send(ctx, protocol.WorkerEvent(typ, protocol.WorkerState{
		Active: stats.Active, Processed: stats.Processed, LoadAvg: loadAverage(),
		Freq: e.cfg.HeartbeatInterval.Seconds(),
	}))
}

// ObserveTask implements Observer: it sends the task event when task
// events are enabled.
func (e *Events) ObserveTask(te TaskEvent) {
	if !e.task.Load() {
		return
	}
	var ev protocol.Event
	id := te.Msg.ID
	switch te.Type {
	case protocol.EventTaskReceived:
		ev = protocol.TaskReceivedEvent(te.Msg)
	case protocol.EventTaskStarted:
		ev = protocol.TaskStartedEvent(id)
	case protocol.EventTaskSucceeded:
		ev = protocol.TaskSucceededEvent(id, te.Result, te.Runtime)
	case protocol.EventTaskFailed:
		ev = protocol.TaskFailedEvent(id, te.Exception, te.Traceback)
	case protocol.EventTaskRetried:
		ev = protocol.TaskRetriedEvent(id, te.Exception, te.Traceback)
	case protocol.EventTaskRevoked:
		ev = protocol.TaskRevokedEvent(id, te.Terminated, te.Signum, te.Expired)
	case protocol.EventTaskRejected:
		ev = protocol.TaskRejectedEvent(id, te.Requeue)
	default:
		return
	}
	e.send(context.Background(), ev)
}

// send stamps the event with the worker's identity and the next clock
// value, and publishes it.
func (e *Events) send(ctx context.Context, ev protocol.Event) {
	now := time.Now()
	ev.Hostname = e.srv.cfg.NodeName
	ev.Timestamp = now
	ev.UTCOffset = protocol.UTCOffset(now)
	ev.PID = e.pid
	e.sending.Lock()
	ev.Clock = e.srv.clock.Forward()
	err := e.pub.PublishEvent(ctx, ev)
	e.sending.Unlock()
	switch {
	case err != nil && !e.failing.Swap(true):
		e.log.WithError(err).WithField("event", ev.Type).Warn("sending events failed; Flower and celery events will miss them")
	case err == nil && e.failing.Swap(false):
		e.log.Info("sending events works again")
	}
}

// loadAverage reads the system load average from /proc/loadavg; it is
// zero where that file does not exist.
func loadAverage() [3]float64 {
	var avg [3]float64
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return avg
	}
	fields := strings.Fields(string(data))
	for i := 0; i < 3 && i < len(fields); i++ {
		avg[i], _ = strconv.ParseFloat(fields[i], 64)
	}
	return avg
}

// discard is an io.Writer that drops everything.
type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }
