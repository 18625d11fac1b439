package supervisor

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/superd/superd/config"
	"github.com/superd/superd/internal/metrics"
	"github.com/superd/superd/services"
)

// running returns the settings each running identity serves: diff's
// view of the running set.
func (s *Supervisor) running() map[config.ListenKey]*config.Service {
	r := make(map[config.ListenKey]*config.Service, len(s.listeners))
	for key, l := range s.listeners {
		r[key] = l.Service()
	}
	return r
}

// updateError is apply's error when a running Listener could not take
// its new settings: the reload was rolled back.
type updateError struct {
	service string           // the service whose settings were refused
	listen  config.ListenKey // its listen identity
	err     error
}

func (e *updateError) Error() string {
	return fmt.Sprintf("supervisor: update service %q on %s: %v", e.service, e.listen, e.err)
}

func (e *updateError) Unwrap() error { return e.err }

// updated is a Listener that apply updated, and the settings to put
// back if the apply is rolled back.
type updated struct {
	l    *services.Listener
	prev *config.Service
}

// apply makes next the running set, in the order diff's plan allows
// without losing a client:
//
//  1. bind every new identity (a bind that fails is retried later with
//     backoff, see postpone; the other services run meanwhile);
//  2. update the identities whose settings changed: their Listeners keep
//     their sockets, backlogs and admission state;
//  3. close the identities no longer wanted (their running handlers are
//     left alone);
//  4. bind again, at once, what failed in step 1 when step 3 closed
//     something: an old socket may have held the address (tcp on a port
//     that moved to tcp4, say).
//
// When an update fails, apply undoes what it did (closes the Listeners
// it bound, updates the others back), keeps the running set and returns
// the error, which names the service. Step 1 cannot fail the apply, and
// nothing after step 2 can.
func (s *Supervisor) apply(next *config.Config) (changes, error) {
	running := s.running()
	p := diff(running, next.Services)
	oldPending := s.pending
	s.pending = make(map[string]*pending)

	var (
		bound  []*services.Listener
		failed []*config.Service
	)
	for _, svc := range p.bind {
		if l := s.bind(svc); l != nil {
			bound = append(bound, l)
		} else {
			failed = append(failed, svc)
		}
	}

	var done []updated
	for _, svc := range p.update {
		l := s.listeners[svc.Listen]
		prev := l.Service()
		if err := l.Update(svc); err != nil {
			s.rollback(bound, done)
			s.pending = oldPending
			s.armRetry()
			return changes{}, &updateError{service: svc.Name, listen: svc.Listen, err: err}
		}
		done = append(done, updated{l, prev})
	}

	removed := make([]string, 0, len(p.close))
	for _, key := range p.close {
		removed = append(removed, running[key].Name)
		s.closeListener(key)
	}

	// A socket that failed because an old one held its address can be
	// bound now.
	now := time.Now()
	for _, svc := range failed {
		if len(p.close) == 0 || s.bind(svc) == nil {
			s.postpone(svc, firstRetry, now)
		}
	}
	s.armRetry()
	return changes{added: nameList(p.bind), removed: list(removed), changed: nameList(p.update)}, nil
}

// changes is what an apply did, for the reloaded line: the services it
// added (bound or pending), removed (closed) and changed (updated), each
// a comma-separated list of names in diff's order, "-" when empty.
type changes struct {
	added, removed, changed string
}

// nameList lists the names of svcs as changes does.
func nameList(svcs []*config.Service) string {
	names := make([]string, len(svcs))
	for i, svc := range svcs {
		names[i] = svc.Name
	}
	return list(names)
}

// list joins names with commas; "-" for none, so that the field is
// never empty in a log line.
func list(names []string) string {
	if len(names) == 0 {
		return "-"
	}
	return strings.Join(names, ",")
}

// rollback undoes an apply whose update failed: it closes the Listeners
// the apply bound and puts the updated ones back to their previous
// settings, newest first. A Listener that cannot be put back is logged
// and keeps the settings it has.
func (s *Supervisor) rollback(bound []*services.Listener, done []updated) {
	for i := len(done) - 1; i >= 0; i-- {
		u := done[i]
		if err := u.l.Update(u.prev); err != nil {
			s.log.Error("reload_failed", "service", u.prev.Name, "err", fmt.Errorf("putting the running settings back: %w", err))
		}
	}
	for _, l := range bound {
		s.closeListener(l.Key())
	}
}

