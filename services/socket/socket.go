// Package socket is one bound socket of superd's, and the raw operations
// its serve loops need: bind (removing a stale unix socket file first),
// listen(2) again for a new backlog, a symlink-proof chmod of a unix
// socket, accept4 straight into a blocking close-on-exec descriptor for a
// handler, readiness waits that take nothing (wait mode), a blocking
// duplicate for a wait-mode handler, a peek at a datagram queue's head,
// and a deadline interrupt; and who is on the other end of an accepted
// connection (Peer), with the UCSPI variables a handler gets.
//
// The package deliberately starts no goroutine and does not loop, retry,
// log or decide anything: the services Listener that owns a Socket does.
package socket

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/superd/superd/config"
)

// Socket is one bound socket: a listening stream socket or a bound
// datagram socket. Whoever binds it closes it; in superd that is its
// Listener, which serves it from one goroutine, so that a reload that
// keeps a service's address keeps the socket and the connections waiting
// in its backlog. Its methods are safe to call from several goroutines,
// but a Socket is meant to have one user.
//
// Descriptors: lf (a stream socket) or pc (package net's datagram
// socket), and ln, a net.Listener on a duplicate of lf, all closed by
// Close. A TCP socket has ln only once Listener is called (a built-in
// serves it): one descriptor per listening socket, not two, because
// every handler start copies superd's descriptor table and every exec
// closes it again. DupBlocking and AcceptRaw return descriptors that the
// caller owns.
type Socket struct {
	key config.ListenKey
	pc  net.PacketConn // datagram sockets; nil for stream sockets
	// lf is a stream socket in Go's poller: a net.Listener's RawConn
	// cannot wait for readiness, and the raw accept needs that; nil for
	// datagram sockets.
	lf *os.File
	// addr is a stream socket's bound address.
	addr net.Addr
	// lnMu guards ln, made by Listener (at bind for a unix socket, whose
	// listener removes the socket file when it closes), and the
	// deadline setDeadline gave, which a new ln gets too.
	lnMu       sync.Mutex
	ln         net.Listener
	lnDeadline time.Time
	// local is the address connections arrive at when the socket is
	// bound to one address; invalid for wildcard and unix sockets.
	local netip.AddrPort
	// raw waits for readiness and runs raw system calls: lf's RawConn
	// for stream sockets, pc's for datagram sockets.
	raw syscall.RawConn

	closeOnce sync.Once
	closeErr  error
	closed    atomic.Bool // set before the descriptors close
	// removesFile is set when Close removes a unix socket's file: one
	// superd bound, not one systemd passed (systemd owns that file);
	// guarded by lnMu.
	removesFile bool
}

// Bind creates the socket for key. backlog zero keeps the system maximum;
// mode zero leaves a unix socket's mode as the umask made it. Its error
// is the system's, as package net reports it (address in use, say).
func Bind(key config.ListenKey, backlog int, mode os.FileMode) (*Socket, error) {
	return BindWith(key, backlog, mode, Options{})
}

// Options are the settings a socket takes before its bind; the zero
// value is a plain socket.
type Options struct {
	// ReusePort sets SO_REUSEPORT on a tcp or udp socket: every process
	// (of the same user) whose socket sets it too may bind the same
	// address, and the kernel spreads connections among them. A socket
	// without it cannot share its address, either way round: the later
	// bind fails with "address already in use".
	ReusePort bool
}

