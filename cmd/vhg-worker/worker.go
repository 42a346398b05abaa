package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/vhg/vhg-worker/worker"
	"github.com/vhg/vhg-worker/worker/metrics"
	"github.com/vhg/vhg-worker/worker/rabbitmq"
	"github.com/vhg/vhg-worker/worker/redis"
)

// workerFlags are the command-line settings of "vhg-worker worker", with
// Celery's names and environment fallbacks.
type workerFlags struct {
	broker             string
	resultBackend      string
	queues             string
	concurrency        int
	prefetchMultiplier int
	nodeName           string
	logLevel           string
	taskEvents         bool
	metricsAddr        string
	shutdownTimeout    time.Duration
	consumerTimeout    time.Duration
	maxRedeliveries    int
	queueType          string
	exchangeType       string
	delayedQueueType   string
	deliveryLimit      int
	tasks              taskFlags
}

func parseWorkerFlags(args []string) (workerFlags, error) {
	var f workerFlags
	fs := flag.NewFlagSet("worker", flag.ContinueOnError)
	fs.StringVar(&f.broker, "b", envOr("CELERY_BROKER_URL", rabbitmq.DefaultURL), "broker URL (env CELERY_BROKER_URL)")
	fs.StringVar(&f.broker, "broker", envOr("CELERY_BROKER_URL", rabbitmq.DefaultURL), "same as -b")
	fs.StringVar(&f.resultBackend, "result-backend", envOr("CELERY_RESULT_BACKEND", "amqp://"),
		"result backend: redis://host:port/db, rpc://, amqp:// (legacy per-task queues on the broker), or disabled (env CELERY_RESULT_BACKEND)")
	fs.StringVar(&f.queues, "Q", "celery", "comma-separated queues to consume")
	fs.StringVar(&f.queues, "queues", "celery", "same as -Q")
	fs.IntVar(&f.concurrency, "c", runtime.NumCPU(), "number of tasks run at once")
	fs.IntVar(&f.concurrency, "concurrency", runtime.NumCPU(), "same as -c")
	fs.IntVar(&f.prefetchMultiplier, "prefetch-multiplier", 4, "prefetch count = concurrency x this")
	fs.StringVar(&f.nodeName, "n", "celery@%h", "node name; %h is the host name, %n its first label, %d its domain")
	fs.StringVar(&f.nodeName, "hostname", "celery@%h", "same as -n")
	fs.StringVar(&f.logLevel, "l", "info", "log level: debug, info, warning, error")
	fs.StringVar(&f.logLevel, "loglevel", "info", "same as -l")
	fs.BoolVar(&f.taskEvents, "E", false, "send task events (for Flower); worker events are always sent")
	fs.BoolVar(&f.taskEvents, "task-events", false, "same as -E")
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
	f.tasks.add(fs, true)
	if err := fs.Parse(args); err != nil {
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
	return f, nil
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
	if level == "warn" {
		level = "warning"
	}
	lvl, err := logrus.ParseLevel(strings.ToLower(level))
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
	log, err := newLogger(f.logLevel)
	if err != nil {
		fmt.Fprintf(os.Stderr, "vhg-worker worker: %v\n", err)
		return 2
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

	// The metrics exist once the broker is connected; its connection
	// events are counted from then on.
	var collector atomic.Pointer[metrics.Collector]
	broker, err := rabbitmq.Dial(rabbitmq.Config{
		URL: f.broker, Log: log, ConsumerTimeout: f.consumerTimeout,
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
		fmt.Fprintf(os.Stderr, "vhg-worker: cannot reach the broker at %s: %v\n"+
			"  start RabbitMQ (rabbitmq-server -detached, or make services) or pass -b amqp://user:pass@host:5672//\n",
			rabbitmq.Redact(f.broker), errors.Unwrap(err))
		return 1
	}
	defer broker.Close()

	backend, closeBackend, err := openBackend(f.resultBackend, broker)
	if err != nil {
		fmt.Fprintf(os.Stderr, "vhg-worker: %v\n", err)
		return 1
	}
	defer closeBackend()

	// The status queue always lives on RabbitMQ, whatever the result
	// backend: it is what the VHG status consumers read.
	deps.Status = broker.AMQPBackend(0)
	mux := worker.NewServeMux()
	pipeline := registerTasks(mux, deps)

	srv := worker.NewServer(worker.Config{
		Queues:             splitList(f.queues),
		Concurrency:        f.concurrency,
		PrefetchMultiplier: f.prefetchMultiplier,
		NodeName:           node,
		ShutdownTimeout:    f.shutdownTimeout,
		MaxRedeliveries:    f.maxRedeliveries,
	}, broker, backend, mux, log)

	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	srv.Observe(pipeline.RevokedStatus(log))
	operations, err := newOps(srv, broker, opsConfig{
		taskEvents:  f.taskEvents,
		metricsAddr: f.metricsAddr,
		ffmpegTasks: ffmpegTasks,
		shutdown:    stop,
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

// openBackend opens the result backend named by a Celery URL.
func openBackend(raw string, broker *rabbitmq.Broker) (worker.Backend, func(), error) {
	scheme, _, _ := strings.Cut(raw, "://")
	switch strings.ToLower(scheme) {
	case "redis":
		b, err := redis.New(context.Background(), redis.Config{URL: raw})
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
		return nil, nil, fmt.Errorf("unsupported result backend %q (use redis://, rpc:// or amqp://)", raw)
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
