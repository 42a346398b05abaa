//go:build integration

package rabbitmq_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/vhg/vhg-worker/protocol"
	"github.com/vhg/vhg-worker/worker"
	"github.com/vhg/vhg-worker/worker/rabbitmq"
)

// TestETAHoldsNoSlot: with concurrency 1 and prefetch 1 (per-consumer QoS,
// which cannot grow), three tasks whose ETA is 5 s away, sent straight to
// the queue (as a Celery 5.2 client, or any client on a direct exchange,
// sends them), do not keep the worker from running a task sent after them
// at once: each is given back through native delayed delivery on arrival
// instead of holding the only slot. They run after their ETA.
func TestETAHoldsNoSlot(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct{ queueType, exchangeType string }{
		{rabbitmq.QueueClassic, rabbitmq.ExchangeDirect},
		{rabbitmq.QueueQuorum, rabbitmq.ExchangeTopic},
	} {
		t.Run(tt.queueType+"-"+tt.exchangeType, func(t *testing.T) {
			t.Parallel()
			queue := uniqueName(t, "eta")
			deleteTaskQueue(t, queue)
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()

			type run struct {
				id string
				at time.Time
			}
			var mu sync.Mutex
			var runs []run
			all := make(chan struct{})
			mux := worker.NewServeMux()
			mux.HandleFunc("test.record", func(_ context.Context, task *worker.Task) (any, error) {
				mu.Lock()
				defer mu.Unlock()
				runs = append(runs, run{task.Msg.ID, time.Now()})
				if len(runs) == 4 {
					close(all)
				}
				return nil, nil
			})
			log := logrus.New()
			log.SetOutput(logWriter{t})
			b, err := rabbitmq.Dial(rabbitmq.Config{URL: amqpURL(), ConnectionName: "vhg-worker-test " + t.Name(),
				QueueType: tt.queueType, ExchangeType: tt.exchangeType, Log: log})
			if err != nil {
				unreachable(t, err)
			}
			defer b.Close()
			srv := worker.NewServer(worker.Config{Queues: []string{queue}, Concurrency: 1, PrefetchMultiplier: 1,
				NodeName: "eta@test", ShutdownTimeout: 5 * time.Second}, b, nil, mux, log)
			runCtx, stop := context.WithCancel(ctx)
			done := make(chan error, 1)
			go func() { done <- srv.Run(runCtx) }()
			defer func() {
				stop()
				if err := <-done; err != nil {
					t.Errorf("Run: %v", err)
				}
			}()

			// A client without native delayed delivery: every message
			// goes straight to the queue.
			client, err := rabbitmq.Dial(rabbitmq.Config{URL: amqpURL(), ConnectionName: "vhg-worker-test client " + t.Name(),
				QueueType: tt.queueType, ExchangeType: tt.exchangeType, NoNativeDelay: true})
			if err != nil {
				unreachable(t, err)
			}
			defer client.Close()
			eta := time.Now().Add(5 * time.Second)
			send := func(id string, eta time.Time) {
				env, err := protocol.Encode(&protocol.Message{ID: id, Task: "test.record", Args: []any{}, Kwargs: map[string]any{}, ETA: eta})
				if err != nil {
					t.Fatal(err)
				}
				if err := client.Publish(ctx, worker.QueueRoute(queue), env); err != nil {
					t.Fatal(err)
				}
			}
			for _, id := range []string{"eta-1", "eta-2", "eta-3"} {
				send(id, eta)
			}
			send("now", time.Time{})

			select {
			case <-all:
			case <-ctx.Done():
				mu.Lock()
				t.Fatalf("only %d of 4 tasks ran: %v", len(runs), runs)
			}
			mu.Lock()
			defer mu.Unlock()
			if runs[0].id != "now" {
				t.Errorf("first run %q, want the task without ETA before the ETA tasks (runs %v)", runs[0].id, runs)
			}
			if !runs[0].at.Before(eta) {
				t.Errorf("the task without ETA ran at %v, not before the ETAs (%v)", runs[0].at, eta)
			}
			for _, r := range runs[1:] {
				if r.at.Before(eta) {
					t.Errorf("%s ran %v before its ETA", r.id, eta.Sub(r.at))
				}
			}
		})
	}
}