// BindWith is Bind with the options o.
func BindWith(key config.ListenKey, backlog int, mode os.FileMode, o Options) (*Socket, error) {
	s := &Socket{key: key}
	lc := o.listenConfig()
	var err error
	if key.Stream() {
		err = s.bindStream(lc)
	} else {
		err = s.bindPacket(lc)
	}
	if err != nil {
		return nil, err
	}
	if err := s.Reconfigure(backlog, mode); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// listenConfig is the net.ListenConfig that applies o.
func (o Options) listenConfig() *net.ListenConfig {
	lc := &net.ListenConfig{}
	if o.ReusePort {
		lc.Control = func(network, address string, c syscall.RawConn) error {
			if strings.HasPrefix(network, "unix") {
				return nil
			}
			var serr error
			if err := c.Control(func(fd uintptr) {
				serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
			}); err != nil {
				return err
			}
			if serr != nil {
				return fmt.Errorf("setting SO_REUSEPORT on %s: %w", address, os.NewSyscallError("setsockopt", serr))
			}
			return nil
		}
	}
	return lc
}

func (s *Socket) bindStream(lc *net.ListenConfig) error {
	if s.key.Network == "unix" {
		if err := removeStaleUnix(s.key.Address); err != nil {
			return err
		}
	}
	ln, err := lc.Listen(context.Background(), s.key.Network, s.key.Address)
	if err != nil {
		return err
	}
	// A unix socket's listener removes the socket file when it closes.
	s.removesFile = s.key.Network == "unix"
	return s.adoptListener(ln)
}

// adoptListener makes ln, a listening stream socket, the Socket's: its
// duplicate in Go's poller becomes lf, and a TCP ln closes (Listener
// makes another when a built-in needs one). It closes ln on failure.
func (s *Socket) adoptListener(ln net.Listener) error {
	lf, err := DupConn(ln.(syscall.Conn), s.key.String())
	if err != nil {
		ln.Close()
		return err
	}
	raw, err := lf.SyscallConn()
	if err != nil {
		ln.Close()
		lf.Close()
		return err
	}
	s.lf, s.raw, s.addr = lf, raw, ln.Addr()
	if a, ok := ln.Addr().(*net.TCPAddr); ok {
		if !a.IP.IsUnspecified() {
			ap := a.AddrPort()
			s.local = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
		}
		// lf holds the socket open.
		return ln.Close()
	}
	s.ln = ln
	return nil
}

// DupConn duplicates c's socket into a close-on-exec *os.File named
// name, keeping its flags (a non-blocking socket's duplicate is one that
// Go's poller watches), without net's File, which makes the socket
// blocking. The caller closes it.
func DupConn(c syscall.Conn, name string) (*os.File, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return nil, err
	}
	return dupRaw(rc, name)
}

// dupRaw is DupConn for a RawConn.
func dupRaw(rc syscall.RawConn, name string) (*os.File, error) {
	var nfd int
	var derr error
	if err := rc.Control(func(fd uintptr) { nfd, derr = unix.FcntlInt(fd, unix.F_DUPFD_CLOEXEC, 0) }); err != nil {
		return nil, err
	}
	if derr != nil {
		return nil, fmt.Errorf("dup socket %s: %w", name, derr)
	}
	return os.NewFile(uintptr(nfd), name), nil
}

func (s *Socket) bindPacket(lc *net.ListenConfig) error {
	if s.key.Network == "unixgram" {
		if err := removeStaleUnix(s.key.Address); err != nil {
			return err
		}
	}
	pc, err := lc.ListenPacket(context.Background(), s.key.Network, s.key.Address)
	if err != nil {
		return err
	}
	raw, err := pc.(syscall.Conn).SyscallConn()
	if err != nil {
		pc.Close()
		return err
	}
	s.pc, s.raw = pc, raw
	return nil
}

