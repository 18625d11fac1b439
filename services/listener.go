// Package services serves superd's sockets: one Listener per listen
// identity (config.ListenKey) owns its socket, the admission state of
// the service on it, and the one goroutine that serves it in one of four
// modes: a handler process per connection (nowait), the socket itself
// handed to one handler at a time (wait), or an in-process built-in per
// connection or per datagram. Update swaps a Listener's settings, its
// name and mode included, while it keeps its socket and backlog.
//
// The package deliberately does not decide which services run, read
// configuration files or handle signals: the supervisor makes a Listener
// per identity from a validated config.Service, updates it on reload and
// closes it. It does not run processes itself either: the Runtime's
// process table (package proc) starts, reaps and logs every handler, and
// goes on doing so after the Listener that started it closed. Package
// admit decides who is taken; package builtin answers the built-ins.
package services

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/superd/superd/config"
	"github.com/superd/superd/internal/metrics"
	"github.com/superd/superd/services/admit"
	"github.com/superd/superd/services/builtin"
	"github.com/superd/superd/services/socket"
)

// Mode is the way a Listener serves its socket.
type Mode int

// The modes of a service.
const (
	ModeNowait        Mode = iota // a handler per accepted connection
	ModeWait                      // the handler gets the socket itself
	ModeBuiltinStream             // an in-process built-in per connection
	ModeBuiltinPacket             // an in-process built-in answering datagrams
)

// String names the mode as superd check and the metrics do: nowait,
// wait or builtin.
func (m Mode) String() string {
	switch m {
	case ModeNowait:
		return "nowait"
	case ModeWait:
		return "wait"
	case ModeBuiltinStream, ModeBuiltinPacket:
		return "builtin"
	}
	return "unknown"
}

// ModeOf returns the mode svc runs in.
func ModeOf(svc *config.Service) Mode {
	switch {
	case svc.Builtin != "" && svc.Listen.Stream():
		return ModeBuiltinStream
	case svc.Builtin != "":
		return ModeBuiltinPacket
	case svc.Wait:
		return ModeWait
	}
	return ModeNowait
}

// Listener serves one listen identity.
//
// Ownership: the Listener owns its socket (bound by Listen, closed by
// Close), its admission state, and its serve goroutine, which Listen
// starts and Close stops and waits for. Connections it accepted and
// built-in connections are the serve goroutine's until a handler starts
// on them; handler processes are the process table's. Update and Close
// may be called from any goroutine; the supervisor calls them from one.
type Listener struct {
	key  config.ListenKey
	sock *socket.Socket
	rt   *Runtime
	base *slog.Logger // the supervisor's; settings add the service
	adm  *admit.Admission
	// bufs holds the read buffers (*[builtin.StreamBufferSize]byte) of
	// stream built-ins' connections: echo and discard allocate none of
	// their own per connection.
	bufs sync.Pool
	// packetBufs holds the datagram buffers
	// (*[builtin.PacketBufSize]byte) of a datagram built-in.
	packetBufs sync.Pool
	// short is the serve goroutine's state while descriptors are short
	// (see descriptors.go); nowait's connection goroutines share it.
	short shortage

	// cur is the settings new connections get; Update swaps it.
	cur atomic.Pointer[settings]

	// switchMu makes an Update's mode switch (store the settings, end the
	// old epoch, interrupt the socket) one step against the serve
	// goroutine's (clear the interrupt, load the settings): the socket's
	// deadline is set only while the epoch the serve goroutine last
	// loaded is over, so the interrupt always means "your mode ended".
	switchMu sync.Mutex

	// running is the epoch whose loop the serve goroutine runs (or is
	// about to run, or waits to run); nil once the goroutine has ended.
	// runChanged is closed and replaced whenever running changes. An
	// Update that changes the mode waits until running is no longer the
	// old epoch: once Update returns, the old mode takes no client.
	runMu      sync.Mutex
	running    *epoch
	runChanged chan struct{}

	mu     sync.Mutex // serializes Update, Drain and Close
	closed bool       // Close or Drain has been called; guarded by mu
	// drained is set by Drain, before it ends the loop: the serve
	// goroutine then returns once the loop's connections are done.
	drained atomic.Bool
	// drainC is closed by Drain: it ends the wait for Runtime.Gate.
	drainC   chan struct{}
	closeErr error
	stop     context.CancelFunc // ends every epoch: Close
	root     context.Context
	done     chan struct{} // closed when the serve goroutine has returned

	// handoff is set while the serve goroutine waits for a wait-mode
	// handler to give the socket back before another mode takes it; for
	// tests, which must tell that wait from a loop that never looked.
	handoff atomic.Bool
	// waitHandler is the exit of the last wait-mode handler started.
	waitHandler atomic.Pointer[waitExit]
}

