package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/sirupsen/logrus"
	"github.com/vhg/vhg-worker/tasks"
	"github.com/vhg/vhg-worker/worker"
	"github.com/vhg/vhg-worker/worker/metrics"
	"github.com/vhg/vhg-worker/worker/rabbitmq"
)

// ffmpegTasks are the tasks whose run time is ffmpeg time in the metrics:
// their handlers spend nearly all of it in ffmpeg.Run.
var ffmpegTasks = []string{tasks.NameTranscode, tasks.NameChunkHLS, tasks.NameChunkDash}

// opsConfig configures the operations side of a worker.
type opsConfig struct {
	// taskEvents sends task-* events from the start (-E).
	taskEvents bool
	// withoutHeartbeat sends no worker-online, worker-heartbeat and
	// worker-offline events (--without-heartbeat).
	withoutHeartbeat bool
	// heartbeatInterval is the time between worker-heartbeat events; zero
	// means Celery's 2 s.
	heartbeatInterval time.Duration
	// metricsAddr is where /metrics and /healthz are served; empty serves
	// nothing.
	metricsAddr string
	// ffmpegTasks are counted in vhg_worker_ffmpeg_seconds_total.
	ffmpegTasks []string
	// shutdown stops the worker softly (the shutdown control command).
	shutdown func()
	// conf is added to the answer of `celery inspect conf`.
	conf map[string]any
	log  logrus.FieldLogger
}

// ops is what Celery operators' tools talk to: events on celeryev (Flower,
// celery events), the remote control mailbox (celery inspect, control,
// status), Prometheus metrics and the health check.
type ops struct {
	srv      *worker.Server
	events   *worker.Events
	mailbox  *rabbitmq.Mailbox
	control  *worker.Control
	metrics  *metrics.Collector
	heart    bool         // send worker-online, -heartbeat and -offline
	listener net.Listener // nil without a metrics address
	http     *http.Server
	log      logrus.FieldLogger
	wg       sync.WaitGroup
}

// newOps sets up events, remote control and metrics for srv: the observers
// are added to srv, the mailbox is declared and the metrics address bound,
// so that every set-up error shows before the worker starts. Call start
// next, and stop after srv.Run has returned.
func newOps(srv *worker.Server, broker *rabbitmq.Broker, cfg opsConfig) (*ops, error) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m, err := metrics.New(reg, srv, metrics.Config{FFmpegTasks: cfg.ffmpegTasks, BrokerNode: broker.Node})
	if err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	events := worker.NewEvents(srv, broker, worker.EventsConfig{TaskEvents: cfg.taskEvents, HeartbeatInterval: cfg.heartbeatInterval, Log: cfg.log})
	srv.Observe(events, m)
	control := worker.NewControl(srv, worker.ControlConfig{
		Events: events, Shutdown: cfg.shutdown, Broker: broker.Info(), Conf: cfg.conf, Log: cfg.log,
	})
	mailbox, err := broker.OpenMailbox(srv.Config().NodeName)
	if err != nil {
		return nil, err
	}
	o := &ops{srv: srv, events: events, mailbox: mailbox, control: control, metrics: m, log: cfg.log, heart: !cfg.withoutHeartbeat}
	if cfg.metricsAddr != "" {
		ln, err := net.Listen("tcp", cfg.metricsAddr)
		if err != nil {
			return nil, fmt.Errorf("--metrics-addr: %w", err)
		}
		o.listener = ln
		o.http = &http.Server{
			Handler:           metrics.Handler(reg, health(broker, srv)),
			ReadHeaderTimeout: 10 * time.Second,
		}
	}
	return o, nil
}

// health is the /healthz check: the broker connection is open and the
// worker consumes. It names the broker node, connected to or tried next.
func health(broker *rabbitmq.Broker, srv *worker.Server) func() (string, error) {
	return func() (string, error) {
		if !broker.Connected() {
			return "", fmt.Errorf("broker connection closed (reconnecting to %s)", broker.Node())
		}
		if !srv.Consuming() {
			return "", fmt.Errorf("worker not consuming (broker %s)", broker.Node())
		}
		return "broker " + broker.Node(), nil
	}
}

