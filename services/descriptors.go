package services

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/superd/superd/services/proc"
)

// Out of descriptors (superd's RLIMIT_NOFILE, or the system's table), a
// service defers clients, as it does over its instances limit: it stops
// accepting, so that new clients wait in the backlog, and a client it
// had already accepted when a step of its start (a pipe, /dev/null, the
// fork) ran out keeps its connection while the start is tried again. It
// resumes when superd closes descriptors of a handler (proc.Table.Released),
// or after a back-off, since descriptors also free up elsewhere. The
// shortage is logged once (descriptors_exhausted) until a start
// succeeds again.

// descriptorsExhausted reports whether err means that superd is out of
// file descriptors: its own limit (EMFILE) or the system's (ENFILE).
func descriptorsExhausted(err error) bool { return proc.DescriptorsExhausted(err) }

// shortage is a Listener's state while descriptors are short. Its zero
// value is a Listener that has plenty.
type shortage struct {
	mu      sync.Mutex
	waiting int           // accepted clients whose start waits for descriptors
	none    chan struct{} // closed when waiting drops to 0; nil while it is 0
	logged  bool          // this shortage has been logged
}

// note logs the shortage, once until over is called.
func (sh *shortage) note(log *slog.Logger, err error) {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if sh.logged {
		return
	}
	sh.logged = true
	log.Error("descriptors_exhausted", "err", err)
}

// over ends the shortage: a start succeeded.
func (sh *shortage) over() {
	sh.mu.Lock()
	sh.logged = false
	sh.mu.Unlock()
}

// enter counts one more accepted client waiting for descriptors; leave
// counts it out.
func (sh *shortage) enter() {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if sh.waiting++; sh.none == nil {
		sh.none = make(chan struct{})
	}
}

func (sh *shortage) leave() {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if sh.waiting--; sh.waiting == 0 {
		close(sh.none)
		sh.none = nil
	}
}

// waitNoneWaiting waits until no accepted client waits for descriptors.
// It returns false when ctx is done first.
func (sh *shortage) waitNoneWaiting(ctx context.Context) bool {
	sh.mu.Lock()
	none := sh.none
	sh.mu.Unlock()
	if none == nil {
		return true
	}
	select {
	case <-none:
		return true
	case <-ctx.Done():
		return false
	}
}

// awaitDescriptors waits until superd closes descriptors of a handler
// (released, taken before the attempt that failed) or for the next step
// of the back-off in *delay. It returns false when ctx is done first.
func awaitDescriptors(ctx context.Context, released <-chan struct{}, delay *time.Duration) bool {
	t := time.NewTimer(backoff(delay))
	defer t.Stop()
	select {
	case <-released:
		return true
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// startDeferred calls start until it succeeds or fails for another
// reason than a want of descriptors, waiting for descriptors between
// attempts; meanwhile the Listener accepts nobody. The shortage is
// logged to log. When ctx ends the wait, it returns the last error.
func (l *Listener) startDeferred(ctx context.Context, log *slog.Logger, start func() error) error {
	var (
		delay   time.Duration
		waiting bool
	)
	defer func() {
		if waiting {
			l.short.leave()
		}
	}()
	for {
		released := l.rt.Procs.Released()
		err := start()
		if !descriptorsExhausted(err) {
			if err == nil {
				l.short.over()
			}
			return err
		}
		if !waiting {
			waiting = true
			l.short.enter()
		}
		l.short.note(log, err)
		if !awaitDescriptors(ctx, released, &delay) {
			return err
		}
	}
}
