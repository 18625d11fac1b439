package services

import (
	"context"
	"strings"
	"time"
)

// A wait-mode handler that exits without taking its datagram or
// connection leaves the socket readable, and a naive superserver starts
// it again at once, forever. loopStarts starts within loopWindow mark
// such a loop; the service then pauses for loopPause and resumes on its
// own.
const (
	loopStarts = 40
	loopWindow = 2 * time.Second
	loopPause  = 10 * time.Second
)

// serveWait hands the socket to one handler at a time.
func (s *Service) serveWait(ctx context.Context) error {
	for {
		if err := s.sock.acquire(ctx); err != nil {
			return nil
		}
		if !s.waitTurn(ctx) {
			s.sock.release()
			return nil
		}
		s.startWait()
	}
}

// waitTurn waits until the socket has something for a handler and the
// service may start one. It returns false when ctx is done or the socket
// was closed.
func (s *Service) waitTurn(ctx context.Context) bool {
	// The last handler may have left the shared socket blocking, which
	// would stall superd's readiness check; put it back.
	if err := s.sock.setNonblock(); err != nil {
		s.log.Error("cannot make socket non-blocking", "err", err)
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
	if s.loops.record(time.Now()) {
		s.log.Warn("looping", "starts", loopStarts, "within", loopWindow, "pause", loopPause)
		if !sleep(ctx, loopPause) {
			return false
		}
	}
	return s.adm.limiter.Load().Wait(ctx) == nil
}

// startWait starts a handler on the socket itself. The socket's busy
// token passes to the handler and returns when it has been reaped.
func (s *Service) startWait() {
	sp := s.spec.Load()
	f, err := s.sock.dupBlocking()
	if err != nil {
		s.sock.release()
		s.log.Error("cannot start handler", "err", err)
		return
	}
	defer f.Close()
	env := []string{"PROTO=" + protoOf(s.sock.key.Network)}
	_, err = s.rt.Procs.start(sp.request(f, env, s.log, "", s.sock.release))
	if err != nil {
		s.sock.release()
		s.log.Error("cannot start handler", "path", sp.svc.Exec.Path, "err", err)
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
