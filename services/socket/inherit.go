package socket

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/superd/superd/config"
)

// identity is what an inherited descriptor is, as the kernel tells it.
type identity struct {
	domain    int // AF_INET, AF_INET6 or AF_UNIX
	typ       int // SOCK_STREAM or SOCK_DGRAM
	listening bool
	v6only    bool           // AF_INET6 only: no IPv4-mapped clients
	addr      netip.AddrPort // AF_INET and AF_INET6
	path      string         // AF_UNIX
}

// String formats the identity for error messages.
func (id identity) String() string {
	typ := "stream"
	if id.typ == unix.SOCK_DGRAM {
		typ = "dgram"
	}
	switch id.domain {
	case unix.AF_UNIX:
		return fmt.Sprintf("unix %s socket %q", typ, id.path)
	case unix.AF_INET6:
		if id.addr.Addr().IsUnspecified() && !id.v6only {
			return fmt.Sprintf("dual-stack %s socket %s", typ, id.addr)
		}
	}
	return fmt.Sprintf("%s socket %s", typ, id.addr)
}

// identify asks the kernel what the socket f is. It works on f's
// descriptor through its RawConn, so f keeps its blocking mode (Fd would
// make it blocking).
func identify(f *os.File) (identity, error) {
	rc, err := f.SyscallConn()
	if err != nil {
		return identity{}, err
	}
	var id identity
	var ierr error
	err = rc.Control(func(fd uintptr) { id, ierr = identifyFd(int(fd)) })
	if err = errors.Join(err, ierr); err != nil {
		return identity{}, err
	}
	return id, nil
}

func identifyFd(fd int) (identity, error) {
	var id identity
	var err error
	if id.domain, err = unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_DOMAIN); err != nil {
		return id, fmt.Errorf("not a socket: %w", os.NewSyscallError("getsockopt SO_DOMAIN", err))
	}
	if id.typ, err = unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TYPE); err != nil {
		return id, os.NewSyscallError("getsockopt SO_TYPE", err)
	}
	acc, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ACCEPTCONN)
	if err != nil {
		return id, os.NewSyscallError("getsockopt SO_ACCEPTCONN", err)
	}
	id.listening = acc != 0
	sa, err := unix.Getsockname(fd)
	if err != nil {
		return id, os.NewSyscallError("getsockname", err)
	}
	switch a := sa.(type) {
	case *unix.SockaddrInet4:
		id.addr = netip.AddrPortFrom(netip.AddrFrom4(a.Addr), uint16(a.Port))
	case *unix.SockaddrInet6:
		id.addr = netip.AddrPortFrom(netip.AddrFrom16(a.Addr), uint16(a.Port))
		v6, err := unix.GetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY)
		if err != nil {
			return id, os.NewSyscallError("getsockopt IPV6_V6ONLY", err)
		}
		id.v6only = v6 != 0
	case *unix.SockaddrUnix:
		id.path = a.Name
	default:
		return id, fmt.Errorf("socket of address family %d: superd serves only IP and unix sockets", id.domain)
	}
	return id, nil
}

// fits reports, as an error saying why not, whether the socket id can
// serve key:
//
//	key network   socket
//	tcp4, udp4    IPv4 on the key's address (0.0.0.0 for a wildcard)
//	tcp6, udp6    IPv6 on the key's address (v6-only [::] for a wildcard)
//	tcp, udp      IPv4 or IPv6 on the key's address; dual-stack [::] for a wildcard
//	unix          a unix stream socket on the key's path
//	unixgram      a unix datagram socket on the key's path
//
// A stream socket must be listening already.
func (id identity) fits(key config.ListenKey) error {
	wantType := unix.SOCK_DGRAM
	if key.Stream() {
		wantType = unix.SOCK_STREAM
	}
	if id.typ != wantType {
		return fmt.Errorf("it is a %s, the service wants %s", id, key)
	}
	if key.Stream() && !id.listening {
		return fmt.Errorf("it is a %s that does not listen", id)
	}
	if key.Network == "unix" || key.Network == "unixgram" {
		if id.domain != unix.AF_UNIX || filepath.Clean(id.path) != filepath.Clean(key.Address) {
			return fmt.Errorf("it is a %s, the service wants %s", id, key)
		}
		return nil
	}
	host, portText, err := net.SplitHostPort(key.Address)
	if err != nil {
		return fmt.Errorf("service address %q: %w", key.Address, err)
	}
	port, err := strconv.ParseUint(portText, 10, 16)
	if err != nil {
		return fmt.Errorf("service port %q: %w", portText, err)
	}
	mismatch := fmt.Errorf("it is a %s, the service wants %s", id, key)
	if id.domain != unix.AF_INET && id.domain != unix.AF_INET6 || id.addr.Port() != uint16(port) {
		return mismatch
	}
	version := key.Network[len(key.Network)-1] // '4', '6', or 'p' of tcp/udp
	switch {
	case version == '4' && id.domain != unix.AF_INET, version == '6' && id.domain != unix.AF_INET6:
		return mismatch
	}
	got := id.addr.Addr().Unmap().WithZone("")
	if host == "" || mustAddr(host).IsUnspecified() {
		if !got.IsUnspecified() {
			return mismatch
		}
		// tcp6 and udp6 wildcards are v6-only, the others serve both
		// families, as package net binds them.
		dual := id.domain == unix.AF_INET6 && !id.v6only
		if version == '6' && dual || version != '4' && version != '6' && !dual {
			return mismatch
		}
		return nil
	}
	want, err := netip.ParseAddr(host)
	if err != nil || want.Unmap().WithZone("") != got {
		return mismatch
	}
	return nil
}

