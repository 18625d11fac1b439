package legacy

import (
	"net/netip"
	"strconv"
	"strings"
)

// xinetdAddr converts one only_from or no_access word to the forms
// superd takes (plain addresses and CIDR prefixes), following xinetd's
// addr.c:
//
//	192.0.2.7          the address
//	192.0.2.0          trailing zero parts are wildcards: 192.0.2.0/24
//	0.0.0.0, ::        every address: 0.0.0.0/0, ::/0
//	192.0.2.0/25       a prefix (likewise IPv6)
//	192.0.{2,3}        factorized: 192.0.2.0/24 and 192.0.3.0/24
//	host, .domain, net names: not convertible (ok is false)
func xinetdAddr(v string) (out []string, ok bool) {
	switch {
	case strings.Contains(v, "{"):
		return factorized(v)
	case strings.Contains(v, "/"):
		p, err := netip.ParsePrefix(v)
		if err != nil || p.Addr().Zone() != "" {
			return nil, false
		}
		return []string{prefixString(p.Masked())}, true
	}
	a, err := netip.ParseAddr(v)
	if err != nil || a.Zone() != "" {
		return nil, false
	}
	if a.IsUnspecified() {
		return []string{netip.PrefixFrom(a, 0).String()}, true
	}
	bits := a.BitLen()
	if a.Is4() {
		b := a.As4()
		for i := 3; i >= 0 && b[i] == 0; i-- {
			bits -= 8
		}
	}
	return []string{prefixString(netip.PrefixFrom(a, bits))}, true
}

// prefixString writes a single address without its /32 or /128.
func prefixString(p netip.Prefix) string {
	if p.IsSingleIP() {
		return p.Addr().String()
	}
	return p.String()
}

// factorized expands "A.B.{C,D}": the parts before the brace, then one
// prefix for each number in it, as long as the parts written.
func factorized(v string) ([]string, bool) {
	head, list, ok := strings.Cut(v, "{")
	list, ok2 := strings.CutSuffix(list, "}")
	if !ok || !ok2 || (head != "" && !strings.HasSuffix(head, ".")) {
		return nil, false
	}
	var parts []string
	if head != "" {
		parts = strings.Split(strings.TrimSuffix(head, "."), ".")
	}
	if len(parts) > 3 {
		return nil, false
	}
	var b [4]byte
	for i, p := range parts {
		n, err := strconv.ParseUint(p, 10, 8)
		if err != nil || p == "" {
			return nil, false
		}
		b[i] = byte(n)
	}
	var out []string
	for _, p := range strings.Split(list, ",") {
		n, err := strconv.ParseUint(p, 10, 8)
		if err != nil || p == "" {
			return nil, false
		}
		b[len(parts)] = byte(n)
		out = append(out, prefixString(netip.PrefixFrom(netip.AddrFrom4(b), 8*(len(parts)+1))))
	}
	return out, true
}

// morespecific reports whether the only_from prefix o lies strictly
// inside the no_access prefix n: xinetd lets o win there, superd does
// not.
func morespecific(o, n string) bool {
	po, err1 := netip.ParsePrefix(withBits(o))
	pn, err2 := netip.ParsePrefix(withBits(n))
	return err1 == nil && err2 == nil && po.Addr().Is4() == pn.Addr().Is4() &&
		pn.Contains(po.Addr()) && po.Bits() > pn.Bits()
}

// withBits adds /32 or /128 to a plain address.
func withBits(s string) string {
	if strings.Contains(s, "/") {
		return s
	}
	if a, err := netip.ParseAddr(s); err == nil {
		return netip.PrefixFrom(a, a.BitLen()).String()
	}
	return s
}

// parseHost reads a bind address for family fam ("", "4" or "6"):
// an IP literal, or localhost, taken as 127.0.0.1 (::1 for IPv6). ok is
// false for other host names, which superd does not resolve.
func parseHost(host, fam string) (netip.Addr, bool) {
	if host == "localhost" {
		if fam == "6" {
			return netip.IPv6Loopback(), true
		}
		return netip.AddrFrom4([4]byte{127, 0, 0, 1}), true
	}
	a, err := netip.ParseAddr(host)
	if err != nil || a.Zone() != "" {
		return netip.Addr{}, false
	}
	if a.Is4In6() {
		a = a.Unmap()
	}
	return a, true
}
