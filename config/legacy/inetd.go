package legacy

import (
	"fmt"
	"math"
	"net/netip"
	"path"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// offPrefix starts a line that update-inetd disabled: the entry follows.
const offPrefix = "#<off>#"

// inetdEntry is one logical line of inetd.conf: an entry and its
// continuation lines.
type inetdEntry struct {
	file     string
	line     int
	words    []string
	raw      string // the words, continuation lines included, joined by spaces
	disabled bool   // an update-inetd "#<off>#" line
}

// source is "file:line".
func (e *inetdEntry) source() string { return fmt.Sprintf("%s:%d", e.file, e.line) }

// parseInetd converts an inetd.conf. Its grammar, from openbsd-inetd's
// getconfigent (inetutils-inetd reads the same):
//   - a line starting with '#' is a comment, except update-inetd's
//     "#<off>#" lines, which hold a disabled entry;
//   - a line starting with a space or tab continues the entry above
//     (one whose first word is '#' is taken as a comment here, where
//     inetd would take its words as arguments);
//   - words are separated by spaces and tabs;
//   - a line that is only "host:" sets the address of the entries after
//     it ("*:" for every address again).
//
// Nothing in inetd.conf is an error for the file as a whole: an entry
// inetd would skip is a skipped Service, with the reason.
func parseInetd(file string, data []byte) []*Service {
	var out []*Service
	defHost := "*"
	var cur *inetdEntry
	flush := func() {
		if cur == nil {
			return
		}
		out = append(out, inetdServices(cur, &defHost)...)
		cur = nil
	}
	for i, raw := range strings.Split(string(data), "\n") {
		line := strings.TrimSuffix(raw, "\r")
		if cur != nil && !cur.disabled && line != "" && (line[0] == ' ' || line[0] == '\t') {
			t := strings.Trim(line, " \t")
			if t != "" && t[0] != '#' {
				cur.words = append(cur.words, words(t)...)
				cur.raw = strings.Join(cur.words, " ")
			}
			continue
		}
		flush()
		if rest, ok := strings.CutPrefix(line, offPrefix); ok {
			if w := words(rest); len(w) > 0 {
				cur = &inetdEntry{file: file, line: i + 1, words: w, raw: strings.Join(w, " "), disabled: true}
			}
			continue
		}
		if strings.HasPrefix(line, "#") {
			continue
		}
		if w := words(line); len(w) > 0 {
			cur = &inetdEntry{file: file, line: i + 1, words: w, raw: strings.Join(w, " ")}
		}
	}
	flush()
	return out
}

// words splits at spaces and tabs, as inetd does.
func words(s string) []string {
	return strings.FieldsFunc(s, func(r rune) bool { return r == ' ' || r == '\t' })
}

// inetdServices converts one entry: none for a "host:" line, one per
// address of a "host1,host2:service" entry.
func inetdServices(e *inetdEntry, defHost *string) []*Service {
	w := slices.Clone(e.words)
	host := *defHost
	if i := strings.LastIndexByte(w[0], ':'); i >= 0 {
		host = strings.TrimSuffix(strings.TrimPrefix(w[0][:i], "["), "]")
		w[0] = w[0][i+1:]
		if w[0] == "" {
			if len(w) == 1 {
				if !e.disabled {
					*defHost = host
				}
				return nil
			}
			w = w[1:]
		}
	}
	if host == "" {
		host = "*"
	}
	var out []*Service
	for _, h := range strings.Split(host, ",") {
		out = append(out, inetdService(e, w, h))
	}
	return out
}

// inetdService converts one entry for one host address.
func inetdService(e *inetdEntry, w []string, host string) *Service {
	s := &Service{Source: e.source(), base: serviceName(w[0]), raw: e.raw}
	s.Origin = "inetd entry " + strconv.Quote(strings.Join(w[:min(3, len(w))], " "))
	if e.disabled {
		s.Origin += " (disabled by update-inetd)"
		s.set("disabled", true)
	}
	if len(w) < 6 {
		s.skip(e.source(), e.raw, "an entry needs at least service, socket type, protocol, wait, user and server: inetd skips it too")
		return s
	}
	name, sockType, proto, waitField, userField, server := w[0], w[1], w[2], w[3], w[4], w[5]
	args := w[6:]
	s.suffix = [3]string{sockType, proto, ""}
	if host != "*" {
		s.suffix[2] = serviceName(host)
	}
	if host != "*" {
		s.Origin += " on " + host
	}
	if !validUTF8(w...) {
		s.skip(e.source(), e.raw, "it holds bytes that are not UTF-8, which a TOML file cannot hold")
		return s
	}

	proto, opts, _ := strings.Cut(proto, ",")
	if opts != "" {
		s.lose(e.source(), w[2], "superd does not set a listening socket's buffer sizes (sndbuf, rcvbuf): the kernel's defaults apply")
	}
	if !inetdSocket(s, e, name, sockType, proto, host) {
		return s
	}
	if !inetdWait(s, e, sockType, waitField, server == "internal") {
		return s
	}
	if server == "internal" {
		inetdBuiltin(s, e, name, waitField, userField, args)
		return s
	}
	user, group := userField, ""
	if i := strings.IndexAny(userField, ".:"); i >= 0 {
		if j := strings.IndexByte(userField, '.'); j >= 0 {
			i = j // inetd looks for a '.' first
		}
		user, group = userField[:i], userField[i+1:]
	}
	if !path.IsAbs(server) {
		s.note("server %s is not an absolute path: inetd runs it from /, so the path is /%s", server, server)
		server = path.Join("/", server)
	}
	s.set("path", server)
	inetdArgs(s, server, args)
	if user != "" {
		s.set("user", user)
	}
	if group != "" {
		s.set("group", group)
	}
	return s
}

// inetdSocket sets port (or the unix path), protocol, type and address;
// false when the entry cannot be converted at all.
func inetdSocket(s *Service, e *inetdEntry, name, sockType, proto, host string) bool {
	src := e.source()
	switch {
	case strings.HasPrefix(proto, "rpc/"):
		s.skip(src, e.raw, "superd does not serve Sun RPC (portmapper) services")
		return false
	case strings.HasPrefix(strings.ToLower(name), "tcpmux/"):
		s.skip(src, e.raw, "superd has no TCPMUX (RFC 1078) service: give the program a port of its own")
		return false
	case sockType != "stream" && sockType != "dgram":
		s.skip(src, e.raw, fmt.Sprintf("superd serves stream and dgram sockets, not %s", sockType))
		return false
	}
	if proto == "unix" {
		if !strings.HasPrefix(name, "/") {
			s.skip(src, e.raw, "a unix socket needs an absolute path in superd")
			return false
		}
		s.base = serviceName(path.Base(name))
		s.set("protocol", "unix")
		if sockType == "dgram" {
			s.set("type", "dgram")
		}
		s.set("address", name)
		s.listen = &listenID{transport: "unix", path: name}
		return true
	}
	transport, family, ok := inetdProto(proto)
	if !ok {
		s.skip(src, e.raw, fmt.Sprintf("superd serves tcp and udp (and unix sockets), not %s", proto))
		return false
	}
	if (transport == "tcp") != (sockType == "stream") {
		s.skip(src, e.raw, fmt.Sprintf("socket type %s does not go with protocol %s", sockType, proto))
		return false
	}
	if !inetdPort(s, e, name) {
		return false
	}
	id := &listenID{transport: transport, family: family, port: name}
	switch host {
	case "*":
	case "localhost":
		a := "127.0.0.1"
		if family == "6" {
			a = "::1"
		}
		s.note("host localhost is taken as %s: superd binds IP addresses, not names", a)
		host = a
		fallthrough
	default:
		a, err := netip.ParseAddr(host)
		switch {
		case err != nil:
			s.lose(src, host+":", "superd binds IP addresses, not host names: set address to the address the name stands for")
			s.disable("the service is converted disabled, since it would listen on every address")
		case family == "4" && !a.Is4(), family == "6" && !a.Is6():
			s.skip(src, e.raw, fmt.Sprintf("address %s does not go with protocol %s: inetd skips it too", host, proto))
			return false
		default:
			family = "4"
			if a.Is6() {
				family = "6"
			}
			s.set("address", a.String())
			id.addr, id.family = a, family
		}
	}
	s.set("protocol", transport+family)
	s.listen = id
	return true
}

// inetdProto maps an inetd protocol to a superd transport and family:
// tcp and udp mean IPv4 and IPv6 under openbsd-inetd, tcp46 and udp46
// one socket for both, tcp6only and udp6only (inetutils-inetd) IPv6
// alone.
func inetdProto(p string) (transport, family string, ok bool) {
	switch p {
	case "tcp", "tcp46", "udp", "udp46":
		return p[:3], "", true
	case "tcp4", "udp4", "tcp6", "udp6":
		return p[:3], p[3:], true
	case "tcp6only", "udp6only":
		return p[:3], "6", true
	}
	return "", "", false
}

// inetdPort sets port from the service field: a number or a name from
// /etc/services.
func inetdPort(s *Service, e *inetdEntry, name string) bool {
	if name == "" {
		s.skip(e.source(), e.raw, "the entry has no service name")
		return false
	}
	if n, err := strconv.Atoi(name); err == nil {
		if n < 1 || n > 65535 {
			s.skip(e.source(), e.raw, fmt.Sprintf("port %d is out of range 1..65535", n))
			return false
		}
		s.set("port", n)
		return true
	}
	s.set("port", name)
	return true
}

// inetdWait reads wait/nowait and the limits inetd appends to it:
// ".max" (starts a minute, openbsd-inetd and inetutils-inetd) becomes
// rate; FreeBSD's "/max-child/max-per-ip-per-minute/max-child-per-ip"
// becomes instances and per_source.
// For a built-in, inetd ignores wait and nowait.
func inetdWait(s *Service, e *inetdEntry, sockType, field string, builtin bool) bool {
	src := e.source()
	word, rest := field, ""
	if i := strings.IndexAny(field, "./"); i >= 0 {
		word, rest = field[:i], field[i:]
	}
	if word != "wait" && word != "nowait" {
		s.skip(src, e.raw, fmt.Sprintf("%q is neither wait nor nowait", field))
		return false
	}
	switch {
	case builtin:
	case word == "wait":
		s.set("wait", true)
	case sockType == "dgram":
		s.set("wait", true)
		s.lose(src, field, "superd serves datagram sockets in wait mode only: the handler gets the socket, and superd waits for it to exit before it watches the socket again")
	}
	if max, ok := strings.CutPrefix(rest, "."); ok {
		n, err := strconv.Atoi(max)
		if err != nil || n < 1 {
			s.lose(src, field, fmt.Sprintf("%q is not a number of starts a minute: inetd takes its default instead, superd sets no rate", max))
			return true
		}
		r := math.Round(float64(n)/60*1000) / 1000
		if r == 0 {
			r = 0.001
		}
		s.set("rate", r)
		s.note("%s: inetd's %d starts a minute are rate = %v a second; past it inetd turns the service off for 10 minutes, superd makes clients wait instead", field, n, r)
		return true
	}
	if rest == "" {
		return true
	}
	parts := strings.Split(strings.TrimPrefix(rest, "/"), "/")
	for i, p := range parts {
		n, err := strconv.Atoi(p)
		if err != nil || n < 0 {
			s.lose(src, field, fmt.Sprintf("%q is not a number", p))
			continue
		}
		switch {
		case n == 0:
			// FreeBSD's 0: no limit.
		case i == 0:
			s.set("instances", n)
		case i == 1:
			s.lose(src, field, fmt.Sprintf("%d connections a minute from one address: superd's rate counts the connections of every client together", n))
		case i == 2:
			s.set("per_source", n)
		default:
			s.lose(src, field, fmt.Sprintf("%q: inetd knows at most three limits after the slash", p))
		}
	}
	return true
}

// inetdBuiltin converts an "internal" entry.
func inetdBuiltin(s *Service, e *inetdEntry, name, waitField, userField string, args []string) {
	if !slices.Contains(builtins(), name) {
		s.skip(e.source(), e.raw, fmt.Sprintf("superd has no built-in %q: its built-ins are %s", name, strings.Join(builtins(), ", ")))
		return
	}
	s.set("builtin", name)
	unused := []string{waitField, userField}
	if len(args) > 0 {
		unused = append(unused, strings.Join(args, " "))
	}
	s.note("%s: not needed, superd serves the built-in itself, with no process or user of its own", strings.Join(unused, " "))
}

// inetdArgs sets argv0 and args: inetd's first argument is argv[0].
// A tcpd-wrapped entry keeps tcpd as the program and the real server as
// argv[0], which is how tcpd finds what to run.
func inetdArgs(s *Service, server string, args []string) {
	if len(args) == 0 {
		return
	}
	if args[0] != path.Base(server) {
		s.set("argv0", args[0])
	}
	if len(args) > 1 {
		s.set("args", slices.Clone(args[1:]))
	}
	if path.Base(server) == "tcpd" {
		s.note("tcpd runs %s and checks /etc/hosts.allow and /etc/hosts.deny first; superd's only_from and no_access can do the address checks instead", args[0])
	}
}

// validUTF8 reports whether every word is UTF-8.
func validUTF8(ws ...string) bool {
	for _, w := range ws {
		if !utf8.ValidString(w) {
			return false
		}
	}
	return true
}
