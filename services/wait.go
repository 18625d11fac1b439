package services

import (
	"context"
	"errors"
	"strings"
	"time"
)

// A wait-mode handler that exits without taking its datagram or
// connection leaves the socket readable, and a naive superserver starts
// it again at once, forever. superd compares what waits first on the
// socket before a start and after the handler's exit: unchanged means the
// start achieved nothing. Consecutive such starts back off exponentially,
// from firstLoopPause up to maxLoopPause, and a start that takes
// something ends the back-off. Where the socket cannot tell (stream
// sockets: an accept queue shows only its length), loopStarts starts
// within loopWindow pause the service for maxLoopPause.
const (
	firstLoopPause = 10 * time.Millisecond
	maxLoopPause   = 10 * time.Second
	loopLogAfter   = 4 // unproductive starts in a row before "looping" is logged
	loopStarts     = 40
	loopWindow     = 2 * time.Second
)

// serveWait hands the socket to one handler at a time.
func (s *Service) serveWait(ctx context.Context) error {
	var (
		before  string // the queue's head when the last handler started
		known   bool   // before means something
		started bool
		idle    int // unproductive starts in a row
	)
	for {
		if err := s.sock.acquire(ctx); err != nil {
			return nil
		}
		if started {
			after, ok := s.sock.queueHead()
			idle = s.progress(idle, known && ok && after == before)
		}
		if !s.pauseIfLooping(ctx, idle, known) || !s.waitTurn(ctx) {
			s.sock.release()
			return nil
		}
		before, known = s.sock.queueHead()
		started = true
		s.startWait(ctx)
	}
}

// progress counts unproductive starts and logs the end of a loop.
func (s *Service) progress(idle int, unproductive bool) int {
	if unproductive {
		return idle + 1
	}
	if idle >= loopLogAfter {
		s.log.Info("resumed", "after_unproductive_starts", idle)
	}
	return 0
}

// pauseIfLooping sleeps the back-off that idle unproductive starts call
// for (or the window guard's pause when the socket's queue cannot be
// seen). It returns false when ctx ended the pause.
func (s *Service) pauseIfLooping(ctx context.Context, idle int, known bool) bool {
	var pause time.Duration
	switch {
	case !known && s.loops.record(time.Now()):
		pause = maxLoopPause
	case idle > 0:
		pause = min(firstLoopPause<<min(idle-1, 20), maxLoopPause)
	}
	if pause == 0 {
		return true
	}
	if !known || idle == loopLogAfter || idle%10 == 0 {
		s.log.Warn("looping", "unproductive_starts", idle, "pause", pause)
	}
	return sleep(ctx, pause)
}

// waitTurn waits until the socket has something for a handler and the
// service may start one. It returns false when ctx is done or the socket
// was closed.
func (s *Service) waitTurn(ctx context.Context) bool {
	// The last handler may have left the shared socket blocking, which
	// would stall superd's readiness check; put it back.
	if err := s.sock.setNonblock(); err != nil {
		s.log.Error("nonblock_failed", "err", err)
	}
	var delay time.Duration
	for {
		err := s.sock.waitReadable()
		if err == nil {
			break
		}
		if s.acceptError(ctx, err, &delay) {
			return false
		}
	}
	return s.adm.token(ctx)
}

// startWait starts a handler on the socket itself. The socket's busy
// token passes to the handler and returns when it has been reaped. Out
// of descriptors, it waits for some (startDeferred) until ctx is done.
func (s *Service) startWait(ctx context.Context) {
	sp := s.spec.Load()
	env := []string{"PROTO=" + protoOf(s.sock.key.Network)}
	err := s.startDeferred(ctx, func() error {
		f, err := s.sock.dupBlocking()
		if err != nil {
			return err
		}
		defer f.Close()
		_, err = s.rt.Procs.start(sp.request(f, env, s.log, "", s.sock.release))
		return err
	})
	if err != nil && !errors.Is(err, errReported) {
		s.sock.release()
		s.log.Error("start_failed", "path", sp.svc.Exec.Path, "err", err)
	}
}

// protoOf is the PROTO value for a socket's network.
func protoOf(network string) string {
	switch {
	case strings.HasPrefix(network, "tcp"):
		return "TCP"
	case strings.HasPrefix(network, "udp"):
		return "UDP"
	}
	return "UNIX"
}

// loopGuard remembers recent starts of a wait-mode service. Only the
// service's Serve goroutine uses it.
type loopGuard struct {
	starts []time.Time
}

// record notes a start at now and reports whether the service loops.
func (g *loopGuard) record(now time.Time) bool {
	keep := g.starts[:0]
	for _, t := range g.starts {
		if now.Sub(t) < loopWindow {
			keep = append(keep, t)
		}
	}
	g.starts = append(keep, now)
	if len(g.starts) >= loopStarts {
		g.starts = g.starts[:0]
		return true
	}
	return false
}

// sleep waits for d or until ctx is done; it reports whether d passed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
