package socket

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/superd/superd/config"
	"github.com/superd/superd/internal/testkit"
)

// testTimeout bounds every wait in these tests: a bound for "never".
const testTimeout = testkit.Timeout

// bindSock binds a socket and closes it at cleanup.
func bindSock(t *testing.T, network, address string) *Socket {
	t.Helper()
	s, err := Bind(config.ListenKey{Network: network, Address: address}, 0, 0)
	if err != nil {
		t.Fatalf("Bind(%s, %s): %v", network, address, err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// dial connects to addr with a deadline for the whole exchange.
func dial(t *testing.T, network, addr string) net.Conn {
	t.Helper()
	return testkit.DialNetwork(t, network, addr)
}

// sockDir returns a directory whose paths fit in a sockaddr_un.
func sockDir(t *testing.T) string {
	t.Helper()
	if d := t.TempDir(); len(d) < 80 {
		return d
	}
	d, err := os.MkdirTemp("", "sd")
	if err != nil {
		t.Fatalf("MkdirTemp: %v", err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

// fdFlags returns the F_GETFL flags of the socket's shared file
// description. It goes through the RawConn, since (*os.File).Fd would
// itself make the descriptor blocking.
func fdFlags(t *testing.T, s *Socket) int {
	t.Helper()
	var fl int
	var ferr error
	if err := s.raw.Control(func(fd uintptr) { fl, ferr = unix.FcntlInt(fd, unix.F_GETFL, 0) }); err != nil || ferr != nil {
		t.Fatalf("F_GETFL on %s: %v %v", s.Key(), err, ferr)
	}
	return fl
}

// apOf is a TCP address as netip.AddrPort, IPv4 unmapped.
func apOf(a net.Addr) netip.AddrPort {
	ap := a.(*net.TCPAddr).AddrPort()
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

func rawFlags(t *testing.T, fd int) (fl, fdfl int) {
	t.Helper()
	fl, err := unix.FcntlInt(uintptr(fd), unix.F_GETFL, 0)
	if err != nil {
		t.Fatalf("F_GETFL %d: %v", fd, err)
	}
	fdfl, err = unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0)
	if err != nil {
		t.Fatalf("F_GETFD %d: %v", fd, err)
	}
	return fl, fdfl
}

// acceptAsync runs acceptRaw in a goroutine.
type acceptResult struct {
	fd   int
	peer syscall.Sockaddr
	err  error
}

func acceptAsync(s *Socket) chan acceptResult {
	ch := make(chan acceptResult, 1)
	go func() {
		fd, sa, err := s.AcceptRaw()
		ch <- acceptResult{fd, sa, err}
	}()
	return ch
}

func awaitAccept(t *testing.T, ch chan acceptResult) acceptResult {
	t.Helper()
	select {
	case r := <-ch:
		if r.err == nil {
			t.Cleanup(func() { unix.Close(r.fd) })
		}
		return r
	case <-time.After(testTimeout):
		t.Fatalf("acceptRaw still blocked after %v", testTimeout)
	}
	panic("unreachable")
}

func TestBindTCP(t *testing.T) {
	s := bindSock(t, "tcp", "127.0.0.1:0")
	if got := s.Key(); got != (config.ListenKey{Network: "tcp", Address: "127.0.0.1:0"}) {
		t.Errorf("Key() = %v, want tcp/127.0.0.1:0", got)
	}
	a, ok := s.Addr().(*net.TCPAddr)
	if !ok || !a.IP.Equal(net.IPv4(127, 0, 0, 1)) || a.Port == 0 {
		t.Fatalf("Addr() = %v, want 127.0.0.1 with the port the kernel chose", s.Addr())
	}
	if fdFlags(t, s)&unix.O_NONBLOCK == 0 {
		t.Errorf("a bound socket is blocking, want non-blocking for the poller")
	}

	c := dial(t, "tcp", s.Addr().String())
	r := awaitAccept(t, acceptAsync(s))
	if r.err != nil {
		t.Fatalf("acceptRaw: %v", r.err)
	}
	fl, fdfl := rawFlags(t, r.fd)
	if fl&unix.O_NONBLOCK != 0 {
		t.Errorf("accepted fd has O_NONBLOCK set, want a blocking descriptor for the handler")
	}
	if fdfl&unix.FD_CLOEXEC == 0 {
		t.Errorf("accepted fd lacks FD_CLOEXEC, want it so no other handler inherits it")
	}
	if fdFlags(t, s)&unix.O_NONBLOCK == 0 {
		t.Errorf("the listening socket became blocking after acceptRaw")
	}
	peerAddr, _ := addrPort(r.peer)
	if want := apOf(c.LocalAddr()); peerAddr != want {
		t.Errorf("acceptRaw peer = %v, want the client's address %v", peerAddr, want)
	}

	p := describeAt(r.fd, r.peer, netip.AddrPort{})
	want := Peer{Proto: "TCP", Local: apOf(s.Addr()), Remote: apOf(c.LocalAddr())}
	if p.Proto != want.Proto || p.Local != want.Local || p.Remote != want.Remote || p.Cred != nil {
		t.Errorf("describe = %+v, want %+v", *p, want)
	}

	// The fd is the connection itself.
	if _, err := unix.Write(r.fd, []byte("hi")); err != nil {
		t.Fatalf("write to accepted fd: %v", err)
	}
	buf := make([]byte, 2)
	if _, err := c.Read(buf); err != nil || string(buf) != "hi" {
		t.Errorf("client read %q, %v; want hi", buf, err)
	}
}

func TestBindTCP6Mapped(t *testing.T) {
	// A dual-stack socket reports an IPv4 client with a mapped address;
	// describe must turn it back into the IPv4 address.
	s, err := Bind(config.ListenKey{Network: "tcp", Address: "[::]:0"}, 0, 0)
	if err != nil {
		t.Skipf("no dual-stack IPv6 socket: %v", err)
	}
	defer s.Close()
	port := s.Addr().(*net.TCPAddr).Port
	c := dial(t, "tcp4", netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(port)).String())
	r := awaitAccept(t, acceptAsync(s))
	if r.err != nil {
		t.Fatalf("acceptRaw: %v", r.err)
	}
	if _, ok := r.peer.(*syscall.SockaddrInet6); !ok {
		t.Fatalf("peer is %T, want a SockaddrInet6 from a dual-stack socket", r.peer)
	}
	p := describeAt(r.fd, r.peer, netip.AddrPort{})
	if want := apOf(c.LocalAddr()); p.Remote != want || !p.Local.Addr().Is4() {
		t.Errorf("describe = remote %v local %v, want remote %v and an IPv4 local address", p.Remote, p.Local, want)
	}
}

func TestBindUDP(t *testing.T) {
	s := bindSock(t, "udp", "127.0.0.1:0")
	if s.Key().Stream() || s.ln != nil || s.pc == nil {
		t.Fatalf("udp socket: ln=%v pc=%v, want a PacketConn only", s.ln, s.pc)
	}
	a, ok := s.Addr().(*net.UDPAddr)
	if !ok || a.Port == 0 {
		t.Fatalf("Addr() = %v, want a UDP address with a port", s.Addr())
	}
	// Reconfigure ignores the backlog of a datagram socket.
	if err := s.Reconfigure(16, 0); err != nil {
		t.Errorf("Reconfigure(16, 0) on udp: %v", err)
	}
}

// TestWaitReadable checks that waitReadable waits while nothing is
// queued, returns when a datagram is, and leaves it for the handler.
func TestWaitReadable(t *testing.T) {
	s := bindSock(t, "udp", "127.0.0.1:0")

	// Nothing queued: it waits, until interrupt ends the wait.
	done := make(chan error, 1)
	go func() { done <- s.WaitReadable() }()
	s.Interrupt()
	select {
	case err := <-done:
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("waitReadable on an empty socket = %v, want os.ErrDeadlineExceeded after interrupt", err)
		}
	case <-time.After(testTimeout):
		t.Fatalf("waitReadable did not return after interrupt")
	}
	s.ClearInterrupt()

	go func() { done <- s.WaitReadable() }()
	c := dial(t, "udp", s.Addr().String())
	if _, err := c.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("waitReadable with a datagram queued = %v, want nil", err)
		}
	case <-time.After(testTimeout):
		t.Fatalf("waitReadable did not return with a datagram queued")
	}
	// The datagram is still there, and a second wait returns at once.
	if err := s.WaitReadable(); err != nil {
		t.Fatalf("second waitReadable = %v", err)
	}
	s.pc.SetReadDeadline(time.Now().Add(testTimeout))
	buf := make([]byte, 16)
	n, _, err := s.pc.ReadFrom(buf)
	if err != nil || string(buf[:n]) != "ping" {
		t.Errorf("ReadFrom after waitReadable = %q, %v; want the datagram ping", buf[:n], err)
	}
}

// TestWaitReadableStream checks that a pending connection makes a
// listening socket readable without being accepted.
func TestWaitReadableStream(t *testing.T) {
	s := bindSock(t, "tcp", "127.0.0.1:0")
	c := dial(t, "tcp", s.Addr().String())
	if err := s.WaitReadable(); err != nil {
		t.Fatalf("waitReadable with a pending connection: %v", err)
	}
	r := awaitAccept(t, acceptAsync(s))
	if r.err != nil {
		t.Fatalf("acceptRaw after waitReadable: %v", r.err)
	}
	if p, _ := addrPort(r.peer); p != apOf(c.LocalAddr()) {
		t.Errorf("accepted %v, want the pending client %v", p, c.LocalAddr())
	}
}

func TestBindUnix(t *testing.T) {
	dir := sockDir(t)
	path := filepath.Join(dir, "s")
	s, err := Bind(config.ListenKey{Network: "unix", Address: path}, 0, 0o600)
	if err != nil {
		t.Fatalf("Bind unix: %v", err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != 0o600 {
		t.Errorf("socket file mode = %v, want a socket with 0600", fi.Mode())
	}
	if err := s.Reconfigure(0, 0o660); err != nil {
		t.Fatalf("Reconfigure mode 0660: %v", err)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o660 {
		t.Errorf("mode after Reconfigure = %v, want 0660", fi.Mode().Perm())
	}

	c := dial(t, "unix", path)
	r := awaitAccept(t, acceptAsync(s))
	if r.err != nil {
		t.Fatalf("acceptRaw: %v", r.err)
	}
	p := describeAt(r.fd, r.peer, netip.AddrPort{})
	if p.Proto != "UNIX" || p.Cred == nil {
		t.Fatalf("describe = %+v, want UNIX with peer credentials", *p)
	}
	if int(p.Cred.Pid) != os.Getpid() || int(p.Cred.Uid) != os.Geteuid() || int(p.Cred.Gid) != os.Getegid() {
		t.Errorf("peer credentials = %+v, want this process (pid %d uid %d gid %d)", *p.Cred, os.Getpid(), os.Geteuid(), os.Getegid())
	}
	c.Close()

	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if _, err := os.Lstat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket file after Close: %v, want it removed", err)
	}
}

// TestBindUnixStale checks that a socket file nobody listens on is
// replaced, while a live socket or a non-socket file is left alone and
// Bind fails.
func TestBindUnixStale(t *testing.T) {
	for _, network := range []string{"unix", "unixgram"} {
		t.Run(network, func(t *testing.T) {
			dir := sockDir(t)
			key := func(name string) config.ListenKey {
				return config.ListenKey{Network: network, Address: filepath.Join(dir, name)}
			}

			// Stale: a listener that is gone left its file.
			stale := key("stale")
			leaveStale(t, network, stale.Address)
			s, err := Bind(stale, 0, 0)
			if err != nil {
				t.Fatalf("Bind over a stale socket file: %v", err)
			}
			checkUnixWorks(t, network, s)
			s.Close()

			// Live: someone still listens there.
			live := key("live")
			closeLive := listenUnix(t, network, live.Address)
			if s, err := Bind(live, 0, 0); !errors.Is(err, syscall.EADDRINUSE) {
				if s != nil {
					s.Close()
				}
				t.Fatalf("Bind over a live socket = %v, want EADDRINUSE", err)
			}
			if _, err := os.Lstat(live.Address); err != nil {
				t.Fatalf("live socket file after the failed Bind: %v, want it kept", err)
			}
			if c, err := net.Dial(network, live.Address); err != nil {
				t.Errorf("the live socket no longer answers after the failed Bind: %v", err)
			} else {
				c.Close()
			}
			closeLive()

			// Not a socket: never removed.
			plain := key("plain")
			if err := os.WriteFile(plain.Address, []byte("data"), 0o644); err != nil {
				t.Fatal(err)
			}
			if s, err := Bind(plain, 0, 0); err == nil {
				s.Close()
				t.Fatalf("Bind over a regular file succeeded, want an error")
			}
			if b, err := os.ReadFile(plain.Address); err != nil || string(b) != "data" {
				t.Errorf("regular file after Bind: %q, %v; want it untouched", b, err)
			}
		})
	}
}

// leaveStale binds a socket at path and closes it without removing the
// file, as a crashed process would.
func leaveStale(t *testing.T, network, path string) {
	t.Helper()
	if network == "unix" {
		ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
		if err != nil {
			t.Fatal(err)
		}
		ln.SetUnlinkOnClose(false)
		ln.Close()
	} else {
		c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
		if err != nil {
			t.Fatal(err)
		}
		c.Close()
	}
	if fi, err := os.Lstat(path); err != nil || fi.Mode()&os.ModeSocket == 0 {
		t.Fatalf("stale socket file %s: %v %v", path, fi, err)
	}
}

// listenUnix binds a live socket of another owner at path.
func listenUnix(t *testing.T, network, path string) (closeIt func()) {
	t.Helper()
	var c interface{ Close() error }
	var err error
	if network == "unix" {
		c, err = net.Listen("unix", path)
	} else {
		c, err = net.ListenPacket("unixgram", path)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return func() { c.Close() }
}

// checkUnixWorks checks that a client reaches the socket s.
func checkUnixWorks(t *testing.T, network string, s *Socket) {
	t.Helper()
	if network == "unix" {
		dial(t, "unix", s.Key().Address)
		r := awaitAccept(t, acceptAsync(s))
		if r.err != nil {
			t.Fatalf("acceptRaw on the rebound socket: %v", r.err)
		}
		return
	}
	c := dial(t, "unixgram", s.Key().Address)
	if _, err := c.Write([]byte("x")); err != nil {
		t.Fatalf("send to the rebound socket: %v", err)
	}
	if err := s.WaitReadable(); err != nil {
		t.Fatalf("waitReadable on the rebound socket: %v", err)
	}
}

// TestReconfigureBacklog checks that Reconfigure's listen(2) changes the
// accept queue of a bound socket: with backlog 1 the kernel queues two
// connections and drops the next SYN; a larger backlog lets it in.
func TestReconfigureBacklog(t *testing.T) {
	s, err := Bind(config.ListenKey{Network: "tcp", Address: "127.0.0.1:0"}, 1, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	addr := s.Addr().String()
	for range 2 {
		dial(t, "tcp", addr)
	}
	if c, err := net.DialTimeout("tcp", addr, 300*time.Millisecond); err == nil {
		c.Close()
		t.Fatalf("a third connection with backlog 1 was queued, want its SYN dropped")
	}
	if err := s.Reconfigure(64, 0); err != nil {
		t.Fatalf("Reconfigure(64): %v", err)
	}
	if c, err := net.DialTimeout("tcp", addr, 300*time.Millisecond); err != nil {
		t.Fatalf("dial after Reconfigure(64): %v, want the connection queued", err)
	} else {
		c.Close()
	}
}

// TestCloseIdempotent checks that Close can be called twice and ends a
// blocked wait with the error its doc promises.
func TestCloseIdempotent(t *testing.T) {
	for _, network := range []string{"tcp", "udp"} {
		t.Run(network, func(t *testing.T) {
			s, err := Bind(config.ListenKey{Network: network, Address: "127.0.0.1:0"}, 0, 0)
			if err != nil {
				t.Fatal(err)
			}
			blocked := make(chan error, 1)
			if network == "tcp" {
				go func() { _, _, err := s.AcceptRaw(); blocked <- err }()
			} else {
				go func() { blocked <- s.WaitReadable() }()
			}
			if err := s.Close(); err != nil {
				t.Fatalf("first Close: %v", err)
			}
			if err := s.Close(); err != nil {
				t.Fatalf("second Close: %v, want nil again", err)
			}
			if !s.closed.Load() {
				t.Errorf("closed flag not set after Close")
			}
			if network == "tcp" {
				if c, err := net.DialTimeout(network, s.Addr().String(), time.Second); err == nil {
					c.Close()
					t.Errorf("dial after Close succeeded, want refused")
				}
			}
			select {
			case err := <-blocked:
				if !errors.Is(err, net.ErrClosed) && !errors.Is(err, os.ErrClosed) {
					t.Errorf("blocked wait after Close = %v (%T), want net.ErrClosed or os.ErrClosed as Close's doc says", err, err)
				}
			case <-time.After(testTimeout):
				t.Fatalf("blocked wait did not end on Close")
			}
		})
	}
}

// TestInterrupt checks that interrupt ends a blocked acceptRaw with
// os.ErrDeadlineExceeded without closing the socket, and that
// clearInterrupt makes it accept again: how a Listener's mode change
// ends the old mode's loop and keeps the clients in the backlog.
func TestInterrupt(t *testing.T) {
	s := bindSock(t, "tcp", "127.0.0.1:0")
	ch := acceptAsync(s)
	s.Interrupt()
	if r := awaitAccept(t, ch); !errors.Is(r.err, os.ErrDeadlineExceeded) {
		t.Fatalf("blocked acceptRaw after interrupt = %v, want os.ErrDeadlineExceeded", r.err)
	}
	// Still interrupted: returns at once even with a client waiting.
	c := dial(t, "tcp", s.Addr().String())
	if r := awaitAccept(t, acceptAsync(s)); !errors.Is(r.err, os.ErrDeadlineExceeded) {
		t.Fatalf("acceptRaw while interrupted = fd %d, %v; want os.ErrDeadlineExceeded", r.fd, r.err)
	}
	s.ClearInterrupt()
	r := awaitAccept(t, acceptAsync(s))
	if r.err != nil {
		t.Fatalf("acceptRaw after clearInterrupt: %v", r.err)
	}
	if p, _ := addrPort(r.peer); p != apOf(c.LocalAddr()) {
		t.Errorf("accepted %v, want the client that waited through the interrupt %v", p, c.LocalAddr())
	}
	// The net.Listener (built-in services) is interrupted as well, also
	// when it is made after the interrupt.
	s.Interrupt()
	if _, err := s.Listener().Accept(); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("Listener.Accept while interrupted = %v, want os.ErrDeadlineExceeded", err)
	}
	s.ClearInterrupt()
	s.Interrupt()
	if _, err := s.Listener().Accept(); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("Listener.Accept while interrupted again = %v, want os.ErrDeadlineExceeded", err)
	}
	s.ClearInterrupt()
}

// TestOneDescriptorPerTCPSocket checks that a bound TCP socket holds one
// descriptor until a built-in asks for its net.Listener: every handler
// start copies superd's descriptor table.
func TestOneDescriptorPerTCPSocket(t *testing.T) {
	// The first socket also opens Go's poller (epoll, eventfd).
	bindSock(t, "tcp", "127.0.0.1:0").Close()
	before := openFDs(t)
	s := bindSock(t, "tcp", "127.0.0.1:0")
	if got := openFDs(t) - before; got != 1 {
		t.Errorf("a bound TCP socket holds %d descriptors, want 1", got)
	}
	c := dial(t, "tcp", s.Addr().String())
	conn, err := s.Listener().Accept()
	if err != nil {
		t.Fatalf("Listener.Accept: %v", err)
	}
	conn.Close()
	c.Close()
	if got := openFDs(t) - before; got != 2 {
		t.Errorf("with its net.Listener, %d descriptors, want 2", got)
	}
	s.Close()
	if got := openFDs(t) - before; got != 0 {
		t.Errorf("after Close, %d descriptors more than before, want 0", got)
	}
}

// openFDs counts this process's open descriptors.
func openFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// TestDupBlocking checks the wait-mode handoff: the duplicate is blocking
// and close-on-exec, the shared description follows, and setNonblock
// puts it back.
func TestDupBlocking(t *testing.T) {
	for _, network := range []string{"tcp", "udp"} {
		t.Run(network, func(t *testing.T) {
			s := bindSock(t, network, "127.0.0.1:0")
			f, err := s.DupBlocking()
			if err != nil {
				t.Fatalf("dupBlocking: %v", err)
			}
			defer f.Close()
			rc, err := f.SyscallConn()
			if err != nil {
				t.Fatal(err)
			}
			var fl, fdfl int
			rc.Control(func(fd uintptr) { fl, fdfl = rawFlags(t, int(fd)) })
			if fl&unix.O_NONBLOCK != 0 || fdfl&unix.FD_CLOEXEC == 0 {
				t.Errorf("duplicate: nonblock=%v cloexec=%v, want blocking and close-on-exec", fl&unix.O_NONBLOCK != 0, fdfl&unix.FD_CLOEXEC != 0)
			}
			if fdFlags(t, s)&unix.O_NONBLOCK != 0 {
				t.Errorf("the socket is still non-blocking after dupBlocking, want the shared description blocking")
			}
			if err := s.SetNonblock(); err != nil {
				t.Fatalf("setNonblock: %v", err)
			}
			if fdFlags(t, s)&unix.O_NONBLOCK == 0 {
				t.Errorf("the socket is blocking after setNonblock")
			}
			rc.Control(func(fd uintptr) { fl, _ = rawFlags(t, int(fd)) })
			if fl&unix.O_NONBLOCK == 0 {
				t.Errorf("the duplicate is blocking after setNonblock, want it to share the description's mode")
			}
		})
	}
}

// TestChmodSocketSymlink checks that a symlink planted where the socket
// was does not lend its target to the chmod.
func TestChmodSocketSymlink(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "s.sock")
	s, err := Bind(config.ListenKey{Network: "unix", Address: path}, 0, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Reconfigure(0, 0o660); err != nil {
		t.Fatalf("Reconfigure on the socket itself: %v", err)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o660 {
		t.Errorf("socket mode %v, want 0660", fi.Mode().Perm())
	}
	secret := filepath.Join(dir, "secret")
	if err := os.WriteFile(secret, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	os.Remove(path)
	if err := os.Symlink(secret, path); err != nil {
		t.Fatal(err)
	}
	if err := s.Reconfigure(0, 0o666); err == nil {
		t.Errorf("Reconfigure through a symlink succeeded, want an error")
	}
	if fi, _ := os.Stat(secret); fi.Mode().Perm() != 0o600 {
		t.Errorf("symlink target's mode became %v", fi.Mode().Perm())
	}
}

// TestChown checks socket_user/socket_group: the socket file gets the
// owner, -1 leaves an id alone, and a symlink planted in its place is
// not followed.
func TestChown(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("chown to another user needs root")
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "s.sock")
	s, err := Bind(config.ListenKey{Network: "unix", Address: path}, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	owner := func() (uint32, uint32) {
		t.Helper()
		var st unix.Stat_t
		if err := unix.Lstat(path, &st); err != nil {
			t.Fatal(err)
		}
		return st.Uid, st.Gid
	}
	if err := s.Chown(65534, -1); err != nil {
		t.Fatal(err)
	}
	if uid, gid := owner(); uid != 65534 || gid != 0 {
		t.Errorf("after Chown(65534, -1): %d:%d, want 65534:0", uid, gid)
	}
	if err := s.Chown(-1, 65534); err != nil {
		t.Fatal(err)
	}
	if uid, gid := owner(); uid != 65534 || gid != 65534 {
		t.Errorf("after Chown(-1, 65534): %d:%d, want 65534:65534", uid, gid)
	}
	target := filepath.Join(dir, "victim")
	if err := os.WriteFile(target, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	os.Remove(path)
	if err := os.Symlink(target, path); err != nil {
		t.Fatal(err)
	}
	if err := s.Chown(65534, 65534); err == nil {
		t.Error("Chown followed a symlink planted in place of the socket")
	}
	var st unix.Stat_t
	if err := unix.Stat(target, &st); err != nil || st.Uid != 0 {
		t.Errorf("the symlink's target is owned by %d (%v), want 0", st.Uid, err)
	}
}
