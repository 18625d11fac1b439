// Package admit decides whether a service takes another client: the
// instances limit (slots), the connection rate (a token bucket), the
// per_source limit (IPv4 /32, IPv6 /64), the access lists, the
// summaries of refusals in the log (at most one line per second and
// reason), and the counts of refusals and waits in the service's
// metrics.
//
// The package deliberately does not accept, close or read connections,
// and it starts no goroutine: its caller's serve loop waits in Acquire
// (so clients wait in the kernel's backlog, never accepted and dropped),
// and the caller closes a refused connection. Its only timers are the
// refusal summaries' flushes, which Close stops.
package admit

import (
	"context"
	"log/slog"
	"math"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"github.com/superd/superd/config"
	"github.com/superd/superd/internal/metrics"
)

// Admission is the state that decides whether one socket's service takes
// another client. It belongs to the socket's Listener, not to a service's
// settings, so that a reload that renames a service or changes its mode
// cannot reset instances, per_source or rate while the old handlers still
// run.
//
// Its methods are safe for concurrent use: the serve loop waits in
// Acquire while handler goroutines release slots and a reload calls
// Configure. It owns no goroutine; the flush timers of its refusal
// summaries end with Close.
type Admission struct {
	slots   slots
	active  atomic.Int64 // clients past Check whose release has not come yet
	sources sources
	denials denials

	rateMu sync.Mutex // serializes Configure's rate changes
	// rate is the rate limiter was made for; guarded by rateMu.
	rate float64
	// limiter is replaced, full, when the rate changes.
	limiter atomic.Pointer[rate.Limiter]
	// rateChanged is closed (and replaced) when limiter is, so that a
	// wait for a token on the old bucket starts over on the new one.
	rateChanged atomic.Pointer[chan struct{}]
}

// New returns the admission state of a socket: no instances allowed and
// no rate limit until Configure.
func New() *Admission {
	a := &Admission{}
	a.slots.wake = make(chan struct{})
	a.sources.n = make(map[netip.Prefix]int)
	a.limiter.Store(rate.NewLimiter(rate.Inf, 1))
	ch := make(chan struct{})
	a.rateChanged.Store(&ch)
	return a
}

