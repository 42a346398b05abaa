package worker

import (
	"errors"
	"sync"
)

// pool runs requests on a number of goroutines that can change while the
// worker runs (the pool_grow and pool_shrink control commands): a larger
// pool starts goroutines at once; a smaller one stops goroutines as they
// become free, never one in the middle of a task.
type pool struct {
	work <-chan *request
	run  func(*request)
	wg   sync.WaitGroup

	mu   sync.Mutex
	size int
	// stop holds one token per goroutine still to stop; a free goroutine
	// takes one and returns.
	stop chan struct{}
}

// maxPoolSize bounds the pool: it is also the room for stop tokens.
const maxPoolSize = 10000

func newPool(work <-chan *request, run func(*request), size int) *pool {
	p := &pool{work: work, run: run, stop: make(chan struct{}, maxPoolSize)}
	p.grow(size)
	return p
}

// grow starts n more goroutines.
func (p *pool) grow(n int) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if n < 0 || p.size+n > maxPoolSize {
		return errors.New("pool size out of range")
	}
	p.size += n
	for range n {
		p.wg.Add(1)
		go p.loop()
	}
	return nil
}

// shrink stops n goroutines as they become free. At least one stays, so
// that the worker goes on taking tasks.
func (p *pool) shrink(n int) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if n < 0 || p.size-n < 1 {
		return errors.New("can't shrink the pool below one")
	}
	p.size -= n
	for range n {
		p.stop <- struct{}{}
	}
	return nil
}

// len is the number of goroutines the pool is meant to have.
func (p *pool) len() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.size
}

func (p *pool) loop() {
	defer p.wg.Done()
	for {
		select {
		case <-p.stop:
			return
		case r, ok := <-p.work:
			if !ok {
				return
			}
			p.run(r)
		}
	}
}

// wait returns once every goroutine has returned (after work is closed).
func (p *pool) wait() { p.wg.Wait() }
