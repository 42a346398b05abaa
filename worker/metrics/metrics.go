// Package metrics exposes a worker's task counters to Prometheus and its
// health to load balancers and orchestrators.
//
// # Metrics
//
// A Collector is a worker.Observer: add it with Server.Observe and every
// task outcome is counted by task name. Only registered names are label
// values; any other name is counted under task="unregistered" (see
// Unregistered), so the number of series stays bounded whatever arrives. The gauges read the Server when
// scraped. Everything is registered on the prometheus.Registerer passed
// in, never on the global one.
//
//	vhg_worker_tasks_received_total{task}    messages accepted for running
//	vhg_worker_tasks_succeeded_total{task}
//	vhg_worker_tasks_failed_total{task}
//	vhg_worker_tasks_retried_total{task}
//	vhg_worker_tasks_revoked_total{task}     revoked, expired or terminated
//	vhg_worker_tasks_rejected_total{task}
//	vhg_worker_task_runtime_seconds{task}    histogram of handler run times
//	vhg_worker_tasks_active                  tasks running now
//	vhg_worker_tasks_held                    received, waiting for a slot or an ETA
//	vhg_worker_ffmpeg_seconds_total{task}    time spent in tasks that run ffmpeg
//	vhg_worker_result_store_failures_total{task}  outcomes the backend did not store
//	vhg_worker_broker_disconnects_total      broker connections lost
//	vhg_worker_broker_reconnects_total       broker connections restored
//
// # Health
//
// Handler serves /metrics and /healthz; /healthz answers 200 while the
// health check passes (broker connected, worker consuming) and 503 with
// the reason otherwise.
package metrics

import (
	"net/http"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/vhg/vhg-worker/protocol"
	"github.com/vhg/vhg-worker/worker"
)

// Source is what the gauges read when scraped, and what says which task
// names are label values; *worker.Server is one.
type Source interface {
	Stats() worker.Stats
	// Registered reports whether a task name is registered (ServeMux.Has).
	Registered(task string) bool
}

// Unregistered is the task label of every name that is not registered:
// names come from messages, and a label value per unknown (or hostile)
// name would grow the series without bound, or, for a name that is not
// valid UTF-8, make the Prometheus client panic.
const Unregistered = "unregistered"

// Config configures a Collector. Every zero value has the meaning given.
type Config struct {
	// FFmpegTasks names the tasks whose run time counts as ffmpeg time
	// (their handlers spend it in ffmpeg); empty counts none.
	FFmpegTasks []string
	// RuntimeBuckets are the histogram buckets in seconds; nil means
	// DefaultRuntimeBuckets.
	RuntimeBuckets []float64
	// BrokerNode names the broker node the worker is connected to (of a
	// cluster's ";"-separated URLs), as vhg_worker_broker_node_info's
	// node label; nil means no such metric.
	BrokerNode func() string
}

// DefaultRuntimeBuckets span quick bookkeeping tasks to hour-long encodes.
var DefaultRuntimeBuckets = []float64{0.005, 0.025, 0.1, 0.5, 1, 5, 15, 60, 300, 900, 1800, 3600}

// Collector counts task outcomes; it implements worker.Observer.
type Collector struct {
	received    *prometheus.CounterVec
	succeeded   *prometheus.CounterVec
	failed      *prometheus.CounterVec
	retried     *prometheus.CounterVec
	revoked     *prometheus.CounterVec
	rejected    *prometheus.CounterVec
	runtime     *prometheus.HistogramVec
	ffmpeg      *prometheus.CounterVec
	storeFailed *prometheus.CounterVec
	disconnects prometheus.Counter
	reconnects  prometheus.Counter
	ffmpegTasks map[string]bool
	src         Source
}

var _ worker.Observer = (*Collector)(nil)