// waitExit is closed when a wait-mode handler has exited.
type waitExit struct{ exited <-chan struct{} }

// settings are one generation of a Listener's configuration, immutable
// once stored.
type settings struct {
	svc  *config.Service
	spec *spec
	log  *slog.Logger // the base logger with the service attribute
	// metrics counts the service's events, on series named after it: a
	// reload that keeps the name keeps the counts, one that renames the
	// service counts on the new name's. nil when metrics are off.
	metrics *metrics.Service
	epoch   *epoch
	// packet answers the datagrams of a datagram built-in; nil otherwise.
	packet *builtin.Packet
}

// epoch is a stretch of a Listener's life in one mode. Its context ends
// when an Update changes the mode, or at Close; the mode's loop returns
// then. Settings of the same mode share their epoch.
type epoch struct {
	mode Mode
	// ctx is the loop's: it ends with conns, or alone when the Listener
	// is drained (see Drain).
	ctx context.Context
	// conns is the work on the connections the loop took (PROXY header
	// reads, starts that wait for descriptors, built-in connections): it
	// ends at a mode change and at Close, not when the Listener drains.
	conns    context.Context
	cancel   context.CancelFunc // ends conns, and ctx with it
	stopLoop context.CancelFunc // ends ctx alone
	// cur is the latest settings of this mode: what the mode's loop
	// serves with. A connection the loop accepted just as the mode
	// ended is served by its own mode, not by the next one's settings.
	cur atomic.Pointer[settings]
}

// builtinReplyRate bounds the answers a datagram built-in sends per
// second when the service sets no rate, so that superd cannot be used to
// amplify a spoofed flood.
const builtinReplyRate = 100

// newSettings works out the settings of svc, without their epoch.
func newSettings(svc *config.Service, rt *Runtime, base *slog.Logger) (*settings, error) {
	st := &settings{svc: svc, spec: newSpec(svc, rt), log: base.With("service", svc.Name), metrics: rt.Metrics.For(svc.Name)}
	if ModeOf(svc) == ModeBuiltinPacket {
		p, err := builtin.NewPacket(svc.Builtin, replyLimiter(svc.Limits.Rate))
		if err != nil {
			return nil, err
		}
		st.packet = p
	}
	return st, nil
}

// Listen binds svc's socket and starts serving it; Close ends that. Its
// error is the bind's, as the system gave it (address in use, say).
func Listen(svc *config.Service, rt *Runtime, log *slog.Logger) (*Listener, error) {
	st, err := newSettings(svc, rt, log)
	if err != nil {
		return nil, err
	}
	sock, err := socket.BindWith(svc.Listen, svc.Backlog, svc.SocketMode, socket.Options{ReusePort: svc.ReusePort})
	if err != nil {
		return nil, err
	}
	if err := sock.Chown(svc.SocketOwner.ChownArgs()); err != nil {
		sock.Close()
		return nil, err
	}
	return start(svc, st, sock, rt, log), nil
}

// ListenOn serves svc on sock, a socket adopted rather than bound (one
// systemd passed, see socket.FromFile), as Listen serves the socket it
// binds: the Listener owns sock from now on, Close closes it, and so
// does ListenOn when it fails. sock must have svc's identity.
func ListenOn(svc *config.Service, sock *socket.Socket, rt *Runtime, log *slog.Logger) (*Listener, error) {
	if sock.Key() != svc.Listen {
		sock.Close()
		return nil, fmt.Errorf("serve %s on the socket of %s: a Listener keeps its identity", svc.Listen, sock.Key())
	}
	st, err := newSettings(svc, rt, log)
	if err == nil {
		err = sock.Chown(svc.SocketOwner.ChownArgs())
	}
	if err != nil {
		sock.Close()
		return nil, err
	}
	return start(svc, st, sock, rt, log), nil
}

