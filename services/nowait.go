package services

import (
	"errors"
	"os"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/superd/superd/internal/metrics"
	"github.com/superd/superd/services/admit"
	"github.com/superd/superd/services/proc"
	"github.com/superd/superd/services/socket"
)

// serveNowait is the accept loop of a handler-per-connection service. It
// returns when ep ends (a mode change, or Close).
func (l *Listener) serveNowait(ep *epoch) {
	ctx := ep.ctx
	// A connection's checks and start run in the loop itself: Go's
	// vfork blocks only until the child's exec, forks are serialized
	// process-wide anyway, and a goroutine per connection would cost
	// more than it saves (its stack grows on every fork). A start
	// through the confinement trampoline waits for the trampoline to
	// exec the handler, a whole Go program start: that one runs in a
	// goroutine of its own, bounded by the instances slots, and the
	// loop accepts the next client meanwhile. serveNowait waits for
	// those before it returns.
	var (
		wg    sync.WaitGroup
		delay time.Duration
		fails startFailures
	)
	defer wg.Wait()
	for l.adm.Acquire(ctx, ep.cur.Load().metrics) {
		// fork failing for want of processes or descriptors, or a handler
		// gone missing: slow down, as for accept errors.
		if d := fails.delay(); d > 0 && !sleep(ctx, d) {
			l.adm.Return()
			return
		}
		// While a client already accepted waits for descriptors to
		// start its handler, it goes first: another accept would only
		// take one more descriptor and make one more client wait.
		if !l.short.waitNoneWaiting(ctx) {
			l.adm.Return()
			return
		}
		fd, sa, err := l.sock.AcceptRaw()
		if err != nil {
			l.adm.Return()
			if l.acceptError(ep, err, &delay) {
				return
			}
			continue
		}
		delay = 0
		st := ep.cur.Load()
		st.metrics.Accepted()
		at := st.metrics.Now()
		if st.spec == nil || !st.spec.confined {
			fails.record(l.handle(ep, fd, sa, at))
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			fails.record(l.handle(ep, fd, sa, at))
		}()
	}
}

// startFailures is the back-off after handlers failed to start.
type startFailures struct {
	mu sync.Mutex
	d  time.Duration
}

func (f *startFailures) record(err error) {
	if errors.Is(err, errRefused) {
		return // no start was tried: says nothing of the handler
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if err == nil {
		f.d = 0
	} else {
		backoff(&f.d)
	}
}

func (f *startFailures) delay() time.Duration {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.d
}

// clientOf is the peer as admission sees it.
func clientOf(p *socket.Peer) admit.Client {
	switch p.Proto {
	case "UNIX":
		return admit.Client{Unix: true, Remote: p.String()}
	case "TCP":
		return admit.Client{Addr: p.Remote.Addr(), Remote: p.String()}
	}
	return admit.Client{Remote: p.String()} // unknown: refused
}

// handle runs the checks that need the peer's address and starts the
// handler, with the latest settings of its mode, ep. It owns fd and the
// slot taken by Acquire; accepted is when fd was accepted (Now of the
// service's metrics). It returns errRefused when the checks turned the
// client away, and another error when a handler could not be started.
// A start that fails for want of descriptors is tried again
// (startDeferred) until ep ends.
func (l *Listener) handle(ep *epoch, fd int, sa syscall.Sockaddr, accepted time.Time) error {
	st := ep.cur.Load()
	m := st.metrics
	p := l.sock.Describe(fd, sa)
	release, ok := l.adm.Check(st.svc, clientOf(p), st.log, m)
	if !ok {
		unix.Close(fd)
		return errRefused
	}
	conn := os.NewFile(uintptr(fd), "conn")
	defer conn.Close()
	remote := p.String()
	// exited is this connection's: the process table calls it when the
	// handler has been reaped, and only then are its slots free.
	exited := func(e proc.Exit) {
		release()
		countExit(m, e)
	}
	m.Starting()
	err := l.startDeferred(ep.ctx, st.log, func() error {
		_, err := l.rt.Procs.Start(st.spec.request(conn, p.Env(), st.log, remote, exited))
		return err
	})
	switch {
	case err == nil:
		m.Started(accepted)
	case errors.Is(err, proc.ErrReported):
		// Started and reaped as usual: the reaper releases.
		m.Refused(metrics.RefusedStartFailed)
	default:
		release()
		m.Abandoned()
		m.Refused(metrics.RefusedStartFailed)
		st.log.Error("start_failed", "remote", remote, "path", st.svc.Exec.Path, "err", err)
	}
	return err
}

// errRefused is handle's answer for a connection the access lists or
// per_source turned away: no start was tried.
var errRefused = errors.New("connection refused by the access lists or per_source")