// bind starts a Listener for svc and records it; it logs the outcome and
// returns nil when the socket could not be bound.
func (s *Supervisor) bind(svc *config.Service) *services.Listener {
	l, deferred := s.adopt(svc)
	if deferred {
		return nil // postpone waits for the old process's word
	}
	var err error
	if l == nil {
		l, err = services.Listen(svc, s.opts.Runtime, s.log)
	}
	if err != nil {
		s.log.Error("bind_failed", "service", svc.Name, "listen", svc.Listen.String(), "err", err)
		return nil
	}
	s.listeners[svc.Listen] = l
	s.log.Info("listening", "service", svc.Name, "listen", svc.Listen.String(), "addr", l.Addr().String())
	return l
}

// closeListener closes the Listener of key and forgets it. Its running
// handlers keep running.
func (s *Supervisor) closeListener(key config.ListenKey) {
	l := s.listeners[key]
	delete(s.listeners, key)
	// Closing a socket superd bound cannot fail in a way worth acting on:
	// the descriptor is gone either way.
	l.Close()
	s.log.Info("closed", "service", l.Name(), "listen", key.String())
}

// postpone schedules another bind attempt for svc after delay.
func (s *Supervisor) postpone(svc *config.Service, delay time.Duration, now time.Time) {
	if d, ok := s.deferred[svc.Listen]; ok && s.waitHeld(d.fd) {
		// No retry: adoptDeferred binds it when the old process says.
		// adoptDeferred logs the wait, once the old process has said
		// which sockets its handlers hold.
		s.pending[svc.Name] = &pending{svc: svc, delay: delay, next: now.Add(neverRetry)}
		return
	}
	s.pending[svc.Name] = &pending{svc: svc, delay: delay, next: now.Add(delay)}
	s.log.Info("bind_retry", "service", svc.Name, "in", delay)
}

// neverRetry is the delay of a pending service that waits for an event
// rather than a retry.
const neverRetry = 100 * 365 * 24 * time.Hour

// publish tells the metrics which services listen now.
func (s *Supervisor) publish() {
	m := s.opts.Runtime.Metrics
	if m == nil {
		return
	}
	list := make([]metrics.ServiceInfo, 0, len(s.listeners))
	for key, l := range s.listeners {
		list = append(list, metrics.ServiceInfo{Name: l.Name(), Listen: key.String(), Mode: l.Mode().String()})
	}
	slices.SortFunc(list, func(a, b metrics.ServiceInfo) int { return strings.Compare(a.Name, b.Name) })
	m.SetServices(list)
}

// dropSeries deletes the metrics of every service of other that the
// configuration in force does not run: a reload removed, renamed or
// disabled it, or (other being a reload's configuration that was
// rolled back) never added it. Their handlers still running count
// nowhere from then on.
func (s *Supervisor) dropSeries(other *config.Config) {
	m := s.opts.Runtime.Metrics
	if m == nil {
		return
	}
	keep := make(map[string]bool, len(s.cfg.Services))
	for _, svc := range s.cfg.Services {
		if !svc.Disabled {
			keep[svc.Name] = true
		}
	}
	for _, svc := range other.Services {
		if !keep[svc.Name] {
			m.Drop(svc.Name)
		}
	}
}

// retryBinds tries again every pending service that is due.
func (s *Supervisor) retryBinds(now time.Time) {
	for name, p := range s.pending {
		if now.Before(p.next) {
			continue
		}
		delete(s.pending, name)
		if s.bind(p.svc) == nil {
			s.postpone(p.svc, min(2*p.delay, maxRetry), now)
		}
	}
	s.armRetry()
	s.publish()
	s.opts.Notify(s.status())
}

// armRetry sets the retry timer for the earliest pending service.
func (s *Supervisor) armRetry() {
	s.retry.Stop()
	var first time.Time
	for _, p := range s.pending {
		if first.IsZero() || p.next.Before(first) {
			first = p.next
		}
	}
	if !first.IsZero() {
		s.retry.Reset(time.Until(first))
	}
}

// monotonicUsec is CLOCK_MONOTONIC in microseconds, which systemd wants
// with RELOADING=1 to match the reload to the request.
func monotonicUsec() int64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return 0
	}
	return ts.Nano() / 1000
}