// start makes the Listener of svc on sock and starts its serve goroutine.
func start(svc *config.Service, st *settings, sock *socket.Socket, rt *Runtime, log *slog.Logger) *Listener {
	l := &Listener{key: svc.Listen, sock: sock, rt: rt, base: log, adm: admit.New(),
		done: make(chan struct{}), runChanged: make(chan struct{}), drainC: make(chan struct{})}
	l.bufs.New = func() any { return new([builtin.StreamBufferSize]byte) }
	l.packetBufs.New = func() any { return new([builtin.PacketBufSize]byte) }
	l.root, l.stop = context.WithCancel(context.Background())
	st.epoch = l.newEpoch(ModeOf(svc))
	st.epoch.cur.Store(st)
	l.cur.Store(st)
	l.adm.Configure(svc.Limits.Instances, svc.Limits.Rate)
	if ModeOf(svc) == ModeBuiltinStream {
		// The built-in accepts through a net.Listener, which the socket
		// makes on demand (a descriptor of its own): made here, before
		// the service counts as listening, so that superd's descriptors
		// are all open by READY rather than whenever the serve goroutine
		// first runs.
		sock.Listener()
	}
	go l.serve()
	return l
}

func (l *Listener) newEpoch(m Mode) *epoch {
	conns, cancel := context.WithCancel(l.root)
	ctx, stopLoop := context.WithCancel(conns)
	return &epoch{mode: m, ctx: ctx, conns: conns, cancel: cancel, stopLoop: stopLoop}
}

// Key returns the listen identity.
func (l *Listener) Key() config.ListenKey { return l.key }

// Addr returns the bound local address (useful when the port was 0).
func (l *Listener) Addr() net.Addr { return l.sock.Addr() }

// Service returns the settings in force: the last Update's, or Listen's.
func (l *Listener) Service() *config.Service { return l.cur.Load().svc }

// Name returns the name of the service in force.
func (l *Listener) Name() string { return l.Service().Name }

// Mode returns the mode in force.
func (l *Listener) Mode() Mode { return l.cur.Load().epoch.mode }

// Running returns the number of handlers (or built-in connections) that
// hold an instance slot now. Wait-mode handlers hold none.
func (l *Listener) Running() int { return l.adm.Running() }

// Update makes svc the settings of every connection from now on;
// handlers and built-in connections already running keep theirs. svc
// must have the Listener's identity. The name, the handler, the limits
// (instances and rate apply to a client waiting at once) and the mode
// may all change: a mode change ends the old mode's loop and starts the
// new one on the same socket. The backlog and a unix socket's mode are
// applied first; when that fails, Update returns the error and the
// settings stay as they were. A mode change returns once the old mode's
// loop has ended (built-in connections closed with it), so that the next
// client gets the new mode; it does not wait for a wait-mode handler
// that still holds the socket.
func (l *Listener) Update(svc *config.Service) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return fmt.Errorf("update %s: %w", l.key, net.ErrClosed)
	}
	if svc.Listen != l.key {
		return fmt.Errorf("update %s with the settings of %s: a Listener keeps its identity", l.key, svc.Listen)
	}
	st, err := newSettings(svc, l.rt, l.base)
	if err != nil {
		return err
	}
	if err := l.sock.Reconfigure(svc.Backlog, svc.SocketMode); err != nil {
		return err
	}
	if err := l.sock.Chown(svc.SocketOwner.ChownArgs()); err != nil {
		return err
	}
	if ModeOf(svc) == ModeBuiltinStream {
		l.sock.Listener() // before the update returns: see start
	}
	l.switchMu.Lock()
	old := l.cur.Load()
	st.epoch = old.epoch
	switched := ModeOf(svc) != old.epoch.mode
	if switched {
		st.epoch = l.newEpoch(ModeOf(svc))
		// The old epoch ends before the deadline is set, and both
		// under switchMu: see serve.
		old.epoch.cancel()
		l.sock.Interrupt()
	}
	st.epoch.cur.Store(st)
	l.cur.Store(st)
	l.switchMu.Unlock()
	l.adm.Configure(svc.Limits.Instances, svc.Limits.Rate)
	if switched {
		l.awaitLeft(old.epoch)
	}
	return nil
}