// TestRequeueIsNotARedelivery: an acks_late task cancelled by the worker's
// shutdown is given back to its queue, three times, with
// MaxRedeliveries 1; each time it comes back as a requeue, not as a
// return, and the fourth worker runs it to SUCCESS instead of ending it as
// WorkerLostError.
func TestRequeueIsNotARedelivery(t *testing.T) {
	t.Parallel()
	for _, queueType := range []string{rabbitmq.QueueClassic, rabbitmq.QueueQuorum} {
		t.Run(queueType, func(t *testing.T) {
			t.Parallel()
			queue := uniqueName(t, "requeue")
			deleteTaskQueue(t, queue)
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()

			var mu sync.Mutex
			var infos []worker.DeliveryInfo
			started := make(chan struct{}, 10)
			mux := worker.NewServeMux()
			mux.HandleFunc("test.requeued", func(ctx context.Context, task *worker.Task) (any, error) {
				mu.Lock()
				infos = append(infos, task.Delivery)
				n := len(infos)
				mu.Unlock()
				started <- struct{}{}
				if n <= 3 {
					<-ctx.Done() // cancelled by the shutdown
					return nil, context.Cause(ctx)
				}
				return "done", nil
			}, worker.AcksLate())
			backend := &lastState{}
			for life := 0; life < 4; life++ {
				log := logrus.New()
				log.SetOutput(logWriter{t})
				b, err := rabbitmq.Dial(rabbitmq.Config{URL: amqpURL(), ConnectionName: "vhg-worker-test " + t.Name(), QueueType: queueType, Log: log})
				if err != nil {
					unreachable(t, err)
				}
				srv := worker.NewServer(worker.Config{Queues: []string{queue}, Concurrency: 1, MaxRedeliveries: 1,
					ShutdownTimeout: 100 * time.Millisecond, NodeName: "requeue@test"}, b, backend, mux, log)
				runCtx, stop := context.WithCancel(ctx)
				done := make(chan error, 1)
				go func() { done <- srv.Run(runCtx) }()
				if life == 0 {
					env, err := protocol.Encode(&protocol.Message{ID: "requeued", Task: "test.requeued", Args: []any{}, Kwargs: map[string]any{}})
					if err != nil {
						t.Fatal(err)
					}
					if err := b.Publish(ctx, worker.QueueRoute(queue), env); err != nil {
						t.Fatal(err)
					}
				}
				select {
				case <-started:
				case <-ctx.Done():
					t.Fatalf("life %d: the task did not start; states %v", life, backend.states())
				}
				if life == 3 {
					// Wait for the outcome before stopping.
					for backend.last() != protocol.StateSuccess && ctx.Err() == nil {
						time.Sleep(20 * time.Millisecond)
					}
				}
				stop()
				if err := <-done; err != nil {
					t.Errorf("life %d: Run: %v", life, err)
				}
				b.Close()
			}
			if got := backend.last(); got != protocol.StateSuccess {
				t.Errorf("final state %s, want SUCCESS (states %v)", got, backend.states())
			}
			mu.Lock()
			defer mu.Unlock()
			for i, info := range infos {
				if info.Redeliveries != 0 || info.Redelivered != (i > 0) {
					t.Errorf("run %d: Redeliveries %d, Redelivered %v; want 0, %v", i+1, info.Redeliveries, info.Redelivered, i > 0)
				}
			}
		})
	}
}

// lastState is a backend that keeps the states stored.
type lastState struct {
	mu sync.Mutex
	s  []protocol.State
}

func (b *lastState) Store(_ context.Context, meta protocol.ResultMeta, _ worker.ReplyRoute) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.s = append(b.s, meta.Status)
	return nil
}

func (b *lastState) states() []protocol.State {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]protocol.State(nil), b.s...)
}

func (b *lastState) last() protocol.State {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.s) == 0 {
		return ""
	}
	return b.s[len(b.s)-1]
}
