// Package services runs one service: it watches the service's socket,
// admits connections (instances, rate, per_source, access lists), and
// starts a handler process per connection, or in wait mode hands the
// socket itself to one handler at a time. It also runs the in-process
// built-in services.
//
// The package does not bind sockets on its own initiative, read
// configuration files, or handle signals: the supervisor binds each
// Socket, creates each Service from a validated config.Service, and
// decides when it stops.
package services

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"github.com/superd/superd/config"
)

// Mode is the way a service serves its socket. A Service keeps its mode
// for its whole life: a reload that changes it replaces the Service (and
// keeps the Socket).
type Mode int

// The modes of a service.
const (
	ModeNowait        Mode = iota // a handler per accepted connection
	ModeWait                      // the handler gets the socket itself
	ModeBuiltinStream             // an in-process built-in per connection
	ModeBuiltinPacket             // an in-process built-in answering datagrams
)

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

// Service serves one socket for one configured service. Update swaps its
// settings for new connections while Serve runs; handlers already
// running keep the settings they started with.
type Service struct {
	name string
	mode Mode
	sock *Socket
	rt   *Runtime
	log  *slog.Logger

	spec  atomic.Pointer[spec]
	adm   *admission // the socket's
	loops loopGuard
	short shortage // out of descriptors (see descriptors.go)
}

// admission is the state that decides whether a service takes another
// connection. It belongs to the Socket, so that it passes to the Service
// that replaces another on the same socket: a reload that renames a
// service or changes its mode cannot reset instances, per_source or rate
// while the old handlers still run.
type admission struct {
	slots   slots
	active  atomic.Int64 // running handlers or built-in connections
	sources sources
	denials denials
	// limiter is replaced, full, when the rate changes; rate is the rate
	// it was made for. Only Update, on the supervisor's goroutine, writes
	// them.
	limiter atomic.Pointer[rate.Limiter]
	rate    float64
	// rateChanged is closed (and replaced) when limiter is, so that a
	// wait for a token on the old bucket starts over on the new one.
	rateChanged atomic.Pointer[chan struct{}]
}

func newAdmission() *admission {
	a := &admission{}
	a.slots.wake = make(chan struct{})
	a.sources.n = make(map[sourceKey]int)
	a.limiter.Store(rate.NewLimiter(rate.Inf, 1))
	ch := make(chan struct{})
	a.rateChanged.Store(&ch)
	return a
}

// setRate makes r (connections per second, 0 for none) the rate, with a
// burst of r; a new rate starts with a full bucket.
func (a *admission) setRate(r float64) {
	if r == a.rate {
		return
	}
	a.rate = r
	if r <= 0 {
		a.limiter.Store(rate.NewLimiter(rate.Inf, 1))
	} else {
		a.limiter.Store(rate.NewLimiter(rate.Limit(r), int(math.Ceil(r))))
	}
	ch := make(chan struct{})
	close(*a.rateChanged.Swap(&ch))
}

// token waits for a rate token, or until ctx is done (false). A rate
// changed by a reload meanwhile applies at once.
func (a *admission) token(ctx context.Context) bool {
	for {
		changed := *a.rateChanged.Load()
		r := a.limiter.Load().Reserve()
		d := r.Delay()
		if d == 0 {
			return true
		}
		t := time.NewTimer(d)
		select {
		case <-t.C:
			return true
		case <-changed:
			r.Cancel()
			t.Stop()
		case <-ctx.Done():
			r.Cancel()
			t.Stop()
			return false
		}
	}
}

// New returns a Service for svc on sock. It does not start serving;
// Serve does.
func New(svc *config.Service, sock *Socket, rt *Runtime, log *slog.Logger) *Service {
	s := &Service{
		name: svc.Name,
		mode: ModeOf(svc),
		sock: sock,
		rt:   rt,
		log:  log.With("service", svc.Name),
		adm:  sock.adm,
	}
	s.Update(svc)
	return s
}

// Name returns the service's name.
func (s *Service) Name() string { return s.name }

// Mode returns the service's mode.
func (s *Service) Mode() Mode { return s.mode }

