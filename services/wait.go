package services

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"time"

	"github.com/superd/superd/internal/metrics"
	"github.com/superd/superd/services/proc"
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

// serveWait hands the socket to one handler at a time: it waits until
// the socket is readable, starts the handler on the socket itself, and
// waits for the handler's exit before it watches the socket again (the
// socket is the handler's meanwhile). It returns when ep ends (a mode
// change, or Close); owner is then the exit of the handler that still
// holds the socket, nil when none does.
func (l *Listener) serveWait(ep *epoch) (owner <-chan struct{}) {
	ctx := ep.ctx
	var (
		guard   waitGuard
		before  string // the queue's head when the last handler started
		known   bool   // before means something
		started bool
	)
	for {
		if started {
			after, ok := l.sock.QueueHead()
			guard.progress(ep.cur.Load().log, known && ok && after == before)
		}
		if !guard.pause(ctx, ep.cur.Load().log, known, time.Now()) || !l.waitTurn(ep) {
			return nil
		}
		before, known = l.sock.QueueHead()
		started = true
		exited := l.startWait(ep)
		if exited == nil {
			continue // not started: the socket is superd's again
		}
		l.waitHandler.Store(&waitExit{exited})
		select {
		case <-exited:
		case <-ctx.Done():
			return exited
		}
	}
}

// waitGuard is the loop guard's state of one wait-mode loop: the
// unproductive starts in a row, and the recent starts for sockets whose
// queue cannot be seen. Only the serve goroutine uses it.
type waitGuard struct {
	idle  int // unproductive starts in a row
	loops loopGuard
}

// progress counts a start that took nothing (unproductive), or logs the
// end of a loop.
func (g *waitGuard) progress(log *slog.Logger, unproductive bool) {
	if unproductive {
		g.idle++
		return
	}
	if g.idle >= loopLogAfter {
		log.Info("resumed", "after_unproductive_starts", g.idle)
	}
	g.idle = 0
}

// pause sleeps the back-off that the unproductive starts in a row call
// for, or, when the socket's queue cannot be seen (known false), the
// window guard's pause for a start at now. It returns false when ctx
// ended the pause.
func (g *waitGuard) pause(ctx context.Context, log *slog.Logger, known bool, now time.Time) bool {
	var pause time.Duration
	switch {
	case !known && g.loops.record(now):
		pause = maxLoopPause
	case g.idle > 0:
		pause = min(firstLoopPause<<min(g.idle-1, 20), maxLoopPause)
	}
	if pause == 0 {
		return true
	}
	if !known || g.idle == loopLogAfter || g.idle%10 == 0 {
		log.Warn("looping", "unproductive_starts", g.idle, "pause", pause)
	}
	return sleep(ctx, pause)
}

// waitTurn waits until the socket has something for a handler and the
// service may start one. It returns false when ep ends.
func (l *Listener) waitTurn(ep *epoch) bool {
	ctx := ep.ctx
	// The last handler may have left the shared socket blocking, which
	// would stall superd's readiness check; put it back.
	if err := l.sock.SetNonblock(); err != nil && ctx.Err() == nil {
		ep.cur.Load().log.Error("nonblock_failed", "err", err)
	}
	var delay time.Duration
	for {
		err := l.sock.WaitReadable()
		if err == nil {
			break
		}
		if l.acceptError(ep, err, &delay) {
			return false
		}
	}
	return l.adm.Token(ctx, ep.cur.Load().metrics)
}

// startWait starts a handler on the socket itself, with the latest
// settings of ep. It returns a channel that the handler's reaper closes
// once the handler has exited, or nil when no handler started (logged).
// Out of descriptors, it waits for some (startDeferred) until ep ends.
// The metrics time the start from the call (the socket is readable by
// then): superd never sees the client it is for.
func (l *Listener) startWait(ep *epoch) <-chan struct{} {
	st := ep.cur.Load()
	m := st.metrics
	at := m.Now()
	env := []string{"PROTO=" + protoOf(l.key.Network)}
	exited := make(chan struct{})
	m.Starting()
	err := l.startDeferred(ep.ctx, st.log, func() error {
		f, err := l.sock.DupBlocking()
		if err != nil {
			return err
		}
		defer f.Close()
		_, err = l.rt.Procs.Start(st.spec.request(f, env, st.log, "", func(e proc.Exit) {
			countExit(m, e)
			close(exited)
		}))
		return err
	})
	switch {
	case err == nil:
		m.Started(at)
	case errors.Is(err, proc.ErrReported):
		m.Refused(metrics.RefusedStartFailed)
	default:
		m.Abandoned()
		m.Refused(metrics.RefusedStartFailed)
		st.log.Error("start_failed", "path", st.svc.Exec.Path, "err", err)
		return nil
	}
	return exited
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

// loopGuard remembers recent starts of a wait-mode service whose
// socket's queue cannot be seen.
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
