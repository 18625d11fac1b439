package supervisor

import (
	"context"
	"log/slog"
	"os"
	"slices"

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
func (s *Supervisor) adopt(svc *config.Service) *services.Listener {
	if len(s.inherited) == 0 {
		return nil
	}
	i := slices.IndexFunc(s.inherited, func(f *os.File) bool { return f.Name() == svc.Name })
	if i >= 0 {
		f := s.inherited[i]
		if err := socket.Fits(svc.Listen, f); err != nil {
			s.inherited = slices.Delete(s.inherited, i, i+1)
			level := slog.LevelError
			if s.opts.Predecessor != nil {
				// After an upgrade: the configuration moved the service.
				level = slog.LevelInfo
			}
			s.log.Log(context.Background(), level, "inherited_mismatch", "service", svc.Name, "listen", svc.Listen.String(),
				"fd", fdOf(f), "name", f.Name(), "err", err, "doing", "closing it and binding the service's own socket")
			f.Close()
			i = -1
		}
	}
	if i < 0 {
		i = slices.IndexFunc(s.inherited, func(f *os.File) bool { return socket.Fits(svc.Listen, f) == nil })
	}
	if i < 0 {
		return nil
	}
	f := s.inherited[i]
	s.inherited = slices.Delete(s.inherited, i, i+1)
	fd, name := fdOf(f), f.Name()
	sock, err := socket.FromFile(svc.Listen, f, svc.Backlog, svc.SocketMode) // closes f
	if err == nil && s.opts.Predecessor != nil && s.opts.Predecessor.OwnsFile(fd) {
		sock.RemoveFileOnClose()
	}
	if err == nil {
		var l *services.Listener
		if l, err = services.ListenOn(svc, sock, s.opts.Runtime, s.log); err == nil {
			s.log.Info("adopted", "service", svc.Name, "listen", svc.Listen.String(), "fd", fd, "name", name)
			return l
		}
	}
	s.log.Error("adopt_failed", "service", svc.Name, "listen", svc.Listen.String(), "fd", fd, "name", name,
		"err", err, "doing", "binding the service's own socket")
	return nil
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
