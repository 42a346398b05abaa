package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/vhg/vhg-worker/tasks"
	"github.com/vhg/vhg-worker/worker"
	"github.com/vhg/vhg-worker/worker/metrics"
	"github.com/vhg/vhg-worker/worker/rabbitmq"
	"github.com/vhg/vhg-worker/worker/redis"
)

// workerFlags are the command-line settings of "vhg-worker worker", with
// Celery's names, short forms (celeryargs.go) and environment fallbacks.
type workerFlags struct {
	broker             string
	resultBackend      string
	resultKeyPrefix    string
	queues             string
	excludeQueues      string
	concurrency        int
	autoscale          worker.Autoscale
	prefetchMultiplier int
	nodeName           string
	logLevel           string
	logFile            string
	pidFile            string
	workdir            string
	umask              string
	noColor            bool
	taskEvents         bool
	timeLimit          time.Duration
	softTimeLimit      time.Duration
	withoutHeartbeat   bool
	heartbeatInterval  int
	metricsAddr        string
	shutdownTimeout    time.Duration
	consumerTimeout    time.Duration
	maxRedeliveries    int
	queueType          string
	exchangeType       string
	delayedQueueType   string
	deliveryLimit      int
	pythonFailures     bool
	tasks              taskFlags
	tls                tlsFlags
	inert              inertFlags
}

