package services

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"syscall"
	"time"
)

// Out of descriptors (superd's RLIMIT_NOFILE, or the system's table), a
// service defers clients, as it does over its instances limit: it stops
// accepting, so that new clients wait in the backlog, and a client it
// had already accepted when a step of its start (a pipe, /dev/null, the
// fork) ran out keeps its connection while the start is tried again. It
// resumes when superd closes descriptors of a handler (Procs.released),
// or after a back-off, since descriptors also free up elsewhere. The
// shortage is logged once (descriptors_exhausted) until a start
// succeeds again.

// descriptorsExhausted reports whether err means that superd is out of
// file descriptors: its own limit (EMFILE) or the system's (ENFILE).
func descriptorsExhausted(err error) bool {
	return errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE)
}

// shortage is a Service's state while descriptors are short. Its zero
// value is a service that has plenty.
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
func (s *Service) awaitDescriptors(ctx context.Context, released <-chan struct{}, delay *time.Duration) bool {
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
// attempts; meanwhile the service accepts nobody. When ctx ends the
// wait, it returns the last error.
func (s *Service) startDeferred(ctx context.Context, start func() error) error {
	var (
		delay   time.Duration
		waiting bool
	)
	defer func() {
		if waiting {
			s.short.leave()
		}
	}()
	for {
		released := s.rt.Procs.released()
		err := start()
		if !descriptorsExhausted(err) {
			if err == nil {
				s.short.over()
			}
			return err
		}
		if !waiting {
			waiting = true
			s.short.enter()
		}
		s.short.note(s.log, err)
		if !s.awaitDescriptors(ctx, released, &delay) {
			return err
		}
	}
}
