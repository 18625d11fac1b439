package supervisor

import (
	"context"
	"time"

	"golang.org/x/sys/unix"

	"github.com/superd/superd/config"
	"github.com/superd/superd/services"
)

// apply makes next the running set. A socket whose key next still uses
// is kept as it is, with the connections in its backlog; new sockets are
// bound before any old one closes; services whose socket cannot be bound
// yet are retried with backoff. Handlers already running are not
// touched.
func (s *Supervisor) apply(next *config.Config) {
	want := make(map[string]*config.Service)
	keys := make(map[config.ListenKey]*config.Service)
	for _, svc := range next.Services {
		if !svc.Disabled {
			want[svc.Name] = svc
			keys[svc.Listen] = svc
		}
	}
	s.pending = make(map[string]*pending)
	var failed []*config.Service
	for key, svc := range keys {
		if s.socks[key] == nil {
			if !s.bind(svc) {
				failed = append(failed, svc)
			}
		} else if err := s.socks[key].Reconfigure(svc.Backlog, svc.SocketMode); err != nil {
			s.log.Error("reconfigure_failed", "service", svc.Name, "listen", key.String(), "err", err)
		}
	}
	for name, r := range s.running {
		svc := want[name]
		if svc == nil || svc.Listen != r.key || services.ModeOf(svc) != r.svc.Mode() {
			s.stop(r)
			delete(s.running, name)
		}
	}
	closed := false
	for key, sock := range s.socks {
		if keys[key] == nil {
			sock.Close()
			delete(s.socks, key)
			s.log.Info("closed", "listen", key.String())
			closed = true
		}
	}
	// A socket that failed because an old one held its address (tcp on
	// a port that moved to tcp4, say) can be bound now.
	for _, svc := range failed {
		if !closed || !s.bind(svc) {
			s.postpone(svc, firstRetry, time.Now())
		}
	}
	for name, svc := range want {
		if r := s.running[name]; r != nil {
			r.svc.Update(svc)
		} else if sock := s.socks[svc.Listen]; sock != nil {
			s.start(svc, sock)
		}
	}
	s.armRetry()
}

// bind binds svc's socket and records it; it logs a failure and reports
// whether the socket is there.
func (s *Supervisor) bind(svc *config.Service) bool {
	sock, err := services.Bind(svc.Listen, svc.Backlog, svc.SocketMode)
	if err != nil {
		s.log.Error("bind_failed", "service", svc.Name, "listen", svc.Listen.String(), "err", err)
		return false
	}
	s.socks[svc.Listen] = sock
	s.log.Info("listening", "service", svc.Name, "listen", svc.Listen.String(), "addr", sock.Addr().String())
	return true
}

// start runs svc on sock in a goroutine that stop ends.
func (s *Supervisor) start(svc *config.Service, sock *services.Socket) {
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{
		svc:    services.New(svc, sock, s.opts.Runtime, s.log),
		key:    svc.Listen,
		cancel: cancel,
		done:   make(chan struct{}),
	}
	s.running[svc.Name] = r
	go func() {
		defer close(r.done)
		err := r.svc.Serve(ctx)
		switch {
		case err != nil:
			s.log.Error("serve_failed", "service", svc.Name, "err", err)
		case ctx.Err() == nil && !sock.Closed():
			s.log.Error("serve_stopped", "service", svc.Name)
		}
	}()
}

// postpone schedules another bind attempt for svc after delay.
func (s *Supervisor) postpone(svc *config.Service, delay time.Duration, now time.Time) {
	s.pending[svc.Name] = &pending{svc: svc, delay: delay, next: now.Add(delay)}
	s.log.Info("bind_retry", "service", svc.Name, "in", delay)
}

// retryBinds tries again every pending service that is due.
func (s *Supervisor) retryBinds(now time.Time) {
	for name, p := range s.pending {
		if now.Before(p.next) {
			continue
		}
		delete(s.pending, name)
		if s.bind(p.svc) {
			s.start(p.svc, s.socks[p.svc.Listen])
			continue
		}
		s.postpone(p.svc, min(2*p.delay, maxRetry), now)
	}
	s.armRetry()
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