func parseWorkerFlags(args []string) (workerFlags, error) {
	var f workerFlags
	fs := flag.NewFlagSet("worker", flag.ContinueOnError)
	fs.StringVar(&f.broker, "b", envOr("CELERY_BROKER_URL", rabbitmq.DefaultURL), "broker URL (env CELERY_BROKER_URL)")
	fs.StringVar(&f.broker, "broker", envOr("CELERY_BROKER_URL", rabbitmq.DefaultURL), "same as -b")
	fs.StringVar(&f.resultBackend, "result-backend", envOr("CELERY_RESULT_BACKEND", "amqp://"),
		"result backend: redis://host:port/db, rpc://, amqp:// (legacy per-task queues on the broker), or disabled (env CELERY_RESULT_BACKEND)")
	fs.StringVar(&f.resultKeyPrefix, "result-backend-key-prefix", envOr("CELERY_RESULT_BACKEND_KEY_PREFIX", ""),
		"Redis result backend: Celery's result_backend_transport_options global_keyprefix, put before every key and channel (\"_\" is added unless it ends in :_-.) (env CELERY_RESULT_BACKEND_KEY_PREFIX)")
	fs.StringVar(&f.queues, "Q", "celery", "comma-separated queues to consume")
	fs.StringVar(&f.queues, "queues", "celery", "same as -Q")
	fs.StringVar(&f.excludeQueues, "X", "", "comma-separated queues not to consume, taken out of -Q")
	fs.StringVar(&f.excludeQueues, "exclude-queues", "", "same as -X")
	fs.IntVar(&f.concurrency, "c", runtime.NumCPU(), "number of tasks run at once")
	fs.IntVar(&f.concurrency, "concurrency", runtime.NumCPU(), "same as -c")
	fs.Var(autoscaleFlag{&f.autoscale}, "autoscale", "MAX,MIN: size the pool by the tasks held, as Celery's autoscaler (-c is then unused)")
	fs.IntVar(&f.prefetchMultiplier, "prefetch-multiplier", 4, "prefetch count = concurrency x this")
	fs.Func("O", "default or fair: both are what this worker does (a message goes to a slot only once one is free)", optimization)
	fs.StringVar(&f.nodeName, "n", "celery@%h", "node name; %h is the host name, %n its first label, %d its domain")
	fs.StringVar(&f.nodeName, "hostname", "celery@%h", "same as -n")
	fs.StringVar(&f.logLevel, "l", "info", "log level: debug, info, warning, error, critical")
	fs.StringVar(&f.logLevel, "loglevel", "info", "same as -l")
	fs.StringVar(&f.logFile, "f", "", "append the log to this file instead of stderr (%n, %h, %p, %i, %I as in Celery)")
	fs.StringVar(&f.logFile, "logfile", "", "same as -f")
	fs.StringVar(&f.pidFile, "pidfile", "", "write the process id to this file; refuse to start while it names a live process")
	fs.StringVar(&f.workdir, "workdir", "", "change to this directory before anything else")
	fs.StringVar(&f.umask, "umask", "", "octal umask for the files the worker creates, e.g. 022")
	fs.BoolVar(&f.noColor, "C", false, "no colours in the log")
	fs.BoolVar(&f.noColor, "no-color", false, "same as -C")
	fs.Bool("q", false, "accepted: this worker prints no banner")
	fs.Bool("quiet", false, "same as -q")
	fs.BoolVar(&f.taskEvents, "E", false, "send task events (for Flower); worker events are always sent")
	fs.BoolVar(&f.taskEvents, "task-events", false, "same as -E")
	fs.BoolVar(&f.taskEvents, "events", false, "same as -E")
	fs.Var(secondsFlag{&f.timeLimit}, "time-limit", "hard time limit in seconds for every task whose message and registration set none")
	fs.Var(secondsFlag{&f.softTimeLimit}, "soft-time-limit", "soft time limit in seconds for every task whose message and registration set none")
	fs.Bool("without-gossip", false, "accepted: this worker does not gossip")
	fs.Bool("without-mingle", false, "accepted: this worker does not ask other workers for their state at start (it answers those who ask)")
	fs.BoolVar(&f.withoutHeartbeat, "without-heartbeat", false, "send no worker-online, worker-heartbeat and worker-offline events")
	fs.IntVar(&f.heartbeatInterval, "heartbeat-interval", 2, "seconds between worker-heartbeat events")
	fs.StringVar(&f.metricsAddr, "metrics-addr", "", "serve Prometheus /metrics and /healthz on this address, e.g. :9808 (empty: off)")
	fs.DurationVar(&f.shutdownTimeout, "shutdown-timeout", 60*time.Second, "how long a first SIGTERM/SIGINT waits for running tasks")
	fs.DurationVar(&f.consumerTimeout, "consumer-timeout", 30*time.Minute,
		"RabbitMQ's consumer_timeout (or less): no message is held unacknowledged for more than half of it; longer acks_late tasks are leased (see README)")
	fs.IntVar(&f.maxRedeliveries, "max-redeliveries", 5, "a message that comes back more often because its worker died ends as FAILURE (negative: no limit)")
	fs.StringVar(&f.queueType, "queue-type", envOr("CELERY_TASK_DEFAULT_QUEUE_TYPE", rabbitmq.QueueClassic),
		"type of the task queues: classic or quorum, as Celery's task_default_queue_type (env CELERY_TASK_DEFAULT_QUEUE_TYPE)")
	fs.StringVar(&f.exchangeType, "exchange-type", envOr("CELERY_TASK_DEFAULT_EXCHANGE_TYPE", rabbitmq.ExchangeDirect),
		"type of the exchange named after each task queue: direct or topic, as Celery's task_default_exchange_type (env CELERY_TASK_DEFAULT_EXCHANGE_TYPE)")
	fs.StringVar(&f.delayedQueueType, "delayed-delivery-queue-type", envOr("CELERY_BROKER_NATIVE_DELAYED_DELIVERY_QUEUE_TYPE", rabbitmq.QueueQuorum),
		"type of the shared native delayed delivery queues celery_delayed_*: quorum or classic, as Celery's broker_native_delayed_delivery_queue_type (env CELERY_BROKER_NATIVE_DELAYED_DELIVERY_QUEUE_TYPE)")
	fs.IntVar(&f.deliveryLimit, "delivery-limit", 0,
		"x-delivery-limit of quorum task queues, as the deployment declares them (0: none); a message at its last allowed delivery that came back ends as FAILURE")
	fs.BoolVar(&f.pythonFailures, "report-python-failures", true,
		"publish FAILURE for workflows built by the original Python encode_workflow whose step fails on a Python worker (needs its task events: celery worker -E)")
	f.tasks.add(fs, true)
	f.tls.add(fs)
	f.inert.add(fs)
	if err := fs.Parse(celeryArgs(fs, args)); err != nil {
		return f, err
	}
	if fs.NArg() > 0 {
		return f, fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	if f.deliveryLimit < 0 {
		return f, fmt.Errorf("--delivery-limit %d: want 0 (none) or more", f.deliveryLimit)
	}
	for _, c := range []struct{ flag, value, a, b string }{
		{"--queue-type", f.queueType, rabbitmq.QueueClassic, rabbitmq.QueueQuorum},
		{"--exchange-type", f.exchangeType, rabbitmq.ExchangeDirect, rabbitmq.ExchangeTopic},
		{"--delayed-delivery-queue-type", f.delayedQueueType, rabbitmq.QueueClassic, rabbitmq.QueueQuorum},
	} {
		if c.value != c.a && c.value != c.b {
			return f, fmt.Errorf("%s %q: want %s or %s", c.flag, c.value, c.a, c.b)
		}
	}
	if f.heartbeatInterval <= 0 {
		return f, fmt.Errorf("--heartbeat-interval: want seconds > 0, not %d", f.heartbeatInterval)
	}
	if len(f.consumedQueues()) == 0 {
		return f, fmt.Errorf("no queue left to consume: -Q %q less -X %q", f.queues, f.excludeQueues)
	}
	return f, nil
}

// consumedQueues are -Q less -X, in the order of -Q.
func (f workerFlags) consumedQueues() []string {
	excluded := splitList(f.excludeQueues)
	var out []string
	for _, q := range splitList(f.queues) {
		if !slices.Contains(excluded, q) {
			out = append(out, q)
		}
	}
	return out
}

func envOr(key, fallback string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return fallback
}

func newLogger(level string) (*logrus.Logger, error) {
	log := logrus.New()
	log.SetOutput(os.Stderr)
	log.SetFormatter(&logrus.TextFormatter{FullTimestamp: true, TimestampFormat: "2006-01-02T15:04:05.000Z07:00"})
	switch level = strings.ToLower(level); level {
	case "warn":
		level = "warning"
	case "critical": // Celery's name for Python's CRITICAL
		level = "fatal"
	}
	lvl, err := logrus.ParseLevel(level)
	if err != nil {
		return nil, fmt.Errorf("bad log level %q", level)
	}
	log.SetLevel(lvl)
	return log, nil
}

func runWorker(args []string) int {
	f, err := parseWorkerFlags(args)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "vhg-worker worker: %v\n", err)
		return 2
	}
	if err := f.applyProcessOptions(); err != nil {
		fmt.Fprintf(os.Stderr, "vhg-worker worker: %v\n", err)
		return 2
	}
	log, err := newLogger(f.logLevel)
	if err != nil {
		fmt.Fprintf(os.Stderr, "vhg-worker worker: %v\n", err)
		return 2
	}
	if f.noColor {
		log.SetFormatter(&logrus.TextFormatter{FullTimestamp: true, TimestampFormat: "2006-01-02T15:04:05.000Z07:00", DisableColors: true})
	}

	deps, err := f.tasks.deps()
	if err != nil {
		fmt.Fprintf(os.Stderr, "vhg-worker worker: %v\n", err)
		return 2
	}
	node, err := expandNodeName(f.nodeName, hostname())
	if err != nil {
		fmt.Fprintf(os.Stderr, "vhg-worker worker: -n: %v\n", err)
		return 2
	}
	if f.logFile != "" {
		logFile, err := openLogFile(f.logFile, node)
		if err != nil {
			fmt.Fprintf(os.Stderr, "vhg-worker worker: --logfile: %v\n", err)
			return 2
		}
		defer logFile.Close()
		log.SetOutput(logFile)
	}
	if f.pidFile != "" {
		release, err := writePidFile(f.pidFile, node)
		if err != nil {
			fmt.Fprintf(os.Stderr, "vhg-worker worker: --pidfile: %v\n", err)
			return 1
		}
		defer release()
	}
	for _, w := range f.inert.seen {
		log.Warn("ignoring " + w)
	}

	// The metrics exist once the broker is connected; its connection
	// events are counted from then on.
	var collector atomic.Pointer[metrics.Collector]
	broker, err := rabbitmq.Dial(rabbitmq.Config{
		URL: f.broker, TLS: f.tls.broker, Log: log, ConsumerTimeout: f.consumerTimeout,
		QueueType: f.queueType, ExchangeType: f.exchangeType, DelayedDeliveryQueueType: f.delayedQueueType,
		DeliveryLimit: f.deliveryLimit,
		OnConnectionLost: func(error) {
			if m := collector.Load(); m != nil {
				m.BrokerDisconnected()
			}
		},
		OnReconnect: func() {
			if m := collector.Load(); m != nil {
				m.BrokerReconnected()
			}
		},
	})
	if err != nil {
		cause := errors.Unwrap(err) // without "rabbitmq: connect to URL"
		if cause == nil {
			cause = err
		}
		fmt.Fprintf(os.Stderr, "vhg-worker: cannot reach the broker at %s: %v\n"+
			"  start RabbitMQ (rabbitmq-server -detached, or make services) or pass -b amqp://user:pass@host:5672//\n",
			rabbitmq.Redact(f.broker), cause)
		return 1
	}
	defer broker.Close()

	backend, closeBackend, err := openBackend(f.resultBackend, f.resultKeyPrefix, f.tls.backend, broker)
	if err != nil {
		fmt.Fprintf(os.Stderr, "vhg-worker: %v\n", err)
		return 1
	}
	defer closeBackend()

	// The status queue always lives on RabbitMQ, whatever the result
	// backend: it is what the VHG status consumers read.
	deps.Status = broker.AMQPBackend(0)
	// The notify_failure errbacks travel on a queue only Go workers
	// consume (the original Python workers lack that task).
	queues := f.consumedQueues() // never empty: parseWorkerFlags checks
	deps.FailureQueue = tasks.FailureQueue(queues[0])
	mux := worker.NewServeMux()
	pipeline := registerTasks(mux, deps)

	srv := worker.NewServer(worker.Config{
		Queues:             tasks.WithFailureQueues(queues),
		Concurrency:        f.concurrency,
		PrefetchMultiplier: f.prefetchMultiplier,
		NodeName:           node,
		ShutdownTimeout:    f.shutdownTimeout,
		MaxRedeliveries:    f.maxRedeliveries,
		Autoscale:          f.autoscale,
		TaskTimeLimit:      f.timeLimit,
		TaskSoftTimeLimit:  f.softTimeLimit,
	}, broker, backend, mux, log)

	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	srv.Observe(pipeline.RevokedStatus(log))
	if f.pythonFailures {
		if err := watchPythonFailures(ctx, pyFailuresConfig{URL: f.broker, TLS: f.tls.broker, Status: deps.Status, Log: log}); err != nil {
			fmt.Fprintf(os.Stderr, "vhg-worker: %v\n", err)
			return 1
		}
	}
	operations, err := newOps(srv, broker, opsConfig{
		taskEvents:        f.taskEvents,
		withoutHeartbeat:  f.withoutHeartbeat,
		heartbeatInterval: time.Duration(f.heartbeatInterval) * time.Second,
		metricsAddr:       f.metricsAddr,
		ffmpegTasks:       ffmpegTasks,
		shutdown:          stop,
		conf: map[string]any{
			"broker_url":                                rabbitmq.Redact(f.broker),
			"result_backend":                            rabbitmq.Redact(f.resultBackend),
			"task_default_queue_type":                   f.queueType,
			"task_default_exchange_type":                f.exchangeType,
			"broker_native_delayed_delivery_queue_type": f.delayedQueueType,
		},
		log: log,
	})
	if err != nil {
		fmt.Fprintf(os.Stderr, "vhg-worker: %v\n", err)
		return 1
	}
	signals := make(chan os.Signal, 2)
	signal.Notify(signals, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(signals)
	go func() {
		sig, ok := <-signals
		if !ok {
			return
		}
		log.WithField("signal", sig).Warn("warm shutdown: finishing running tasks (send again to stop now)")
		stop()
		if sig, ok = <-signals; ok {
			log.WithField("signal", sig).Warn("cold shutdown: cancelling running tasks")
			srv.StopNow()
		}
	}()
	// A lost broker connection is repaired by the broker itself
	// (reconnect, re-declare, consume again); the worker keeps running.
	collector.Store(operations.metrics)

	operations.start(ctx)
	err = srv.Run(ctx)
	stop()
	operations.stop()
	if err != nil {
		log.WithError(err).Error("worker stopped with an error")
		return 1
	}
	return 0
}