// removeStaleUnix removes a socket file left by a process that is gone,
// so that a crash does not keep a unix service down. A file that is not a
// socket, or a socket someone still listens on, is left alone and binding
// fails with "address already in use".
func removeStaleUnix(path string) error {
	fi, err := os.Lstat(path)
	if err != nil || fi.Mode()&os.ModeSocket == 0 {
		return nil
	}
	for _, network := range []string{"unix", "unixgram"} {
		c, err := net.DialTimeout(network, path, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		if !errors.Is(err, syscall.ECONNREFUSED) && !errors.Is(err, syscall.EPROTOTYPE) {
			return nil
		}
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove stale socket: %w", err)
	}
	return nil
}

// Key returns the socket's identity.
func (s *Socket) Key() config.ListenKey { return s.key }

// Addr returns the bound local address (useful when the port was 0).
func (s *Socket) Addr() net.Addr {
	if s.lf != nil {
		return s.addr
	}
	return s.pc.LocalAddr()
}

// Reconfigure applies the settings that can change without rebinding:
// the listen backlog (listen(2) again updates it) and a unix socket's mode.
func (s *Socket) Reconfigure(backlog int, mode os.FileMode) error {
	if s.lf != nil && backlog > 0 {
		var lerr error
		err := s.raw.Control(func(fd uintptr) { lerr = unix.Listen(int(fd), backlog) })
		if err = errors.Join(err, lerr); err != nil {
			return fmt.Errorf("set backlog %d: %w", backlog, err)
		}
	}
	if mode != 0 && (s.key.Network == "unix" || s.key.Network == "unixgram") {
		if err := chmodSocket(s.key.Address, mode); err != nil {
			return fmt.Errorf("set socket mode: %w", err)
		}
	}
	return nil
}

// Chown gives a unix socket's file the owner uid and group gid (-1
// leaves one as it is), as systemd's SocketUser= and SocketGroup= do, and
// only that socket file: the change goes through an O_PATH descriptor of
// it, never through a path a symlink could redirect. Other sockets, and
// uid = gid = -1, are left alone.
func (s *Socket) Chown(uid, gid int) error {
	if (uid < 0 && gid < 0) || (s.key.Network != "unix" && s.key.Network != "unixgram") {
		return nil
	}
	fd, err := openSocketFile(s.key.Address)
	if err != nil {
		return fmt.Errorf("set socket owner: %w", err)
	}
	defer unix.Close(fd)
	if err := unix.Fchownat(fd, "", uid, gid, unix.AT_EMPTY_PATH); err != nil {
		return fmt.Errorf("set socket owner: %w", &os.PathError{Op: "chown", Path: s.key.Address, Err: err})
	}
	return nil
}

// openSocketFile opens the socket file at path as an O_PATH descriptor,
// without following a symlink, and checks that it is still a socket.
// The caller closes it.
func openSocketFile(path string) (int, error) {
	fd, err := unix.Open(path, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, &os.PathError{Op: "open", Path: path, Err: err}
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return -1, &os.PathError{Op: "stat", Path: path, Err: err}
	}
	if st.Mode&unix.S_IFMT != unix.S_IFSOCK {
		unix.Close(fd)
		return -1, fmt.Errorf("%s is no longer a socket: not changing it", path)
	}
	return fd, nil
}

// chmodSocket changes the mode of the socket file at path, and of
// nothing else: not what a symlink planted in its place points to (root
// would otherwise chmod any file for whoever can write the folder).
func chmodSocket(path string, mode os.FileMode) error {
	fd, err := openSocketFile(path)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	// An O_PATH descriptor cannot fchmod; its /proc link reaches the
	// very inode it holds.
	if err := unix.Chmod(fmt.Sprintf("/proc/self/fd/%d", fd), uint32(mode.Perm())); err != nil {
		return &os.PathError{Op: "chmod", Path: path, Err: err}
	}
	return nil
}

// Close closes the socket; it is safe to call more than once. Blocked
// Accept, ReadFrom and readiness waits return net.ErrClosed.
func (s *Socket) Close() error {
	s.closeOnce.Do(func() {
		s.closed.Store(true)
		if s.lf != nil {
			s.lnMu.Lock()
			if s.ln != nil {
				s.closeErr = s.ln.Close()
			}
			s.lnMu.Unlock()
			s.closeErr = errors.Join(s.lf.Close(), s.closeErr)
		} else {
			s.closeErr = s.pc.Close()
		}
	})
	return s.closeErr
}

// CloseKeepFile is Close, except that a unix socket's file stays where
// it is: another process serves the socket it names (the new superd of
// an upgrade).
func (s *Socket) CloseKeepFile() error {
	s.setRemovesFile(false)
	return s.Close()
}

// RemovesFile reports whether Close removes the unix socket's file:
// superd bound it (or took it over from a superd that did, see
// RemoveFileOnClose).
func (s *Socket) RemovesFile() bool {
	s.lnMu.Lock()
	defer s.lnMu.Unlock()
	return s.removesFile
}

// RemoveFileOnClose makes Close remove a unix socket's file, as for one
// superd bound: the new process of an upgrade owns the files the old
// one bound. It does nothing for other sockets.
func (s *Socket) RemoveFileOnClose() { s.setRemovesFile(true) }

func (s *Socket) setRemovesFile(on bool) {
	s.lnMu.Lock()
	defer s.lnMu.Unlock()
	if u, ok := s.ln.(*net.UnixListener); ok {
		u.SetUnlinkOnClose(on)
		s.removesFile = on
	}
}

// Dup returns a close-on-exec duplicate of the socket, named name, to
// hand to another process; the caller closes it.
func (s *Socket) Dup(name string) (*os.File, error) { return dupRaw(s.raw, name) }

// Closed reports whether Close has been called.
func (s *Socket) Closed() bool { return s.closed.Load() }

// Listener is the stream socket as a net.Listener (nil for a datagram
// socket), for in-process services that want net.Conns. Do not close it:
// Close does.
func (s *Socket) Listener() net.Listener {
	if s.lf == nil {
		return nil
	}
	s.lnMu.Lock()
	defer s.lnMu.Unlock()
	if s.ln == nil {
		ln, err := s.newListener()
		if err != nil {
			return failedListener{err: fmt.Errorf("listener for %s: %w", s.key, err), addr: s.addr}
		}
		if !s.lnDeadline.IsZero() {
			if d, ok := ln.(interface{ SetDeadline(time.Time) error }); ok {
				d.SetDeadline(s.lnDeadline)
			}
		}
		s.ln = ln
	}
	return s.ln
}

// newListener makes a net.Listener on a duplicate of lf. The duplicate
// is made here rather than by net.FileListener(lf), which would switch
// lf, shared with the raw accept, to blocking mode.
func (s *Socket) newListener() (net.Listener, error) {
	if s.closed.Load() {
		return nil, net.ErrClosed
	}
	tmp, err := DupConn(s.lf, s.key.String())
	if err != nil {
		return nil, err
	}
	defer tmp.Close()
	return net.FileListener(tmp)
}

// failedListener is what Listener returns when it cannot make one: its
// Accept fails with the reason.
type failedListener struct {
	err  error
	addr net.Addr
}

func (f failedListener) Accept() (net.Conn, error) { return nil, f.err }
func (f failedListener) Close() error              { return nil }
func (f failedListener) Addr() net.Addr            { return f.addr }

// PacketConn is the datagram socket as a net.PacketConn (nil for a
// stream socket). Do not close it: Close does.
func (s *Socket) PacketConn() net.PacketConn { return s.pc }

// Interrupt makes a blocked Accept, ReadFrom or readiness wait, and every
// later one, return os.ErrDeadlineExceeded without closing the socket,
// until ClearInterrupt: the way a Listener ends the loop of a mode the
// socket leaves, keeping the clients in its backlog.
func (s *Socket) Interrupt() { s.setDeadline(time.Unix(1, 0)) }

// ClearInterrupt undoes Interrupt.
func (s *Socket) ClearInterrupt() { s.setDeadline(time.Time{}) }

func (s *Socket) setDeadline(t time.Time) {
	switch {
	case s.lf != nil:
		s.lf.SetReadDeadline(t)
		s.lnMu.Lock()
		s.lnDeadline = t
		if d, ok := s.ln.(interface{ SetDeadline(time.Time) error }); ok {
			d.SetDeadline(t)
		}
		s.lnMu.Unlock()
	default:
		s.pc.SetReadDeadline(t)
	}
}

// SetNonblock puts the shared file description back in non-blocking
// mode: handlers started in wait mode get it blocking and may leave it
// either way, and readiness waits and accepts need it non-blocking.
func (s *Socket) SetNonblock() error {
	var serr error
	err := s.raw.Control(func(fd uintptr) { serr = unix.SetNonblock(int(fd), true) })
	return errors.Join(err, serr)
}

// WaitReadable blocks until the socket has a connection or datagram
// waiting, without taking it: in wait mode the handler takes it.
func (s *Socket) WaitReadable() error {
	return s.rawErr(s.raw.Read(func(fd uintptr) bool {
		pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		n, err := unix.Poll(pfd, 0)
		return err == nil && n > 0
	}))
}

// rawErr reports a raw wait that failed because Close closed the socket
// as net.ErrClosed, as package net does: the poller's own error for a
// closed file is unexported.
func (s *Socket) rawErr(err error) error {
	if err != nil && s.closed.Load() {
		return net.ErrClosed
	}
	return err
}

// QueueHead fingerprints what waits first on a datagram socket without
// taking it: the first datagram's sender, length, first bytes and kernel
// receive time (so that identical datagrams, a client's retransmissions
// say, still differ). "" means nothing waits. ok is false when the
// socket cannot tell: stream sockets, whose accept queue shows only a
// length, and a length cannot tell a handler that took a connection
// while another came from one that took none.
func (s *Socket) QueueHead() (head string, ok bool) {
	if s.pc == nil {
		return "", false
	}
	err := s.raw.Control(func(fd uintptr) { head, ok = peekHead(int(fd)) })
	return head, ok && err == nil
}

// peekHead peeks at the first datagram on fd. The receive time is asked
// for only around the peek, while superd holds the socket: a handler
// never gets control messages it did not ask for. A datagram that came
// while it was off is stamped at its first peek, and keeps that stamp.
func peekHead(fd int) (string, bool) {
	if unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TIMESTAMPNS, 1) != nil {
		return "", false
	}
	defer unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TIMESTAMPNS, 0)
	var buf [64]byte
	oob := make([]byte, unix.CmsgSpace(16))
	n, oobn, _, from, err := unix.Recvmsg(fd, buf[:], oob, unix.MSG_PEEK|unix.MSG_DONTWAIT|unix.MSG_TRUNC)
	switch {
	case err == unix.EAGAIN:
		return "", true
	case err != nil:
		return "", false
	}
	return fmt.Sprintf("%v/%d/%q/%x", from, n, buf[:min(n, len(buf))], oob[:oobn]), true
}