// Update makes svc the settings for every connection from now on. svc
// must have the same mode (see ModeOf) and socket as the Service.
func (s *Service) Update(svc *config.Service) {
	s.spec.Store(newSpec(svc, s.rt))
	s.adm.setRate(svc.Limits.Rate)
	s.adm.slots.poke() // the instances limit may have grown
	if s.mode == ModeBuiltinPacket {
		s.sock.interrupt() // the datagram loop picks up the new settings
	}
}

// Running returns the number of handlers (or built-in connections) of
// this service that are running now.
func (s *Service) Running() int { return int(s.adm.active.Load()) }

// Serve serves the socket until ctx is done or the socket is closed, and
// then returns nil. It leaves the socket open: its owner closes it.
// Handler processes started by Serve keep running after it returns; the
// Runtime's Procs reaps them. Built-in connections end with Serve.
func (s *Service) Serve(ctx context.Context) error {
	s.sock.clearInterrupt()
	stop := context.AfterFunc(ctx, s.sock.interrupt)
	defer stop()
	if s.mode == ModeWait {
		return s.serveWait(ctx)
	}
	// A wait-mode handler of the Service this one replaces may still own
	// the socket, and leaves it blocking: wait for it, then take the
	// socket back, or an accept would block where ctx cannot reach it.
	if err := s.sock.acquire(ctx); err != nil {
		return nil
	}
	err := s.sock.setNonblock()
	s.sock.release()
	if err != nil {
		return fmt.Errorf("service %q: make socket non-blocking: %w", s.name, err)
	}
	switch s.mode {
	case ModeBuiltinStream:
		return s.serveBuiltinStream(ctx)
	case ModeBuiltinPacket:
		return s.serveBuiltinPacket(ctx)
	}
	return s.serveNowait(ctx)
}

// admit waits for a free instance slot and a rate token: until both are
// there, superd does not accept, and clients wait in the kernel's
// backlog. It returns false when ctx is done.
func (s *Service) admit(ctx context.Context) bool {
	if err := s.adm.slots.acquire(ctx, func() int { return s.spec.Load().svc.Limits.Instances }); err != nil {
		return false
	}
	if !s.adm.token(ctx) {
		s.adm.slots.release()
		return false
	}
	return true
}

// acceptError decides what an accept loop does after err: stop (true),
// or carry on after the backoff for resource exhaustion.
func (s *Service) acceptError(ctx context.Context, err error, delay *time.Duration) (stop bool) {
	if ctx.Err() != nil || s.sock.closed.Load() || errors.Is(err, net.ErrClosed) {
		return true
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		// A late interrupt from a previous Service on this socket. Look
		// at ctx again after clearing it: our own cancel may have come
		// in between, and its interrupt was just cleared.
		s.sock.clearInterrupt()
		return ctx.Err() != nil
	}
	if descriptorsExhausted(err) {
		// Clients wait in the backlog until descriptors free up.
		s.short.note(s.log, err)
		return !s.awaitDescriptors(ctx, s.rt.Procs.released(), delay)
	}
	// ENOBUFS, ENOMEM: back off rather than spin.
	d := backoff(delay)
	s.log.Error("accept_failed", "err", err, "retry_in", d)
	return !sleep(ctx, d)
}

// slots counts the handlers of a service against its instances limit.
type slots struct {
	mu   sync.Mutex
	used int
	wake chan struct{} // closed and replaced whenever a slot may have freed up
}

func (g *slots) acquire(ctx context.Context, limit func() int) error {
	for {
		g.mu.Lock()
		if g.used < limit() {
			g.used++
			g.mu.Unlock()
			return nil
		}
		wake := g.wake
		g.mu.Unlock()
		select {
		case <-wake:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func (g *slots) release() {
	g.mu.Lock()
	g.used--
	g.mu.Unlock()
	g.poke()
}

func (g *slots) poke() {
	g.mu.Lock()
	close(g.wake)
	g.wake = make(chan struct{})
	g.mu.Unlock()
}

func (g *slots) count() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.used
}
