package config

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// defaultInstances is the instances limit when none is set: a guard
// against a fork bomb that still serves a busy host.
const defaultInstances = 256

// maxUnixPath is the longest socket path sun_path holds with its NUL.
const maxUnixPath = 107

// builder turns one service's spec into a Service, reporting the
// problems that involve several keys.
type builder struct {
	l   *loader
	def *svcDef
	sp  *spec
	svc *Service // the result
}

// at places err at key: where the key is written when it is set,
// otherwise at the service's table.
func (b *builder) at(key string, err error) *Error {
	if s, ok := b.sp.given[key]; ok {
		return s.err(b.def.name, err)
	}
	return &Error{File: b.def.src.path, Line: b.def.line, Service: b.def.name, Key: key, Err: err}
}

func (b *builder) failf(key, format string, args ...any) {
	b.l.errs = append(b.l.errs, b.at(key, fmt.Errorf(format, args...)))
}

func (b *builder) warnf(key, format string, args ...any) {
	b.l.warns = append(b.l.warns, b.at(key, fmt.Errorf(format, args...)))
}

// notOwn refuses key in the service's own table; from [defaults] it is
// ignored, since [defaults] serves every kind of service. A key whose
// value was already refused is not reported twice.
func (b *builder) notOwn(key, format string, args ...any) {
	if b.sp.own(key) && !b.sp.bad[key] {
		b.failf(key, format, args...)
	}
}

// build applies the service's keys over the defaults and checks the
// result as a whole; b.svc is the result.
func (l *loader) build(def *svcDef, defaults *spec) *builder {
	sp := defaults.clone()
	l.apply(sp, def.keys, def.name)
	b := &builder{l: l, def: def, sp: sp}
	svc := &Service{Name: def.name, File: def.src.path, Disabled: sp.disabled, Backlog: sp.backlog}
	builtin, handlerOK := b.handlerKind()
	network, stream, netOK := b.network()
	if netOK {
		svc.Listen, svc.SocketMode, svc.SocketOwner = b.listen(network)
		svc.Wait = b.wait(stream, builtin)
	}
	switch {
	case builtin && handlerOK:
		svc.Builtin = b.builtin(network)
	case handlerOK:
		svc.Exec = b.exec()
	}
	svc.Limits = b.limits()
	svc.Access = Access{OnlyFrom: slices.Clone(sp.onlyFrom), NoAccess: slices.Clone(sp.noAccess)}
	b.warnAccess(svc)
	svc.Proxy = b.proxy(svc, builtin)
	svc.ReusePort = sp.reusePort && sp.has("reuse_port")
	if svc.ReusePort && isUnixNet(svc.Listen.Network) {
		b.failf("reuse_port", "reuse_port applies to tcp and udp sockets, not unix sockets")
	}
	b.svc = svc
	return b
}

// handlerKind decides between path and builtin. The service's own table
// decides when it sets either; otherwise [defaults] does.
func (b *builder) handlerKind() (builtin, ok bool) {
	sp := b.sp
	own := sp.own("path") || sp.own("builtin")
	pick := func(k string) bool { s, ok := sp.given[k]; return ok && s.fromDefaults != own }
	p, bi := pick("path"), pick("builtin")
	switch {
	case p && bi:
		b.failf("builtin", "both path and builtin are set: set exactly one")
		return false, false
	case !p && !bi:
		b.failf("", "no handler: set path (a program to run) or builtin")
		return false, false
	case bi:
		return true, !sp.bad["builtin"]
	}
	return false, !sp.bad["path"]
}

// network derives the socket network from protocol and type:
//
//	protocol   type          network
//	(none)     (none)/stream tcp
//	(none)     dgram         udp
//	tcp*       (none)/stream tcp*
//	udp*       (none)/dgram  udp*
//	unix       (none)/stream unix
//	unix       dgram         unixgram
//	tcp*/udp*  the other     error
func (b *builder) network() (network string, stream, ok bool) {
	sp := b.sp
	if sp.bad["protocol"] || sp.bad["type"] {
		return "", false, false
	}
	proto, typ := sp.protocol, sp.typ
	if !sp.has("type") {
		typ = ""
	}
	if !sp.has("protocol") {
		proto = "tcp"
		if typ == "dgram" {
			proto = "udp"
		}
	}
	if proto == "unix" {
		if typ == "dgram" {
			return "unixgram", false, true
		}
		return "unix", true, true
	}
	stream = strings.HasPrefix(proto, "tcp")
	if typ != "" && (typ == "stream") != stream {
		b.failf("type", "type %q does not match protocol %q (tcp is stream, udp is dgram, unix is either)", typ, proto)
		return "", false, false
	}
	return proto, stream, true
}