// mustAddr parses an IP literal; an invalid one is the zero Addr, which
// is not unspecified.
func mustAddr(host string) netip.Addr {
	a, _ := netip.ParseAddr(host)
	return a
}

// Identity is an inherited socket as the kernel described it once, so
// that matching it against thousands of services (an upgrade passes
// one socket per service) asks the kernel nothing more.
type Identity struct {
	id   identity
	port string // ":port" of an IP socket, for a cheap first test
}

// Identify asks the kernel what the socket f is. It leaves f as it is.
func Identify(f *os.File) (Identity, error) {
	id, err := identify(f)
	if err != nil {
		return Identity{}, err
	}
	x := Identity{id: id}
	if id.domain != unix.AF_UNIX {
		x.port = ":" + strconv.Itoa(int(id.addr.Port()))
	}
	return x, nil
}

// Fits is Fits for the socket Identify described. A socket on another
// port or path is told apart without parsing key or building an error
// message, so that a scan over many sockets stays cheap.
func (x Identity) Fits(key config.ListenKey) error {
	unixKey := key.Network == "unix" || key.Network == "unixgram"
	switch {
	case unixKey && x.id.domain == unix.AF_UNIX && filepath.Clean(x.id.path) != filepath.Clean(key.Address),
		!unixKey && x.id.domain != unix.AF_UNIX && !strings.HasSuffix(key.Address, x.port):
		return errOtherAddress
	}
	return x.id.fits(key)
}

// errOtherAddress is Identity.Fits's answer for a socket on another port
// or path.
var errOtherAddress = errors.New("it is a socket on another address")

// Fits reports whether the inherited socket f can serve key; its error
// says why not, naming what f is. It leaves f as it is.
func Fits(key config.ListenKey, f *os.File) error {
	id, err := identify(f)
	if err != nil {
		return err
	}
	return id.fits(key)
}

// FromFile adopts f, a socket superd inherited (from systemd's socket
// activation, say), as the socket of key instead of binding one: f must
// be a socket that fits key (see Fits). FromFile takes f over: it closes
// f whether it succeeds or not, and the Socket it returns is closed by
// its Close, like a bound one. The socket is made non-blocking, as Bind
// makes its own, and backlog and mode are applied as Bind applies them.
func FromFile(key config.ListenKey, f *os.File, backlog int, mode os.FileMode) (*Socket, error) {
	defer f.Close() // package net works on duplicates
	if err := Fits(key, f); err != nil {
		return nil, err
	}
	s := &Socket{key: key}
	if key.Stream() {
		ln, err := net.FileListener(f)
		if err != nil {
			return nil, err
		}
		if err := s.adoptListener(ln); err != nil {
			return nil, err
		}
	} else {
		pc, err := net.FilePacketConn(f)
		if err != nil {
			return nil, err
		}
		raw, err := pc.(syscall.Conn).SyscallConn()
		if err != nil {
			pc.Close()
			return nil, err
		}
		s.pc, s.raw = pc, raw
	}
	// net.FileListener and FilePacketConn set the shared description
	// non-blocking already; say so anyway, the loops depend on it.
	if err := s.SetNonblock(); err != nil {
		s.Close()
		return nil, err
	}
	if err := s.Reconfigure(backlog, mode); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}