// setRunning records the epoch the serve goroutine runs.
func (l *Listener) setRunning(ep *epoch) {
	l.runMu.Lock()
	defer l.runMu.Unlock()
	l.running = ep
	close(l.runChanged)
	l.runChanged = make(chan struct{})
}

// awaitLeft waits until the serve goroutine no longer runs ep's loop.
func (l *Listener) awaitLeft(ep *epoch) {
	for {
		l.runMu.Lock()
		running, changed := l.running, l.runChanged
		l.runMu.Unlock()
		if running != ep {
			return
		}
		<-changed
	}
}

// Close stops the serve goroutine and waits for it, closes the socket
// (built-in connections with it), and logs the refusals still held back.
// Handlers already running keep running: the process table reaps and
// logs them. Calling Close again returns the first call's result. Close
// after Drain ends the built-in connections still open.
func (l *Listener) Close() error {
	l.mu.Lock()
	if !l.closed || !l.stopped() {
		l.closed = true
		// Every epoch ends first, so that the loops take the socket's
		// close for the stop it is and do not log it as a failure.
		l.stop()
		if err := l.sock.Close(); l.closeErr == nil {
			l.closeErr = err
		}
	}
	l.mu.Unlock()
	<-l.done
	l.adm.Close()
	return l.closeErr
}

// stopped reports whether Close has cancelled the Listener's context.
func (l *Listener) stopped() bool { return l.root.Err() != nil }

// Drain is the old process's part of a binary upgrade, where another
// process serves the socket from now on: the Listener stops taking
// clients and closes its descriptors of the socket (a unix socket's file
// stays: it is the other process's too), but what it took runs its
// course: a PROXY header being read, a handler being started, built-in
// connections. Clients in the backlog stay there for the other process.
// Drain returns once no client can be taken any more; Done tells when
// the rest has ended. Update fails after Drain; Close still ends it all.
func (l *Listener) Drain() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil
	}
	l.closed = true
	l.drained.Store(true)
	close(l.drainC)
	ep := l.cur.Load().epoch
	ep.stopLoop()
	if ep.mode == ModeBuiltinPacket || ep.mode == ModeWait {
		// Their loops may be between a datagram's read and its answer,
		// or starting a handler on the socket: they finish that with the
		// socket open, and the interrupt ends their next wait.
		l.switchMu.Lock()
		l.sock.Interrupt()
		l.switchMu.Unlock()
		l.awaitLeft(ep)
	}
	// Closing the socket waits for an accept under way: after it, the
	// loop takes nobody.
	l.closeErr = l.sock.CloseKeepFile()
	return l.closeErr
}

// WaitHandler returns the exit (closed once it has been reaped) of the
// wait-mode handler that holds the socket, or nil when none does. After
// Drain, no other starts: the old process of an upgrade tells the new
// one not to touch the socket until then, since the handler may rely on
// the blocking mode that the new process's adoption would change.
func (l *Listener) WaitHandler() <-chan struct{} {
	w := l.waitHandler.Load()
	if w == nil {
		return nil
	}
	select {
	case <-w.exited:
		return nil
	default:
		return w.exited
	}
}

// Done is closed when the serve goroutine has returned: after Close, or,
// after Drain, once the connections the loop took are done (built-in
// connections closed, handlers started: those the process table waits
// for).
func (l *Listener) Done() <-chan struct{} { return l.done }

// Observe makes obs see the counts of the Listener's admission state and
// every change to them (admit.Admission.Observe): the old process of an
// upgrade tells the new one what its clients hold.
func (l *Listener) Observe(obs func(admit.Change)) { l.adm.Observe(obs) }