// AcceptRaw accepts one connection as a blocking, close-on-exec
// descriptor that never enters Go's poller: it goes to a handler as is,
// with no dup and no mode change. The caller owns fd; Describe tells who
// is at sa.
func (s *Socket) AcceptRaw() (fd int, sa syscall.Sockaddr, err error) {
	rerr := s.raw.Read(func(lfd uintptr) bool {
		for {
			// syscall's, not x/sys's: that one asks SO_PROTOCOL of
			// every connection.
			fd, sa, err = syscall.Accept4(int(lfd), syscall.SOCK_CLOEXEC)
			switch err {
			case unix.EINTR, unix.ECONNABORTED:
				continue
			case unix.EAGAIN:
				return false
			}
			return true
		}
	})
	if rerr != nil {
		return -1, nil, s.rawErr(rerr)
	}
	if err != nil {
		return -1, nil, os.NewSyscallError("accept4", err)
	}
	return fd, sa, nil
}

// DupBlocking returns a blocking close-on-exec duplicate of the socket,
// for a wait-mode handler's stdin and stdout. The caller closes it. The
// blocking flag lives on the shared file description, so the socket
// itself is blocking until SetNonblock.
func (s *Socket) DupBlocking() (*os.File, error) {
	var nfd int
	var derr error
	err := s.raw.Control(func(fd uintptr) {
		nfd, derr = unix.FcntlInt(fd, unix.F_DUPFD_CLOEXEC, 0)
		if derr == nil {
			if derr = unix.SetNonblock(nfd, false); derr != nil {
				unix.Close(nfd)
			}
		}
	})
	if err = errors.Join(err, derr); err != nil {
		return nil, fmt.Errorf("dup socket: %w", err)
	}
	return os.NewFile(uintptr(nfd), s.key.String()), nil
}
