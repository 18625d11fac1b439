package supervisor

import (
	"os"
	"slices"
	"time"

	"github.com/superd/superd/config"
	"github.com/superd/superd/services"
	"github.com/superd/superd/services/socket"
)

// adopt serves svc on the inherited socket meant for it, and returns nil
// when there is none (or it could not be used: logged), so that bind
// binds as usual. The socket meant for svc is the one named after svc
// (systemd's FileDescriptorName=), else the first whose protocol, address
// and port fit svc's listen key. One named after svc that does not fit
// is an error in the unit or the configuration: it is logged and closed,
// and svc binds its own socket. Only Run's first apply has inherited
// sockets; a reload binds.
//
// After an upgrade, a socket of the old process is deferred (true)
// rather than adopted until the old process has stopped taking clients
// and none of its wait-mode handlers holds the socket (see deferred):
// adopting makes the shared socket non-blocking, and sets this
// configuration's backlog, mode and owner on it.
func (s *Supervisor) adopt(svc *config.Service) (l *services.Listener, deferred bool) {
	d, ok := s.deferred[svc.Listen]
	switch {
	case ok && s.waitHeld(d.fd):
		return nil, true
	case ok:
		delete(s.deferred, svc.Listen)
	default:
		f := s.takeInherited(svc)
		if f == nil {
			return nil, false
		}
		d = deferredSocket{f: f, fd: fdOf(f)}
		if s.opts.Predecessor != nil && s.waitHeld(d.fd) {
			s.deferred[svc.Listen] = d
			return nil, true
		}
	}
	return s.serveInherited(svc, d.f), false
}

// deferredSocket is a socket of the old process of an upgrade not
// adopted yet, and the descriptor it was passed on, which the handshake
// names it by.
type deferredSocket struct {
	f  *os.File
	fd int
}

// takeInherited takes the inherited socket meant for svc out of
// s.inherited; nil when there is none.
func (s *Supervisor) takeInherited(svc *config.Service) *os.File {
	if len(s.inherited) == 0 {
		return nil
	}
	i := slices.IndexFunc(s.inherited, func(f *os.File) bool { return f.Name() == svc.Name })
	if i >= 0 {
		f := s.inherited[i]
		if err := s.fits(svc.Listen, f); err != nil {
			if s.opts.Predecessor != nil {
				// After an upgrade: the configuration moved the service,
				// and the socket may be another's now (two services that
				// swapped ports): it stays for the match by address.
				s.log.Info("inherited_mismatch", "service", svc.Name, "listen", svc.Listen.String(),
					"fd", fdOf(f), "name", f.Name(), "err", err, "doing", "looking for the socket that fits")
			} else {
				s.inherited = slices.Delete(s.inherited, i, i+1)
				s.log.Error("inherited_mismatch", "service", svc.Name, "listen", svc.Listen.String(),
					"fd", fdOf(f), "name", f.Name(), "err", err, "doing", "closing it and binding the service's own socket")
				f.Close()
			}
			i = -1
		}
	}
	if i < 0 {
		i = slices.IndexFunc(s.inherited, func(f *os.File) bool { return s.fits(svc.Listen, f) == nil })
	}
	if i < 0 {
		return nil
	}
	f := s.inherited[i]
	s.inherited = slices.Delete(s.inherited, i, i+1)
	return f
}

// fits is socket.Fits with the identity of f asked of the kernel once.
func (s *Supervisor) fits(key config.ListenKey, f *os.File) error {
	if s.identities == nil {
		s.identities = make(map[*os.File]identified, len(s.inherited))
	}
	x, ok := s.identities[f]
	if !ok {
		x.id, x.err = socket.Identify(f)
		s.identities[f] = x
	}
	if x.err != nil {
		return x.err
	}
	return x.id.Fits(key)
}

// identified is an inherited socket's identity, or why it has none.
type identified struct {
	id  socket.Identity
	err error
}

// serveInherited serves svc on f, which fits it; nil when that fails
// (logged). It closes f either way.
func (s *Supervisor) serveInherited(svc *config.Service, f *os.File) *services.Listener {
	fd, name := fdOf(f), f.Name()
	sock, err := socket.FromFile(svc.Listen, f, svc.Backlog, svc.SocketMode) // closes f
	if err == nil && s.opts.Predecessor != nil && s.opts.Predecessor.OwnsFile(fd) {
		sock.RemoveFileOnClose()
	}
	if err == nil {
		var l *services.Listener
		if l, err = services.ListenOn(svc, sock, s.opts.Runtime, s.log); err == nil {
			s.log.Info("adopted", "service", svc.Name, "listen", svc.Listen.String(), "fd", fd, "name", name)
			if s.opts.Predecessor != nil {
				s.adopted(fd, l)
			}
			return l
		}
	}
	s.log.Error("adopt_failed", "service", svc.Name, "listen", svc.Listen.String(), "fd", fd, "name", name,
		"err", err, "doing", "binding the service's own socket")
	return nil
}

// waitHeld reports whether the old process of an upgrade may still use
// the socket it passed on fd: until it has sent its counts (synced) it
// takes clients on all of them; after, a wait-mode handler of it holds
// those it named, until it says they have exited or it has ended.
func (s *Supervisor) waitHeld(fd int) bool {
	return !s.synced || s.heldWait[fd]
}

// adoptDeferred serves the deferred sockets that the old process no
// longer uses, on the services waiting for them, and closes those no
// service wants now (a reload removed it meanwhile); the binds that
// such a socket blocked are tried again at once.
func (s *Supervisor) adoptDeferred() {
	now := time.Now()
	waiting := make(map[config.ListenKey]string, len(s.deferred))
	for name, p := range s.pending {
		if _, ok := s.deferred[p.svc.Listen]; ok {
			waiting[p.svc.Listen] = name
		}
	}
	closed := false
	for key, d := range s.deferred {
		name, ok := waiting[key]
		if s.waitHeld(d.fd) {
			if s.synced && !s.waitLogged[key] {
				s.waitLogged[key] = true
				s.log.Info("waiting_for_old_handler", "service", name, "listen", key.String(),
					"note", "a wait-mode handler of the old superd holds the socket: it is served once that one has exited")
			}
			continue
		}
		if ok {
			p := s.pending[name]
			delete(s.pending, name)
			if s.bind(p.svc) == nil {
				s.postpone(p.svc, firstRetry, now)
			}
		}
		if cur, ok := s.deferred[key]; ok && cur == d {
			delete(s.deferred, key)
			s.log.Warn("inherited_unused", "fd", d.fd, "name", d.f.Name(), "note", "no service fits it: closed")
			d.f.Close()
			closed = true
		}
	}
	if closed {
		// A bind may have failed on the socket just closed.
		for _, p := range s.pending {
			if _, ok := s.deferred[p.svc.Listen]; !ok {
				p.next = now
			}
		}
	}
	s.armRetry()
	s.publish()
}

// closeInherited closes the inherited sockets no service adopted, with a
// warning each: systemd passes a socket for a reason, so one that no
// service wants is a unit and configuration that disagree.
func (s *Supervisor) closeInherited() {
	for _, f := range s.inherited {
		s.log.Warn("inherited_unused", "fd", fdOf(f), "name", f.Name(), "note", "no service fits it: closed")
		f.Close()
	}
	s.inherited = nil
	s.identities = nil
}

// fdOf returns f's descriptor number for the log, without Fd's side
// effect of making it blocking; -1 if f is closed.
func fdOf(f *os.File) int {
	fd := -1
	if rc, err := f.SyscallConn(); err == nil {
		rc.Control(func(d uintptr) { fd = int(d) })
	}
	return fd
}