// Hold applies a change to the counts of the clients another process
// serves on this socket (admit.Admission.Hold): the new process of an
// upgrade counts the old one's clients against instances and per_source
// until they end.
func (l *Listener) Hold(c admit.Change) { l.adm.Hold(c) }

// RemovesFile reports whether closing the Listener removes its unix
// socket's file (superd bound it): the new process of an upgrade is then
// to remove it in its turn.
func (l *Listener) RemovesFile() bool { return l.sock.RemovesFile() }

// File returns a close-on-exec duplicate of the socket, named after the
// service in force (as systemd's FileDescriptorName= would name it), to
// hand to another process; the caller closes it.
func (l *Listener) File() (*os.File, error) { return l.sock.Dup(l.Name()) }

// serve is the Listener's one goroutine. It runs the loop of the mode in
// force until an Update changes the mode, then the next one, until
// Close. Between two modes it makes sure the socket is superd's: a
// wait-mode handler may still hold it (and have left it blocking).
func (l *Listener) serve() {
	defer close(l.done)
	defer l.setRunning(nil)
	if g := l.rt.Gate; g != nil {
		select {
		case <-g:
		case <-l.root.Done():
			return
		case <-l.drainC:
			return
		}
	}
	// owner is closed when the wait-mode handler that holds the socket
	// exits; nil while superd holds it.
	var owner <-chan struct{}
	for {
		l.switchMu.Lock()
		l.sock.ClearInterrupt()
		ep := l.cur.Load().epoch
		l.setRunning(ep)
		l.switchMu.Unlock()
		if l.root.Err() != nil || l.drained.Load() {
			return
		}
		if owner != nil {
			l.handoff.Store(true)
			select {
			case <-owner:
				owner = nil
			case <-ep.ctx.Done():
			}
			l.handoff.Store(false)
			if owner != nil {
				continue // the mode changed again, or Close
			}
		}
		var err error
		switch ep.mode {
		case ModeWait:
			owner = l.serveWait(ep)
		default:
			// A wait-mode handler may have left the shared socket
			// blocking, and a blocking accept would not see the end of
			// its epoch.
			if err = l.sock.SetNonblock(); err != nil {
				err = fmt.Errorf("make socket non-blocking: %w", err)
				break
			}
			switch ep.mode {
			case ModeBuiltinStream:
				l.serveBuiltinStream(ep)
			case ModeBuiltinPacket:
				l.serveBuiltinPacket(ep)
			default:
				l.serveNowait(ep)
			}
		}
		switch {
		case l.root.Err() != nil, l.drained.Load():
			return
		case err != nil:
			l.cur.Load().log.Error("serve_failed", "err", err)
			return
		case ep.ctx.Err() == nil:
			// The loop ended while nobody asked it to.
			l.cur.Load().log.Error("serve_stopped")
			return
		}
	}
}

// acceptError decides what the loop of ep does after err from an accept
// or a readiness wait: stop (true), or carry on after the backoff for
// resource exhaustion.
func (l *Listener) acceptError(ep *epoch, err error, delay *time.Duration) (stop bool) {
	ctx := ep.ctx
	// The deadline is set only when the epoch is over (see switchMu).
	if ctx.Err() != nil || errors.Is(err, net.ErrClosed) || errors.Is(err, os.ErrDeadlineExceeded) || l.sock.Closed() {
		return true
	}
	log := ep.cur.Load().log
	if descriptorsExhausted(err) {
		// Clients wait in the backlog until descriptors free up.
		l.short.note(log, err)
		return !awaitDescriptors(ctx, l.rt.Procs.Released(), delay)
	}
	// ENOBUFS, ENOMEM: back off rather than spin.
	d := backoff(delay)
	log.Error("accept_failed", "err", err, "retry_in", d)
	return !sleep(ctx, d)
}

// backoff doubles *delay from 5ms up to 1s, as net/http does for accept
// errors, and returns it.
func backoff(delay *time.Duration) time.Duration {
	if *delay == 0 {
		*delay = 5 * time.Millisecond
	} else if *delay *= 2; *delay > time.Second {
		*delay = time.Second
	}
	return *delay
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
