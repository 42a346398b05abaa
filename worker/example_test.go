package worker_test

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/vhg/vhg-worker/worker"
	"github.com/vhg/vhg-worker/worker/memory"
)

// A Server on the in-process broker and backend: register a task under its
// Celery name, run the Server, send it a task and read the stored result,
// as a Python client would read it from Redis.
func ExampleServer() {
	mux := worker.NewServeMux()
	mux.HandleFunc("proj.add", func(_ context.Context, t *worker.Task) (any, error) {
		var sum int64
		for _, a := range t.Args() {
			n, _ := a.(int64)
			sum += n
		}
		return sum, nil
	})
	broker, backend := memory.NewBroker(), memory.NewBackend()
	log := logrus.New()
	log.SetOutput(io.Discard)
	srv := worker.NewServer(worker.Config{Concurrency: 2}, broker, backend, mux, log)

	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- srv.Run(ctx) }()

	client := worker.NewClient(broker, worker.ClientConfig{Backend: backend})
	id, err := client.SendTask(ctx, "proj.add", []any{int64(2), int64(3)}, nil)
	if err != nil {
		panic(err)
	}
	wait, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	meta, err := backend.Wait(wait, id)
	if err != nil {
		panic(err)
	}
	fmt.Println(meta.Status, meta.Result)

	stop()
	fmt.Println("stopped:", <-done)
	// Output:
	// SUCCESS 5
	// stopped: <nil>
}
