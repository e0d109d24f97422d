package minilm

import "sync"

// sharded is work split into equal shares; run does share number share of
// shares.
type sharded interface {
	run(share, shares int)
}

type poolJob struct {
	work          sharded
	share, shares int
	done          *sync.WaitGroup
}

// pool is a fixed set of helper goroutines that run shares of a forward
// pass, so a pass starts no goroutine and allocates nothing to fan out.
type pool struct {
	jobs chan poolJob // unbuffered: a send succeeds only when a helper is idle
	size int          // helpers + the calling goroutine
}

// newPool starts helpers goroutines that live as long as the process: the
// pool belongs to the process-wide model.
func newPool(helpers int) *pool {
	p := &pool{jobs: make(chan poolJob), size: helpers + 1}
	for range helpers {
		go func() {
			for j := range p.jobs {
				j.work.run(j.share, j.shares)
				j.done.Done()
			}
		}()
	}
	return p
}

// run runs every share of work and returns when all are done. A share that
// finds no idle helper (concurrent calls share the helpers) runs on the
// calling goroutine, so calls never wait for each other.
func (p *pool) run(work sharded, shares int, done *sync.WaitGroup) {
	shares = max(1, min(shares, p.size))
	for s := 1; s < shares; s++ {
		done.Add(1)
		select {
		case p.jobs <- poolJob{work: work, share: s, shares: shares, done: done}:
		default:
			work.run(s, shares)
			done.Done()
		}
	}
	work.run(0, shares)
	done.Wait()
}