// start sends worker-online, then heartbeats and answers remote control
// until ctx is done, and serves metrics until stop. Call it before the
// worker consumes: worker-online comes before any task event.
func (o *ops) start(ctx context.Context) {
	if o.heart {
		o.events.Online(ctx)
		o.wg.Add(1)
		go func() {
			defer o.wg.Done()
			o.events.Beat(ctx)
		}()
	}
	o.wg.Add(1)
	go func() {
		defer o.wg.Done()
		if err := o.mailbox.Serve(ctx, o.control); err != nil {
			o.log.WithError(err).Error("remote control stopped: celery inspect and control no longer reach this worker")
		}
	}()
	if o.listener != nil {
		o.log.WithField("addr", o.listener.Addr().String()).Info("serving /metrics and /healthz")
		o.wg.Add(1)
		go func() {
			defer o.wg.Done()
			if err := o.http.Serve(o.listener); err != nil && !errors.Is(err, http.ErrServerClosed) {
				o.log.WithError(err).Error("metrics listener stopped")
			}
		}()
	}
}

// stop ends the metrics listener and waits for everything start started
// (events and control end with start's ctx).
func (o *ops) stop() {
	if o.http != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		o.http.Shutdown(ctx)
	}
	o.wg.Wait()
}

// metricsURL is the base URL of the metrics listener, or "".
func (o *ops) metricsURL() string {
	if o.listener == nil {
		return ""
	}
	return "http://" + o.listener.Addr().String()
}

// expandNodeName expands Celery's node name formats (celery.utils.nodenames
// host_format): %h is the host name, %n its first label, %d the rest (the
// domain), %% a percent sign. A name without "@" is a host name for the
// default name "celery", as in Celery.
func expandNodeName(pattern, host string) (string, error) {
	if pattern == "" {
		pattern = "celery@%h"
	} else if !strings.Contains(pattern, "@") {
		pattern = "celery@" + pattern
	}
	short, domain, _ := strings.Cut(host, ".")
	return simpleFormat(pattern, map[byte]string{'h': host, 'n': short, 'd': domain, 'i': "0", 'I': ""})
}

// expandNodeFile expands the formats of --pidfile and --logfile as Celery's
// node_format does for a worker's main process: %p is the node name, %n
// its name part, %h its host part, %d the host's domain, %i 0 and %I empty.
func expandNodeFile(pattern, node string) (string, error) {
	name, host, ok := strings.Cut(node, "@")
	if !ok {
		name, host = "celery", node
	}
	_, domain, _ := strings.Cut(host, ".")
	return simpleFormat(pattern, map[byte]string{'p': node, 'n': name, 'h': host, 'd': domain, 'i': "0", 'I': ""})
}

// simpleFormat replaces %x with keys[x] and %% with %, as Celery's
// simple_format; an unknown %x is an error.
func simpleFormat(pattern string, keys map[byte]string) (string, error) {
	var b strings.Builder
	for i := 0; i < len(pattern); i++ {
		if pattern[i] != '%' {
			b.WriteByte(pattern[i])
			continue
		}
		if i+1 == len(pattern) {
			return "", fmt.Errorf("%q ends with a lone %%", pattern)
		}
		i++
		v, ok := keys[pattern[i]]
		if pattern[i] == '%' {
			v, ok = "%", true
		}
		if !ok {
			return "", fmt.Errorf("unknown format %%%c in %q", pattern[i], pattern)
		}
		b.WriteString(v)
	}
	return b.String(), nil
}

// hostname is the host part of default node names.
func hostname() string {
	host, err := os.Hostname()
	if err != nil {
		return "localhost"
	}
	return host
}