// listen builds the socket identity and, for a unix socket, its mode
// and owner; a zero key when it has errors.
func (b *builder) listen(network string) (ListenKey, os.FileMode, SocketOwner) {
	if isUnixNet(network) {
		return b.unixListen(network), b.sp.socketMode, b.socketOwner()
	}
	for _, k := range []string{"socket_mode", "socket_user", "socket_group"} {
		b.notOwn(k, "%s applies only to unix sockets", k)
	}
	port, okPort := b.port(network)
	host, okHost := b.host(network)
	if !okPort || !okHost {
		return ListenKey{}, 0, SocketOwner{}
	}
	b.checkPortPrivilege(port)
	return ListenKey{Network: network, Address: net.JoinHostPort(host, strconv.Itoa(port))}, 0, SocketOwner{}
}

// port resolves the port, by name for the network's transport.
func (b *builder) port(network string) (int, bool) {
	sp := b.sp
	if sp.bad["port"] {
		return 0, false
	}
	if !sp.has("port") {
		b.failf("port", "port is required: a number 1..65535 or a name from /etc/services")
		return 0, false
	}
	if sp.port.name == "" {
		return sp.port.num, true
	}
	transport := network[:3] // tcp or udp
	n, err := net.LookupPort(transport, sp.port.name)
	switch {
	case err != nil:
		b.failf("port", "unknown port name %q for %s (not in /etc/services)", sp.port.name, transport)
		return 0, false
	case n < 1 || n > 65535:
		b.failf("port", "port %d out of range 1..65535", n)
		return 0, false
	}
	return n, true
}

// host returns the listen host, "" meaning every address. Go listens on
// both IPv4 and IPv6 for tcp and udp with an empty host or with 0.0.0.0
// or ::, so all three become "" and compare equal.
func (b *builder) host(network string) (string, bool) {
	sp := b.sp
	if sp.bad["address"] {
		return "", false
	}
	family := network[3:] // "", "4" or "6"
	if !sp.has("address") {
		return map[string]string{"": "", "4": "0.0.0.0", "6": "::"}[family], true
	}
	a, err := netip.ParseAddr(sp.address)
	if err != nil {
		b.failf("address", "address %q is not an IP address (superd does not resolve host names)", sp.address)
		return "", false
	}
	if family != "6" {
		a = a.Unmap()
	}
	switch {
	case family == "4" && !a.Is4():
		b.failf("address", "address %s is not an IPv4 address, as protocol %s requires", a, network)
		return "", false
	case family == "6" && (!a.Is6() || a.Is4In6()):
		b.failf("address", "address %s is not an IPv6 address, as protocol %s requires", a, network)
		return "", false
	case family == "" && a.IsUnspecified():
		return "", true
	}
	return a.String(), true
}

// unixListen checks the socket path of a unix service.
func (b *builder) unixListen(network string) ListenKey {
	sp := b.sp
	b.notOwn("port", "port does not apply to unix sockets: address is the socket path")
	switch {
	case sp.bad["address"]:
		return ListenKey{}
	case !sp.has("address"):
		b.failf("address", "address is required for a unix socket: the socket path")
		return ListenKey{}
	case !filepath.IsAbs(sp.address):
		b.failf("address", "unix socket path %q must be absolute", sp.address)
		return ListenKey{}
	}
	p := filepath.Clean(sp.address)
	if len(p) > maxUnixPath {
		b.failf("address", "unix socket path is %d bytes long; the kernel allows at most %d", len(p), maxUnixPath)
		return ListenKey{}
	}
	return ListenKey{Network: network, Address: p}
}

// wait resolves wait mode: default false for stream, true for dgram.
func (b *builder) wait(stream, builtin bool) bool {
	sp := b.sp
	switch {
	case builtin:
		if sp.own("wait") && sp.has("wait") && sp.wait {
			b.failf("wait", "built-in services do not support wait = true")
		}
		return false
	case sp.bad["wait"]:
		return false
	case !sp.has("wait"):
		return !stream
	case !stream && !sp.wait:
		b.failf("wait", "dgram services need wait = true: the handler gets the bound socket and reads the datagrams itself")
	}
	return sp.wait
}