// New registers the worker's metrics on reg and returns their Collector.
func New(reg prometheus.Registerer, src Source, cfg Config) (*Collector, error) {
	buckets := cfg.RuntimeBuckets
	if buckets == nil {
		buckets = DefaultRuntimeBuckets
	}
	byTask := func(name, help string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "vhg_worker", Name: name, Help: help}, []string{"task"})
	}
	c := &Collector{
		received:  byTask("tasks_received_total", "Task messages received and accepted for running, by task name."),
		succeeded: byTask("tasks_succeeded_total", "Tasks that succeeded, by task name."),
		failed:    byTask("tasks_failed_total", "Tasks that failed (including unknown task names), by task name."),
		retried:   byTask("tasks_retried_total", "Tasks that asked to be retried, by task name."),
		revoked:   byTask("tasks_revoked_total", "Tasks revoked, expired or terminated, by task name."),
		rejected:  byTask("tasks_rejected_total", "Task messages rejected by their handler, by task name."),
		runtime: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "vhg_worker", Name: "task_runtime_seconds",
			Help: "How long task handlers ran, by task name.", Buckets: buckets,
		}, []string{"task"}),
		ffmpeg: byTask("ffmpeg_seconds_total", "Seconds spent running the tasks that run ffmpeg, by task name."),
		storeFailed: byTask("result_store_failures_total",
			"Task outcomes the result backend did not store, even after its retries, by task name."),
		disconnects: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "vhg_worker", Name: "broker_disconnects_total",
			Help: "Broker connections lost.",
		}),
		reconnects: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "vhg_worker", Name: "broker_reconnects_total",
			Help: "Broker connections restored after a loss.",
		}),
		ffmpegTasks: make(map[string]bool, len(cfg.FFmpegTasks)),
		src:         src,
	}
	for _, name := range cfg.FFmpegTasks {
		c.ffmpegTasks[name] = true
	}
	active := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: "vhg_worker", Name: "tasks_active", Help: "Tasks running now.",
	}, func() float64 { return float64(src.Stats().Active) })
	held := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: "vhg_worker", Name: "tasks_held",
		Help: "Task messages prefetched and held: waiting for a free slot or for their ETA.",
	}, func() float64 { return float64(src.Stats().Held) })
	all := []prometheus.Collector{
		c.received, c.succeeded, c.failed, c.retried, c.revoked, c.rejected,
		c.runtime, c.ffmpeg, c.storeFailed, c.disconnects, c.reconnects, active, held,
	}
	if cfg.BrokerNode != nil {
		all = append(all, nodeInfo{prometheus.NewDesc("vhg_worker_broker_node_info",
			"1, labelled with the broker node (URL without password) the worker is connected to or tries next.",
			[]string{"node"}, nil), cfg.BrokerNode})
	}
	for _, m := range all {
		if err := reg.Register(m); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// ObserveTask implements worker.Observer.
func (c *Collector) ObserveTask(e worker.TaskEvent) {
	task := c.label(e.Msg)
	switch e.Type {
	case protocol.EventTaskReceived:
		c.received.WithLabelValues(task).Inc()
	case protocol.EventTaskSucceeded:
		c.succeeded.WithLabelValues(task).Inc()
		c.ran(task, e.Runtime)
	case protocol.EventTaskFailed:
		c.failed.WithLabelValues(task).Inc()
		c.ran(task, e.Runtime)
	case protocol.EventTaskRetried:
		c.retried.WithLabelValues(task).Inc()
		c.ran(task, e.Runtime)
	case protocol.EventTaskRevoked:
		c.revoked.WithLabelValues(task).Inc()
		if e.Terminated {
			c.ran(task, e.Runtime)
		}
	case protocol.EventTaskRejected:
		c.rejected.WithLabelValues(task).Inc()
	case worker.EventStoreFailed:
		c.storeFailed.WithLabelValues(task).Inc()
	}
}

// label returns the task label of a request: its name when registered,
// else Unregistered.
func (c *Collector) label(m *protocol.Message) string {
	if m == nil || !utf8.ValidString(m.Task) || !c.src.Registered(m.Task) {
		return Unregistered
	}
	return m.Task
}

// ran records a handler's run time. A failure before the handler ran (an
// unknown task name) has no run time and is not recorded.
func (c *Collector) ran(task string, d time.Duration) {
	if d <= 0 {
		return
	}
	c.runtime.WithLabelValues(task).Observe(d.Seconds())
	if c.ffmpegTasks[task] {
		c.ffmpeg.WithLabelValues(task).Add(d.Seconds())
	}
}

// nodeInfo is the vhg_worker_broker_node_info gauge, read at each scrape.
type nodeInfo struct {
	desc *prometheus.Desc
	node func() string
}

func (n nodeInfo) Describe(ch chan<- *prometheus.Desc) { ch <- n.desc }

func (n nodeInfo) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.MustNewConstMetric(n.desc, prometheus.GaugeValue, 1, n.node())
}

// BrokerDisconnected counts a lost broker connection.
func (c *Collector) BrokerDisconnected() { c.disconnects.Inc() }

// BrokerReconnected counts a broker connection restored after a loss.
func (c *Collector) BrokerReconnected() { c.reconnects.Inc() }

// Handler serves the metrics gathered from g at /metrics and the health
// check at /healthz: 200 "ok" when health returns nil, followed by what
// it says (the broker node), else 503 and the error.
func Handler(g prometheus.Gatherer, health func() (string, error)) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(g, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		detail, err := health()
		if err != nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			w.Write([]byte(err.Error() + "\n"))
			return
		}
		if detail != "" {
			detail = " " + detail
		}
		w.Write([]byte("ok" + detail + "\n"))
	})
	return mux
}
