package socket

import (
	"net/netip"
	"strconv"
	"syscall"

	"golang.org/x/sys/unix"
)

// Peer describes one accepted connection.
type Peer struct {
	// Proto is TCP or UNIX; "" for a client that could not be
	// identified, which no access list may let in.
	Proto  string
	Local  netip.AddrPort // TCP only
	Remote netip.AddrPort // TCP only
	Cred   *unix.Ucred    // UNIX only; nil when the kernel gave none
	// Proxy is the load balancer that sent a PROXY header naming
	// Remote and Local; invalid for a connection without one.
	Proxy netip.AddrPort
}

// Behind returns the peer as the PROXY header h describes it: the real
// client as Remote, the address it connected to as Local, and p's own
// remote, the load balancer, as Proxy. A LOCAL header (a health check
// of the proxy's own) leaves the proxy as the client.
func (p *Peer) Behind(h *ProxyHeader) *Peer {
	q := *p
	q.Proxy = p.Remote
	if !h.Local {
		q.Remote, q.Local = h.Source, h.Dest
	}
	return &q
}

// String is the remote address as logged: behind a PROXY header, the
// client and the load balancer ("192.0.2.7:5000 via 10.0.0.2:41000").
func (p *Peer) String() string {
	if p.Proto == "TCP" {
		if p.Proxy.IsValid() {
			return p.Remote.String() + " via " + p.Proxy.String()
		}
		return p.Remote.String()
	}
	if p.Cred != nil {
		return "pid:" + strconv.Itoa(int(p.Cred.Pid))
	}
	return "unix"
}

// Env returns the UCSPI variables of the connection (PROTO, TCPLOCALIP,
// ..., UNIXREMOTEPID), plus the ones git daemon --inetd reads.
func (p *Peer) Env() []string {
	env := []string{"PROTO=" + p.Proto}
	switch {
	case p.Proto == "TCP":
		rip, rport := p.Remote.Addr().String(), strconv.Itoa(int(p.Remote.Port()))
		env = append(env,
			"TCPLOCALIP="+p.Local.Addr().String(),
			"TCPLOCALPORT="+strconv.Itoa(int(p.Local.Port())),
			"TCPREMOTEIP="+rip, "TCPREMOTEPORT="+rport,
			"REMOTE_ADDR="+rip, "REMOTE_PORT="+rport)
		if p.Proxy.IsValid() {
			env = append(env,
				"PROXYREMOTEIP="+p.Proxy.Addr().String(),
				"PROXYREMOTEPORT="+strconv.Itoa(int(p.Proxy.Port())))
		}
	case p.Cred != nil:
		env = append(env,
			"UNIXREMOTEEUID="+strconv.Itoa(int(p.Cred.Uid)),
			"UNIXREMOTEEGID="+strconv.Itoa(int(p.Cred.Gid)),
			"UNIXREMOTEPID="+strconv.Itoa(int(p.Cred.Pid)))
	}
	return env
}

// Describe works out who is on the other end of fd, a connection that
// AcceptRaw returned with sa. A socket bound to one address (not a
// wildcard) knows its local address, which saves a getsockname.
func (s *Socket) Describe(fd int, sa syscall.Sockaddr) *Peer {
	return describeAt(fd, sa, s.local)
}

// describeAt is Describe for a socket whose local address is local, or
// unknown (invalid).
func describeAt(fd int, sa syscall.Sockaddr, local netip.AddrPort) *Peer {
	remote, ok := addrPort(sa)
	if !ok {
		if _, isUnix := sa.(*syscall.SockaddrUnix); !isUnix {
			return &Peer{} // unknown: check refuses it
		}
		p := &Peer{Proto: "UNIX"}
		if cred, err := unix.GetsockoptUcred(fd, unix.SOL_SOCKET, unix.SO_PEERCRED); err == nil {
			p.Cred = cred
		}
		return p
	}
	p := &Peer{Proto: "TCP", Remote: remote, Local: local}
	if !local.IsValid() {
		// syscall's, not x/sys's: that one asks SO_PROTOCOL every time.
		if lsa, err := syscall.Getsockname(fd); err == nil {
			p.Local, _ = addrPort(lsa)
		}
	}
	return p
}

// addrPort converts an IP socket address; IPv4-mapped IPv6 addresses
// (from dual-stack sockets) become plain IPv4, as clients know them.
func addrPort(sa syscall.Sockaddr) (netip.AddrPort, bool) {
	switch a := sa.(type) {
	case *syscall.SockaddrInet4:
		return netip.AddrPortFrom(netip.AddrFrom4(a.Addr), uint16(a.Port)), true
	case *syscall.SockaddrInet6:
		ip := netip.AddrFrom16(a.Addr).Unmap()
		if a.ZoneId != 0 && ip.Is6() {
			ip = ip.WithZone(strconv.Itoa(int(a.ZoneId)))
		}
		return netip.AddrPortFrom(ip, uint16(a.Port)), true
	}
	return netip.AddrPort{}, false
}