// Configure makes instances the slot limit and r (connections per
// second, 0 for none) the rate, with a burst of r. A larger limit wakes
// a wait in Acquire at once; a smaller one takes nothing back from
// running clients. A new rate starts with a full bucket and applies to
// a wait for a token already under way; an unchanged rate keeps its
// bucket.
func (a *Admission) Configure(instances int, r float64) {
	a.slots.setLimit(instances)
	a.rateMu.Lock()
	defer a.rateMu.Unlock()
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

// Acquire waits for a free instance slot and a rate token: until both
// are there, the caller does not accept, and clients wait in the kernel's
// backlog. It returns false when ctx is done first, holding nothing. The
// slot taken goes back with Return, or with Check (refused) or the
// release Check returns. Each wait counts once in m (nil: nowhere), for
// the limit that caused it.
func (a *Admission) Acquire(ctx context.Context, m *metrics.Service) bool {
	if err := a.slots.acquire(ctx, m); err != nil {
		return false
	}
	if !a.Token(ctx, m) {
		a.slots.release()
		return false
	}
	return true
}

// Return gives back a slot taken by Acquire for a client that never
// reached Check (the accept failed).
func (a *Admission) Return() { a.slots.release() }

// Token waits for a rate token, or until ctx is done (false). A rate
// changed by Configure meanwhile applies at once. Wait-mode services,
// which have no slots, take only tokens. A wait counts once in m (nil:
// nowhere), however often the rate changes during it.
func (a *Admission) Token(ctx context.Context, m *metrics.Service) bool {
	for waited := false; ; waited = true {
		changed := *a.rateChanged.Load()
		r := a.limiter.Load().Reserve()
		d := r.Delay()
		if d == 0 {
			return true
		}
		if !waited {
			m.Waited(metrics.WaitRate)
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

// Client is who a connection comes from, as far as admission cares.
type Client struct {
	// Unix is set for a client of a unix socket, which has no address:
	// the access lists and per_source do not apply to it.
	Unix bool
	// Addr is a TCP client's address, IPv4-mapped addresses unmapped;
	// invalid when superd could not identify the client, which then
	// passes no check (fail closed).
	Addr netip.Addr
	// Remote is the client as the log shows it.
	Remote string
}

// Check applies the checks that need the client's address, the access
// lists and per_source of svc, to a connection that holds a slot from
// Acquire. A refused client's slot goes back at once, the refusal is
// logged (summarized, see denials) to log and counted in m (nil:
// nowhere) by reason, and ok is false: the caller closes the connection.
// An admitted client counts as running (Running) until the caller calls
// release, once, when the client's handler or connection has ended: it
// gives back the slot and the per_source place.
func (a *Admission) Check(svc *config.Service, c Client, log *slog.Logger, m *metrics.Service) (release func(), ok bool) {
	switch {
	case c.Unix:
		a.active.Add(1)
		return a.releaseSlot, true
	case !c.Addr.IsValid():
		// Fail closed: a client superd cannot identify passes no list.
		a.slots.release()
		a.denials.log(log, "unknown peer", "?")
		m.Refused(metrics.RefusedAccess)
		return nil, false
	}
	if !svc.Access.Allowed(c.Addr) {
		a.slots.release()
		a.denials.log(log, "access", c.Remote)
		m.Refused(metrics.RefusedAccess)
		return nil, false
	}
	if svc.Limits.PerSource <= 0 {
		a.active.Add(1)
		return a.releaseSlot, true
	}
	key := sourceOf(c.Addr)
	if !a.sources.take(key, svc.Limits.PerSource) {
		a.slots.release()
		a.denials.log(log, "per_source", c.Remote)
		m.Refused(metrics.RefusedPerSource)
		return nil, false
	}
	a.active.Add(1)
	return func() {
		a.sources.give(key)
		a.releaseSlot()
	}, true
}

// Refuse turns away a connection that holds a slot from Acquire before
// Check saw it, for a reason of the caller's (a PROXY header that did
// not come, say): the slot goes back, the refusal is logged (summarized,
// see denials) to log with reason and remote, and counted in m (nil:
// nowhere) as r. The caller closes the connection.
func (a *Admission) Refuse(reason, remote string, r metrics.Refusal, log *slog.Logger, m *metrics.Service) {
	a.slots.release()
	a.denials.log(log, reason, remote)
	m.Refused(r)
}

// releaseSlot ends an admitted client without a per_source place.
func (a *Admission) releaseSlot() {
	a.active.Add(-1)
	a.slots.release()
}

// AllowDatagram applies access to a datagram from addr, for datagram
// built-ins, which take no slots. A refusal is logged and counted like a
// connection's.
func (a *Admission) AllowDatagram(access config.Access, addr netip.Addr, remote string, log *slog.Logger, m *metrics.Service) bool {
	if access.Allowed(addr) {
		return true
	}
	a.denials.log(log, "access", remote)
	m.Refused(metrics.RefusedAccess)
	return false
}

// Running returns the number of admitted clients whose release has not
// been called: running handlers, or built-in connections.
func (a *Admission) Running() int { return int(a.active.Load()) }

// Slots returns the number of instance slots in use: running clients
// plus those taken by Acquire and not yet checked.
func (a *Admission) Slots() int { return a.slots.count() }

// Waiting reports whether a caller waits in Acquire for a slot: the
// service is at its instances limit and defers clients.
func (a *Admission) Waiting() bool { return a.slots.waiting() > 0 }

// Close logs the refusals still held back by the summaries, stops their
// timers, and ends refusal logging: after Close nothing logs. The
// Listener that owns the Admission calls it when it closes.
func (a *Admission) Close() { a.denials.close() }

// slots counts the clients of a socket against its instances limit.
type slots struct {
	mu     sync.Mutex
	used   int
	limit  int
	waiter int           // callers blocked in acquire
	wake   chan struct{} // closed and replaced whenever a slot may have freed up
	obs    func(Change)  // told every change to used; see Admission.Observe
}

// acquire takes a slot, waiting for one while all are used; a wait
// counts once in m.
func (g *slots) acquire(ctx context.Context, m *metrics.Service) error {
	for waited := false; ; waited = true {
		g.mu.Lock()
		if g.used < g.limit {
			g.used++
			if g.obs != nil {
				g.obs(Change{Slots: 1})
			}
			g.mu.Unlock()
			return nil
		}
		wake := g.wake
		g.waiter++
		g.mu.Unlock()
		if !waited {
			m.Waited(metrics.WaitInstances)
		}
		select {
		case <-wake:
		case <-ctx.Done():
		}
		g.mu.Lock()
		g.waiter--
		g.mu.Unlock()
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
}

func (g *slots) release() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.used--
	if g.obs != nil {
		g.obs(Change{Slots: -1})
	}
	g.pokeLocked()
}

// setLimit makes n the limit and wakes the waiters, which look again.
func (g *slots) setLimit(n int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.limit = n
	g.pokeLocked()
}

func (g *slots) pokeLocked() {
	close(g.wake)
	g.wake = make(chan struct{})
}

func (g *slots) count() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.used
}

func (g *slots) waiting() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.waiter
}

// sourceOf is the per_source key of a client: its IPv4 address, or its
// IPv6 /64 (one host usually owns a whole /64).
func sourceOf(ip netip.Addr) netip.Prefix {
	ip = ip.Unmap()
	bits := 32
	if ip.Is6() {
		bits = 64
	}
	p, _ := ip.WithZone("").Prefix(bits)
	return p
}

// sources counts running clients per source.
type sources struct {
	mu  sync.Mutex
	n   map[netip.Prefix]int
	obs func(Change) // told every change to n; see Admission.Observe
}

func (c *sources) take(k netip.Prefix, limit int) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n[k] >= limit {
		return false
	}
	c.n[k]++
	if c.obs != nil {
		c.obs(Change{Source: k, Sources: 1})
	}
	return true
}

func (c *sources) give(k netip.Prefix) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n[k]--; c.n[k] <= 0 {
		delete(c.n, k)
	}
	if c.obs != nil {
		c.obs(Change{Source: k, Sources: -1})
	}
}
