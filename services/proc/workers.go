package proc

import "sync"

// maxIdleWorkers bounds the goroutines a Table keeps parked for the next
// handlers: enough for a burst of short connections, few enough that
// their stacks (8–16 KiB each once grown) stay small beside superd's RSS.
const maxIdleWorkers = 64

// workers runs the Table's jobs (the exit lines of a batch of exits, the
// reapers of handlers the exit poller does not take, the stderr loggers)
// on goroutines that are kept for the next job rather than ended. A new goroutine starts with a 2 KiB stack and grows it, by
// copying, to the 8–16 KiB that a wait in the poller and a log line
// take: on the hot path that copying cost more than the goroutine itself
// (runtime.morestack and copystack, 5 % of superd's CPU per connection).
// A parked worker keeps its grown stack.
//
// Goroutines: every worker is owned by the workers value; a worker ends
// when it finds maxIdleWorkers others idle after its job, or when stop
// closes its channel. stop ends the idle ones; a busy one ends after its
// job.
type workers struct {
	mu      sync.Mutex
	idle    []chan func()
	live    int // workers running, idle or busy
	stopped bool
}

// run runs job on an idle worker, or on a new one.
func (w *workers) run(job func()) {
	w.mu.Lock()
	if n := len(w.idle); n > 0 {
		c := w.idle[n-1]
		w.idle = w.idle[:n-1]
		w.mu.Unlock()
		c <- job // buffered: never blocks
		return
	}
	w.live++
	w.mu.Unlock()
	go w.work(job, make(chan func(), 1))
}

// work runs job and then the jobs sent on c, until stop or until enough
// other workers are idle.
func (w *workers) work(job func(), c chan func()) {
	for job != nil {
		job()
		job = nil // not kept alive while idle
		w.mu.Lock()
		if w.stopped || len(w.idle) >= maxIdleWorkers {
			w.live--
			w.mu.Unlock()
			return
		}
		w.idle = append(w.idle, c)
		w.mu.Unlock()
		job = <-c
	}
}

// stop ends the idle workers, and every busy one once its job is done.
func (w *workers) stop() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.stopped = true
	for _, c := range w.idle {
		close(c)
	}
	w.live -= len(w.idle)
	w.idle = nil
}
