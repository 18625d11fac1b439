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
// After an upgrade, a wait-mode service's socket is deferred (true)
// rather than adopted until the old process has said that none of its
// wait-mode handlers holds it (see deferred).
func (s *Supervisor) adopt(svc *config.Service) (l *services.Listener, deferred bool) {
	f, ok := s.deferred[svc.Listen]
	switch {
	case ok && s.waitHeld(svc.Listen):
		return nil, true
	case ok:
		delete(s.deferred, svc.Listen)
	default:
		if f = s.takeInherited(svc); f == nil {
			return nil, false
		}
		if s.opts.Predecessor != nil && services.ModeOf(svc) == services.ModeWait && s.waitHeld(svc.Listen) {
			s.deferred[svc.Listen] = f
			return nil, true
		}
	}
	return s.serveInherited(svc, f), false
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
	// Until the old process of an upgrade has handed over, the socket is
	// still its own as it set it: the backlog, mode and owner of this
	// configuration wait for synced (takeOver), so that an upgrade that
	// fails leaves the old process's sockets exactly as they were.
	asIs := s.opts.Predecessor != nil && !s.synced
	backlog, mode, as := svc.Backlog, svc.SocketMode, svc
	if asIs {
		c := *svc
		c.Backlog, c.SocketMode, c.SocketOwner = 0, 0, config.SocketOwner{}
		backlog, mode, as = 0, 0, &c // zero: leave them
	}
	sock, err := socket.FromFile(svc.Listen, f, backlog, mode) // closes f
	if err == nil && s.opts.Predecessor != nil && s.opts.Predecessor.OwnsFile(fd) {
		sock.RemoveFileOnClose()
	}
	if err == nil {
		var l *services.Listener
		if l, err = services.ListenOn(as, sock, s.opts.Runtime, s.log); err == nil {
			s.log.Info("adopted", "service", svc.Name, "listen", svc.Listen.String(), "fd", fd, "name", name)
			if asIs {
				s.asIs = append(s.asIs, settled{l, svc})
			}
			return l
		}
	}
	s.log.Error("adopt_failed", "service", svc.Name, "listen", svc.Listen.String(), "fd", fd, "name", name,
		"err", err, "doing", "binding the service's own socket")
	return nil
}

// settled is a Listener adopted from the old process of an upgrade with
// the socket as that one set it, and the service whose backlog, mode and
// owner it takes once the old process has handed over.
type settled struct {
	l   *services.Listener
	svc *config.Service
}

// applyAsIs gives the Listeners adopted as they were their own settings
// (backlog, socket mode and owner): the old process has handed over.
func (s *Supervisor) applyAsIs() {
	for _, a := range s.asIs {
		if s.listeners[a.svc.Listen] != a.l {
			continue
		}
		if err := a.l.Update(a.svc); err != nil {
			s.log.Error("update_failed", "service", a.svc.Name, "listen", a.svc.Listen.String(), "err", err,
				"keeping", "the socket's backlog, mode and owner as the old process set them")
		}
	}
	s.asIs = nil
}

// waitHeld reports whether a wait-mode handler of the old process of
// an upgrade may hold the socket of key: until the old process has sent
// its counts (synced), any may; after, those it named, until it says
// they have exited or it has ended.
func (s *Supervisor) waitHeld(key config.ListenKey) bool {
	return !s.synced || s.heldWait[key.String()]
}

// adoptDeferred serves the deferred sockets that no wait-mode handler of
// the old process holds any more, on the services waiting for them, and
// closes those no service wants now (a reload removed it meanwhile).
func (s *Supervisor) adoptDeferred() {
	now := time.Now()
	for key, f := range s.deferred {
		if s.waitHeld(key) {
			if s.synced && !s.waitLogged[key] {
				s.waitLogged[key] = true
				name := ""
				for _, p := range s.pending {
					if p.svc.Listen == key {
						name = p.svc.Name
					}
				}
				s.log.Info("waiting_for_old_handler", "service", name, "listen", key.String(),
					"note", "a wait-mode handler of the old superd holds the socket: it is served once that one has exited")
			}
			continue
		}
		for name, p := range s.pending {
			if p.svc.Listen != key {
				continue
			}
			delete(s.pending, name)
			if s.bind(p.svc) == nil {
				s.postpone(p.svc, firstRetry, now)
			}
			break
		}
		if s.deferred[key] == f {
			delete(s.deferred, key)
			s.log.Warn("inherited_unused", "fd", fdOf(f), "name", f.Name(), "note", "no service fits it: closed")
			f.Close()
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
