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
// and tcp4 on 0.0.0.0, say). The later service in name order is blamed,
// and the earliest service it collides with is named: what comparing
// every pair with span.overlaps finds, with one look-up per service.
func checkSockets(built []*builder) {
	var seen []*builder
	var idx spanIndex
	for _, b := range built {
		if b.svc.Disabled || b.svc.Listen == (ListenKey{}) {
			continue
		}
		sp := spanOf(b.svc.Listen)
		if i, ok := idx.first(sp); ok {
			b.collision(seen[i].svc)
		}
		idx.add(sp, len(seen))
		seen = append(seen, b)
	}
}

// spanIndex finds the earliest span added that overlaps a given one.
// Spans are numbered in the order they are added; the zero value is an
// empty index.
type spanIndex struct {
	paths map[string]int
	ports map[portKey]*portSpans
}

// portKey groups the spans of one port: spans overlap only within one.
type portKey struct {
	transport string
	port      int
}

// portSpans holds the earliest span of each kind on one port; -1 means
// none. A span overlaps another exactly when one is a wildcard that
// takes the other's address (or one of the addresses of the other
// wildcard), or both have the same address.
type portSpans struct {
	all4, all6   int // first span taking every IPv4 (IPv6) address
	addr4, addr6 int // first span with one IPv4 (IPv6) address
	addrs        map[netip.Addr]int
}

// first returns the number of the earliest span overlapping sp.
func (x *spanIndex) first(sp span) (int, bool) {
	if sp.path != "" {
		i, ok := x.paths[sp.path]
		return i, ok
	}
	g := x.ports[portKey{sp.transport, sp.port}]
	if g == nil {
		return 0, false
	}
	var cand []int
	switch {
	case sp.addr.IsValid():
		wild := g.all6
		if sp.addr.Is4() {
			wild = g.all4
		}
		cand = append(cand, wild)
		if i, ok := g.addrs[sp.addr]; ok {
			cand = append(cand, i)
		}
	default:
		if sp.all4 {
			cand = append(cand, g.all4, g.addr4)
		}
		if sp.all6 {
			cand = append(cand, g.all6, g.addr6)
		}
	}
	best := -1
	for _, i := range cand {
		if i >= 0 && (best < 0 || i < best) {
			best = i
		}
	}
	return best, best >= 0
}

// add records sp as span number n; numbers grow with each call.
func (x *spanIndex) add(sp span, n int) {
	if sp.path != "" {
		if x.paths == nil {
			x.paths = map[string]int{}
		}
		if _, ok := x.paths[sp.path]; !ok {
			x.paths[sp.path] = n
		}
		return
	}
	if x.ports == nil {
		x.ports = map[portKey]*portSpans{}
	}
	k := portKey{sp.transport, sp.port}
	g := x.ports[k]
	if g == nil {
		g = &portSpans{all4: -1, all6: -1, addr4: -1, addr6: -1, addrs: map[netip.Addr]int{}}
		x.ports[k] = g
	}
	keep := func(slot *int) {
		if *slot < 0 {
			*slot = n
		}
	}
	if sp.all4 {
		keep(&g.all4)
	}
	if sp.all6 {
		keep(&g.all6)
	}
	if sp.addr.IsValid() {
		if sp.addr.Is4() {
			keep(&g.addr4)
		} else {
			keep(&g.addr6)
		}
		if _, ok := g.addrs[sp.addr]; !ok {
			g.addrs[sp.addr] = n
		}
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
