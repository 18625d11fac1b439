package services

import (
	"errors"
	"os"
	"sync"
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
		p := l.sock.Describe(fd, sa)
		if px := st.svc.Proxy; px.Enabled {
			if !px.Trusted(p.Remote.Addr()) {
				l.refuseProxy(st, fd, p, errNotProxy)
				continue
			}
			// A header may take up to proxy_timeout: it is read in a
			// goroutine of its own, bounded by the instances slot it
			// holds, so that a slow proxy never holds up the loop.
			wg.Add(1)
			go func() {
				defer wg.Done()
				fails.record(l.handleProxied(ep, fd, p, at))
			}()
			continue
		}
		if st.spec == nil || !st.spec.confined {
			fails.record(l.handle(ep, fd, p, at))
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			fails.record(l.handle(ep, fd, p, at))
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
func (l *Listener) handle(ep *epoch, fd int, p *socket.Peer, accepted time.Time) error {
	st := ep.cur.Load()
	m := st.metrics
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
	err := l.startDeferred(ep.conns, st.log, func() error {
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

// handleProxied reads the PROXY header of fd, a connection from p, a
// load balancer in proxy_from, and then handles it as a connection from
// the client the header names. A header that is missing, malformed,
// truncated or later than proxy_timeout closes fd (errRefused).
func (l *Listener) handleProxied(ep *epoch, fd int, p *socket.Peer, accepted time.Time) error {
	timeout := ep.cur.Load().svc.Proxy.Timeout
	h, err := socket.ReadProxyHeader(ep.conns, fd, time.Now().Add(timeout))
	if err != nil {
		l.refuseProxy(ep.cur.Load(), fd, p, err)
		return errRefused
	}
	return l.handle(ep, fd, p.Behind(h), accepted)
}

// refuseProxy closes fd, a connection of a proxy_protocol service that
// gave no usable header, or came from outside proxy_from (why), and
// logs it with the other refusals (reason proxy).
func (l *Listener) refuseProxy(st *settings, fd int, p *socket.Peer, why error) {
	unix.Close(fd)
	l.adm.Refuse("proxy", p.String(), metrics.RefusedProxy, st.log, st.metrics)
	st.log.Debug("proxy_refused", "remote", p.String(), "err", why)
}

// errNotProxy is why a connection from outside proxy_from is refused.
var errNotProxy = errors.New("the peer is not in proxy_from, so its PROXY header would not be trusted")

// errRefused is handle's answer for a connection the access lists or
// per_source turned away: no start was tried.
var errRefused = errors.New("connection refused by the access lists or per_source")
