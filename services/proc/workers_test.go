package proc

import (
	"runtime"
	"sync"
	"testing"
)

// TestWorkersReuse runs jobs one after another: the worker that ran the
// first runs them all, and stop ends it.
func TestWorkersReuse(t *testing.T) {
	var w workers
	const jobs = 100
	ran := 0
	for range jobs {
		done := make(chan struct{})
		w.run(func() { ran++; close(done) })
		<-done
		// The worker parks itself after the job: wait for that, so that
		// the next run finds it idle.
		waitWorkers(t, &w, 1, 1)
	}
	if ran != jobs {
		t.Errorf("%d of %d jobs ran", ran, jobs)
	}
	w.stop()
	waitWorkers(t, &w, 0, 0)
}

// TestWorkersConcurrent runs more jobs at once than maxIdleWorkers
// keeps: each runs on a worker of its own, maxIdleWorkers of them stay
// afterwards, and stop ends those; a job run after stop still runs.
func TestWorkersConcurrent(t *testing.T) {
	var w workers
	const jobs = 3 * maxIdleWorkers
	var started, ran sync.WaitGroup
	started.Add(jobs)
	ran.Add(jobs)
	release := make(chan struct{})
	for range jobs {
		w.run(func() {
			started.Done()
			<-release
			ran.Done()
		})
	}
	started.Wait() // all at once: each has a worker of its own
	waitWorkers(t, &w, jobs, 0)
	close(release)
	ran.Wait()
	waitWorkers(t, &w, maxIdleWorkers, maxIdleWorkers)
	w.stop()
	waitWorkers(t, &w, 0, 0)
	done := make(chan struct{})
	w.run(func() { close(done) })
	<-done
	waitWorkers(t, &w, 0, 0)
}

// waitWorkers waits until w has live workers, idle of them idle.
func waitWorkers(t *testing.T, w *workers, live, idle int) {
	t.Helper()
	for i := 0; ; i++ {
		w.mu.Lock()
		gotLive, gotIdle := w.live, len(w.idle)
		w.mu.Unlock()
		if gotLive == live && gotIdle == idle {
			return
		}
		if i == 10_000_000 {
			t.Fatalf("%d workers, %d idle; want %d, %d idle", gotLive, gotIdle, live, idle)
		}
		runtime.Gosched()
	}
}