// execKeys are the keys that only a handler process uses.
func execKeys() []string {
	return []string{"args", "argv0", "env", "pass_env", "working_dir", "stderr", "user", "group", "umask", "nice", "limits"}
}

// builtin checks a built-in service and returns its name.
func (b *builder) builtin(network string) string {
	if isUnixNet(network) {
		b.failf("builtin", "built-in services serve tcp and udp, not unix sockets")
	}
	for _, k := range execKeys() {
		// Checked here too, so that the arguments of a message that is
		// not reported are not made for each of thousands of services.
		if b.sp.own(k) {
			b.notOwn(k, "%s has no effect on a built-in service", k)
		}
	}
	return b.sp.builtin
}

// exec describes the handler process.
func (b *builder) exec() Exec {
	sp := b.sp
	e := Exec{
		Path:    sp.path,
		Argv:    append([]string{filepath.Base(sp.path)}, sp.args...),
		Env:     slices.Clone(sp.env),
		PassEnv: slices.Clone(sp.passEnv),
		Dir:     "/",
		Stderr:  "log",
		Umask:   -1,
		Nice:    sp.nice,
		SetNice: sp.has("nice"),
		Rlimits: slices.Clone(sp.rlimits),
	}
	if sp.has("argv0") {
		e.Argv[0] = sp.argv0
	}
	if sp.has("working_dir") {
		e.Dir = sp.workingDir
	}
	if sp.has("stderr") {
		e.Stderr = sp.stderr
	}
	if sp.has("umask") {
		e.Umask = sp.umask
	}
	e.Cred = b.cred()
	b.checkHandler(e)
	b.checkScript(e)
	return e
}

// limits collects the admission limits.
func (b *builder) limits() Limits {
	lim := Limits{Instances: defaultInstances, PerSource: b.sp.perSource, Rate: b.sp.rate, Timeout: b.sp.timeout}
	if b.sp.has("instances") {
		lim.Instances = b.sp.instances
	}
	return lim
}

// proxy checks the PROXY protocol keys. Only a nowait TCP service (a
// handler process or a built-in) can read a header: a wait handler gets
// the listening socket itself, and a datagram or unix socket gets none.
func (b *builder) proxy(svc *Service, builtin bool) Proxy {
	sp := b.sp
	on := sp.has("proxy_protocol") && sp.proxyProtocol
	if !on {
		for _, k := range []string{"proxy_from", "proxy_timeout"} {
			if sp.own(k) && sp.has(k) {
				b.warnf(k, "%s has no effect without proxy_protocol = true", k)
			}
		}
		return Proxy{}
	}
	p := Proxy{Enabled: true, From: slices.Clone(sp.proxyFrom), Timeout: DefaultProxyTimeout}
	if sp.has("proxy_timeout") {
		p.Timeout = sp.proxyTimeout
	}
	switch {
	case svc.Listen.Network == "" || sp.bad["proxy_from"]:
		// already reported
	case !strings.HasPrefix(svc.Listen.Network, "tcp"):
		b.failf("proxy_protocol", "proxy_protocol needs a tcp stream service: a PROXY header comes at the start of a TCP connection")
	case svc.Wait && !builtin:
		b.failf("proxy_protocol", "proxy_protocol does not work with wait = true: the handler gets the listening socket and accepts by itself, so superd never reads a header")
	case !sp.has("proxy_from"):
		b.failf("proxy_protocol", "proxy_protocol needs proxy_from: list the addresses of the load balancers allowed to send the PROXY header (anyone else could claim any client address)")
	}
	return p
}

// warnAccess flags access settings that cannot take effect.
func (b *builder) warnAccess(svc *Service) {
	unix := isUnixNet(svc.Listen.Network)
	for _, k := range []string{"only_from", "no_access", "per_source"} {
		if !b.sp.has(k) || (k == "per_source" && b.sp.perSource == 0) {
			continue
		}
		switch {
		case unix:
			b.warnf(k, "%s has no effect on a unix socket: its clients have no IP address", k)
		case svc.Wait:
			b.warnf(k, "%s has no effect on a wait service: the handler gets the socket itself, so superd never sees a client (and a datagram is not a connection that could be judged)", k)
		}
	}
}
