// Command celery-conformance-worker is a Go worker that runs the tasks of
// Celery's own integration suite (t/integration/tasks.py at v5.2.6) under
// their Celery names, so that the suite's canvas tests can run against Go
// workers. testdata/conformance/run.sh starts it; see that script.
//
//	celery-conformance-worker [-b URL] [-result-backend URL] [-Q queue] [-n node] [-c N]
//
// It answers ping through the remote control mailbox, which the suite's
// fixture uses to wait for it. The tasks are not part of the production
// worker (cmd/vhg-worker).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	redigo "github.com/gomodule/redigo/redis"
	"github.com/sirupsen/logrus"
	"github.com/vhg/vhg-worker/worker"
	"github.com/vhg/vhg-worker/worker/rabbitmq"
	"github.com/vhg/vhg-worker/worker/redis"
)

func main() {
	os.Exit(run(os.Args[1:]))
}

// flags are the command-line settings.
type flags struct {
	broker, backend, queues, node, redisAddr, logLevel string
	concurrency                                        int
}

func parseFlags(args []string) (flags, error) {
	var f flags
	fs := flag.NewFlagSet("celery-conformance-worker", flag.ContinueOnError)
	fs.StringVar(&f.broker, "b", rabbitmq.DefaultURL, "broker URL")
	fs.StringVar(&f.backend, "result-backend", "redis://127.0.0.1:6379/0", "result backend URL (redis:// only: the suite needs it)")
	fs.StringVar(&f.queues, "Q", "celery", "comma-separated queues to consume")
	fs.StringVar(&f.node, "n", "conformance-go@localhost", "node name (answers ping)")
	redisHost := os.Getenv("REDIS_HOST")
	if redisHost == "" {
		redisHost = "127.0.0.1"
	}
	fs.StringVar(&f.redisAddr, "redis-addr", redisHost+":6379", "Redis the tasks write to (redis_echo, redis_count); the suite reads REDIS_HOST")
	fs.IntVar(&f.concurrency, "c", 8, "number of tasks run at once")
	fs.StringVar(&f.logLevel, "l", "info", "log level")
	if err := fs.Parse(args); err != nil {
		return f, err
	}
	if fs.NArg() > 0 {
		return f, fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	if !strings.HasPrefix(f.backend, "redis://") {
		return f, fmt.Errorf("-result-backend %q: the canvas suite needs a redis:// backend", f.backend)
	}
	return f, nil
}

func run(args []string) int {
	f, err := parseFlags(args)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "celery-conformance-worker: %v\n", err)
		return 2
	}
	log := logrus.New()
	log.SetFormatter(&logrus.TextFormatter{FullTimestamp: true, TimestampFormat: "15:04:05.000"})
	if lvl, err := logrus.ParseLevel(f.logLevel); err == nil {
		log.SetLevel(lvl)
	}
	if err := serve(f, log); err != nil {
		log.WithError(err).Error("celery-conformance-worker stopped")
		return 1
	}
	return 0
}

// serve runs the worker until SIGINT or SIGTERM.
func serve(f flags, log *logrus.Logger) error {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	broker, err := rabbitmq.Dial(rabbitmq.Config{URL: f.broker, Log: log})
	if err != nil {
		return fmt.Errorf("broker %s: %w", rabbitmq.Redact(f.broker), err)
	}
	defer broker.Close()
	backend, err := redis.New(ctx, redis.Config{URL: f.backend, Log: log})
	if err != nil {
		return fmt.Errorf("result backend: %w", err)
	}
	defer backend.Close()
	pool := &redigo.Pool{
		MaxIdle:     4,
		IdleTimeout: time.Minute,
		DialContext: func(ctx context.Context) (redigo.Conn, error) {
			return redigo.DialContext(ctx, "tcp", f.redisAddr)
		},
	}
	defer pool.Close()

	mux := worker.NewServeMux()
	(&suiteTasks{redis: pool}).register(mux)
	srv := worker.NewServer(worker.Config{
		Queues:      strings.Split(f.queues, ","),
		Concurrency: f.concurrency,
		NodeName:    f.node,
	}, broker, backend, mux, log)

	mailbox, err := broker.OpenMailbox(f.node)
	if err != nil {
		return err
	}
	control := worker.NewControl(srv, worker.ControlConfig{Shutdown: stop, Log: log})
	go func() {
		if err := mailbox.Serve(ctx, control); err != nil {
			log.WithError(err).Error("remote control stopped")
		}
	}()
	log.WithFields(logrus.Fields{"queues": f.queues, "node": f.node, "tasks": len(mux.Names())}).Info("conformance worker ready")
	return srv.Run(ctx)
}
