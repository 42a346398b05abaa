//go:build integration

package rabbitmq

import (
	"fmt"
	"math/rand/v2"
	"os"
	"sync"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/sirupsen/logrus"
)

// The settler against the real RabbitMQ.

// TestSettlerOnRabbitMQ settles deliveries in a random order from several
// goroutines, with one held back until the end (a gap) and some rejected
// with requeue, and checks with RabbitMQ that exactly the rejected ones
// are back in the queue and that the channel was never closed (an ack of
// an unknown or already settled tag closes it).
func TestSettlerOnRabbitMQ(t *testing.T) {
	url := os.Getenv("VHG_TEST_AMQP_URL")
	if url == "" {
		url = "amqp://guest:guest@127.0.0.1:5672/"
	}
	conn, err := amqp.Dial(url)
	if err != nil {
		t.Fatalf("RabbitMQ is not reachable at %s: %v (start it with `make setup`)", Redact(url), err)
	}
	defer conn.Close()
	for round := range 5 {
		t.Run(fmt.Sprint("round ", round), func(t *testing.T) {
			settleRound(t, conn, rand.New(rand.NewPCG(uint64(round), 42)), round%2 == 0)
		})
	}
}

func settleRound(t *testing.T, conn *amqp.Connection, rnd *rand.Rand, rejectHeld bool) {
	const n = 200
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	closed := ch.NotifyClose(make(chan *amqp.Error, 1))
	q, err := ch.QueueDeclare("", false, false, true, false, nil) // exclusive: gone with the connection
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		if err := ch.Publish("", q.Name, false, false, amqp.Publishing{Body: []byte(fmt.Sprint(i))}); err != nil {
			t.Fatal(err)
		}
	}
	if err := ch.Qos(n, 0, false); err != nil {
		t.Fatal(err)
	}
	msgs, err := ch.Consume(q.Name, "settle-test", false, false, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	var tags []uint64
	for len(tags) < n {
		select {
		case m := <-msgs:
			tags = append(tags, m.DeliveryTag)
		case <-time.After(10 * time.Second):
			t.Fatalf("got %d of %d messages", len(tags), n)
		}
	}
	// Unacknowledged deliveries stay with the channel after the cancel.
	if err := ch.Cancel("settle-test", false); err != nil {
		t.Fatal(err)
	}

	log := logrus.New()
	log.SetOutput(testLog{t})
	s := newSettler(ch, 8, log)
	// The held message: acknowledged in some rounds, rejected in others.
	held := tags[rnd.IntN(n)]
	if rejectHeld {
		held = 7 * (1 + uint64(rnd.IntN(n/7)))
	}
	rnd.Shuffle(len(tags), func(i, j int) { tags[i], tags[j] = tags[j], tags[i] })
	requeued := 0
	work := make(chan uint64)
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for tag := range work {
				if tag%7 == 0 {
					if err := s.reject(tag, true); err != nil {
						t.Errorf("reject %d: %v", tag, err)
					}
					continue
				}
				if err := s.ack(tag); err != nil {
					t.Errorf("ack %d: %v", tag, err)
				}
			}
		})
	}
	for _, tag := range tags {
		if tag%7 == 0 {
			requeued++
		}
		if tag != held {
			work <- tag
		}
	}
	close(work)
	wg.Wait()
	s.flush()
	// Everything but the held message is settled; once the timer would
	// have fired, RabbitMQ has them all.
	wantReady := requeued
	if held%7 == 0 {
		wantReady--
	}
	waitReady(t, conn, q.Name, wantReady)

	// The held one last: the whole window is settled.
	if held%7 == 0 {
		err = s.reject(held, true)
		wantReady++
	} else {
		err = s.ack(held)
	}
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(10 * ackDelay) // the timer flushes a lone ack
	waitReady(t, conn, q.Name, wantReady)
	select {
	case err := <-closed:
		t.Fatalf("channel closed by RabbitMQ: %v", err)
	default:
	}
	s.mu.Lock()
	if len(s.waiting) != 0 || len(s.written) != 0 || s.next != uint64(n+1) {
		t.Errorf("settler after the window: waiting %v, written %v, next %d; want none, none, %d", s.waiting, s.written, s.next, n+1)
	}
	s.mu.Unlock()
	ch.Close()
}

// waitReady waits until queue has want messages ready.
func waitReady(t *testing.T, conn *amqp.Connection, queue string, want int) {
	t.Helper()
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	defer ch.Close()
	deadline := time.Now().Add(5 * time.Second)
	for {
		q, err := ch.QueueDeclarePassive(queue, false, false, true, false, nil)
		if err != nil {
			t.Fatal(err)
		}
		if q.Messages == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("queue has %d messages ready, want %d", q.Messages, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

type testLog struct{ t *testing.T }

func (w testLog) Write(p []byte) (int, error) {
	w.t.Log(string(p))
	return len(p), nil
}
