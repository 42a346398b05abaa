package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/vhg/vhg-worker/protocol"
	"github.com/vhg/vhg-worker/tasks"
	"github.com/vhg/vhg-worker/worker"
	"github.com/vhg/vhg-worker/worker/rabbitmq"
)

// runSubmit is "vhg-worker submit [-b URL] [--follow] INPUT": a client that
// sends adaptation.commons.encode_workflow(INPUT) and, with --follow,
// prints the workflow's status messages.
func runSubmit(args []string) int {
	fs := flag.NewFlagSet("submit", flag.ContinueOnError)
	brokerURL := fs.String("b", envOr("CELERY_BROKER_URL", rabbitmq.DefaultURL), "broker URL (env CELERY_BROKER_URL)")
	fs.StringVar(brokerURL, "broker", envOr("CELERY_BROKER_URL", rabbitmq.DefaultURL), "same as -b")
	queue := fs.String("Q", "celery", "queue to send the task to")
	follow := fs.Bool("follow", false, "print the status messages until COMPLETE or FAILURE")
	queueType := fs.String("queue-type", envOr("CELERY_TASK_DEFAULT_QUEUE_TYPE", rabbitmq.QueueClassic),
		"type of the queue, declared before sending as a Celery client does: classic or quorum (env CELERY_TASK_DEFAULT_QUEUE_TYPE)")
	exchangeType := fs.String("exchange-type", envOr("CELERY_TASK_DEFAULT_EXCHANGE_TYPE", rabbitmq.ExchangeDirect),
		"type of the exchange named after the queue: direct or topic (env CELERY_TASK_DEFAULT_EXCHANGE_TYPE)")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), "Usage: vhg-worker submit [flags] INPUT\n\n"+
			"Sends adaptation.commons.encode_workflow(INPUT) to the broker and prints its task id.\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	final, err := submit(ctx, submitConfig{BrokerURL: *brokerURL, Queue: *queue, QueueType: *queueType, ExchangeType: *exchangeType,
		Input: fs.Arg(0), Follow: *follow, Out: os.Stdout})
	if err != nil {
		fmt.Fprintf(os.Stderr, "vhg-worker submit: %v\n", err)
		return 1
	}
	if *follow && final.Status != tasks.StateComplete {
		return 1
	}
	return 0
}

// submitConfig is one submission.
type submitConfig struct {
	BrokerURL string // empty means rabbitmq.DefaultURL
	Queue     string // empty means "celery"
	// QueueType and ExchangeType are those of the queue, declared before
	// sending (rabbitmq.Config); empty means classic and direct.
	QueueType, ExchangeType string
	// Input is the url argument of encode_workflow; a relative path that
	// exists here is made absolute.
	Input string
	// Follow waits for COMPLETE or FAILURE, printing every status message.
	Follow bool
	// Out receives the task id, then one status message (its JSON body) a
	// line.
	Out io.Writer
}

// submit sends encode_workflow and, with Follow, returns its final status
// message (COMPLETE or FAILURE).
func submit(ctx context.Context, cfg submitConfig) (protocol.ResultMeta, error) {
	if cfg.BrokerURL == "" {
		cfg.BrokerURL = rabbitmq.DefaultURL
	}
	input := cfg.Input
	if !strings.Contains(input, "://") && !filepath.IsAbs(input) {
		if _, err := os.Stat(input); err == nil {
			input, _ = filepath.Abs(input)
		}
	}
	broker, err := rabbitmq.Dial(rabbitmq.Config{URL: cfg.BrokerURL, ConnectionName: "vhg-worker submit",
		QueueType: cfg.QueueType, ExchangeType: cfg.ExchangeType})
	if err != nil {
		return protocol.ResultMeta{}, fmt.Errorf("cannot reach the broker: %w", err)
	}
	defer broker.Close()

	id := worker.NewTaskID()
	var statuses <-chan amqp.Delivery
	if cfg.Follow {
		// Listen before sending, so no status can go by unseen.
		conn, deliveries, err := consumeStatus(cfg.BrokerURL, id)
		if err != nil {
			return protocol.ResultMeta{}, err
		}
		defer conn.Close()
		statuses = deliveries
	}
	client := worker.NewClient(broker, worker.ClientConfig{DefaultQueue: cfg.Queue})
	sig := protocol.Signature{Task: tasks.NameEncodeWorkflow, Args: []any{input}, Kwargs: map[string]any{},
		Options: protocol.Options{TaskID: id}}
	if _, err := client.Apply(ctx, sig); err != nil {
		return protocol.ResultMeta{}, err
	}
	fmt.Fprintln(cfg.Out, id)
	if !cfg.Follow {
		return protocol.ResultMeta{}, nil
	}
	for {
		select {
		case d, ok := <-statuses:
			if !ok {
				return protocol.ResultMeta{}, errors.New("the broker closed the status queue")
			}
			fmt.Fprintln(cfg.Out, string(d.Body))
			meta, err := protocol.ParseResultMeta(d.Body)
			if err != nil {
				continue
			}
			if meta.Status == tasks.StateComplete || meta.Status == protocol.StateFailure {
				return meta, nil
			}
		case <-ctx.Done():
			return protocol.ResultMeta{}, context.Cause(ctx)
		}
	}
}

// consumeStatus declares the status queue of taskID exactly as Celery's
// legacy amqp result backend (and rabbitmq.AMQPBackend) does, so both
// declarations agree, and consumes it. brokerURL may list a cluster's
// nodes (";"): the first that answers is used.
func consumeStatus(brokerURL, taskID string) (*amqp.Connection, <-chan amqp.Delivery, error) {
	conn, err := rabbitmq.DialURLs(rabbitmq.Config{URL: brokerURL, Heartbeat: 30 * time.Second, ConnectionName: "vhg-worker submit status"})
	if err != nil {
		return nil, nil, fmt.Errorf("cannot reach the broker at %s: %w", rabbitmq.Redact(brokerURL), err)
	}
	ch, err := conn.Channel()
	if err != nil {
		conn.Close()
		return nil, nil, err
	}
	queue := rabbitmq.ResultQueue(taskID)
	err = ch.ExchangeDeclare(rabbitmq.ResultExchange, amqp.ExchangeDirect, true, false, false, false, nil)
	if err == nil {
		_, err = ch.QueueDeclare(queue, true, true, false, false, amqp.Table{"x-expires": int32(86400000)})
	}
	if err == nil {
		err = ch.QueueBind(queue, queue, rabbitmq.ResultExchange, false, nil)
	}
	var deliveries <-chan amqp.Delivery
	if err == nil {
		deliveries, err = ch.Consume(queue, "", true, false, false, false, nil)
	}
	if err != nil {
		conn.Close()
		return nil, nil, fmt.Errorf("status queue %s: %w", queue, err)
	}
	return conn, deliveries, nil
}