// openBackend opens the result backend named by a Celery URL; keyPrefix is
// the Redis backend's global_keyprefix and refused for the others.
func openBackend(raw, keyPrefix string, tlsFiles worker.TLSFiles, broker *rabbitmq.Broker) (worker.Backend, func(), error) {
	scheme, _, _ := strings.Cut(raw, "://")
	if sc := strings.ToLower(scheme); keyPrefix != "" && sc != "redis" && sc != "rediss" {
		return nil, nil, fmt.Errorf("--result-backend-key-prefix %q: only the redis:// (rediss://) result backend has a key prefix", keyPrefix)
	}
	switch strings.ToLower(scheme) {
	case "redis", "rediss":
		b, err := redis.New(context.Background(), redis.Config{URL: raw, TLS: tlsFiles, KeyPrefix: keyPrefix})
		if err != nil {
			return nil, nil, fmt.Errorf("cannot reach the result backend: %w\n"+
				"  start Redis (redis-server --daemonize yes) or choose another --result-backend", err)
		}
		return b, func() { b.Close() }, nil
	case "rpc":
		return broker.RPCBackend(), func() {}, nil
	case "amqp", "pyamqp", "":
		// The legacy backend lives on the broker connection, as in the
		// original deployment.
		return broker.AMQPBackend(0), func() {}, nil
	case "disabled", "none":
		return nil, func() {}, nil
	default:
		return nil, nil, fmt.Errorf("unsupported result backend %q (use redis://, rediss://, rpc:// or amqp://)", rabbitmq.Redact(raw))
	}
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
