package config

import (
	"net"
	"net/netip"
	"strconv"
)

// span is the set of local addresses a socket takes, for finding two
// services that cannot both bind.
type span struct {
	path      string // unix socket path; the rest is unused then
	transport string // tcp or udp
	port      int
	all4      bool       // every IPv4 address
	all6      bool       // every IPv6 address
	addr      netip.Addr // one address, when not a wildcard
}

// spanOf describes k. A dual-stack socket (tcp or udp with every address)
// takes every IPv4 address too; tcp6 and udp6 are IPv6-only in Go.
func spanOf(k ListenKey) span {
	if isUnixNet(k.Network) {
		return span{path: k.Address}
	}
	host, portStr, _ := net.SplitHostPort(k.Address)
	port, _ := strconv.Atoi(portStr)
	sp := span{transport: k.Network[:3], port: port}
	switch {
	case host == "":
		sp.all4, sp.all6 = true, true
	case host == "0.0.0.0" && k.Network[3:] == "4":
		sp.all4 = true
	case host == "::" && k.Network[3:] == "6":
		sp.all6 = true
	default:
		sp.addr, _ = netip.ParseAddr(host)
	}
	return sp
}

// overlaps reports whether a and b cannot both be bound.
func (a span) overlaps(b span) bool {
	if a.path != "" || b.path != "" {
		return a.path == b.path
	}
	if a.transport != b.transport || a.port != b.port {
		return false
	}
	return a.covers(b) || b.covers(a) || (a.addr.IsValid() && a.addr == b.addr)
}

// covers reports whether wildcard a takes an address that b takes.
func (a span) covers(b span) bool {
	if b.addr.IsValid() {
		return (b.addr.Is4() && a.all4) || (b.addr.Is6() && a.all6)
	}
	return (a.all4 && b.all4) || (a.all6 && b.all6)
}

// checkSockets reports enabled services whose sockets collide: the same
// ListenKey, or overlapping addresses on one port (tcp on every address
// and tcp4 on 0.0.0.0, say). The later service in name order is blamed.
func checkSockets(built []*builder) {
	var seen []*builder
	for _, b := range built {
		if b.svc.Disabled || b.svc.Listen == (ListenKey{}) {
			continue
		}
		for _, prev := range seen {
			if spanOf(b.svc.Listen).overlaps(spanOf(prev.svc.Listen)) {
				b.collision(prev.svc)
				break
			}
		}
		seen = append(seen, b)
	}
}

// collision reports b's socket colliding with prev's.
func (b *builder) collision(prev *Service) {
	key, cur := "port", b.svc.Listen
	if isUnixNet(cur.Network) {
		key = "address"
	}
	if cur == prev.Listen {
		b.failf(key, "socket %s is also used by service %q (%s)", cur, prev.Name, prev.File)
		return
	}
	b.failf(key, "socket %s overlaps socket %s of service %q (%s): both cannot be bound", cur, prev.Listen, prev.Name, prev.File)
}

// isUnixNet reports whether network is a unix socket network.
func isUnixNet(network string) bool { return network == "unix" || network == "unixgram" }
