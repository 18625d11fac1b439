// Package config loads and validates superd's services.toml.
//
// Load produces an immutable *Config: every name (port, user, group) is
// resolved once, every default is applied, and every error in every file is
// reported together. Nothing downstream re-reads the file or re-resolves a
// name per connection; a reload builds a new *Config and never edits an old
// one.
//
// The package does not bind sockets, start processes or log: it only reads
// files (the configuration, and the first bytes of script handlers and
// their interpreters), the user, group and services databases, and, for
// a superd that is not root, what the kernel lets it bind and chown (see
// Host).
package config

import (
	"net/netip"
	"os"
	"time"
)

// Config is a validated configuration. It is never modified after Load
// returns it; callers share it freely between goroutines.
type Config struct {
	Global Global
	// Services holds every service, disabled ones included, sorted by name.
	Services []*Service
	// Warnings are settings that are valid but do not do what an
	// administrator may think (for example per_source on a dgram wait
	// service). They do not make the configuration invalid.
	Warnings []*Error
}

// Global holds the [superd] table.
type Global struct {
	// Log is "syslog" (the default) or "stderr".
	Log string
	// SyslogFacility is the facility name, default "daemon".
	SyslogFacility string
	// SyslogTag is the tag of every syslog line, default "superd".
	SyslogTag string
	// SyslogSocket is the path of the syslog daemon's datagram socket;
	// empty means the system default (/dev/log and its usual aliases).
	SyslogSocket string
	// ShutdownGrace is how long handlers get between SIGTERM and SIGKILL
	// at shutdown; default 10s, at most MaxShutdownGrace.
	ShutdownGrace time.Duration
	// UpgradeTimeout is how long a binary upgrade (SIGUSR2) waits for the
	// new process to be ready before it stops it and keeps serving;
	// default 30s, at most MaxUpgradeTimeout.
	UpgradeTimeout time.Duration
	// Metrics is the host:port to serve Prometheus metrics on (at
	// /metrics), the host an IP address or "localhost", the IP in its
	// canonical form; empty (the default) for none. Port 0 lets the
	// system pick one.
	Metrics string
	// MetricsAllowRemote allows a Metrics address other than loopback,
	// the wildcard included; without it Load refuses one.
	MetricsAllowRemote bool
	// Files lists every file read: the main file first, then the included
	// files in the order they were read.
	Files []string
}

// ListenKey is a socket's identity. Two services with equal keys would
// bind the same socket; a reload keeps a socket whose key is unchanged.
type ListenKey struct {
	// Network is one of tcp, tcp4, tcp6, udp, udp4, udp6, unix (stream)
	// or unixgram, as accepted by package net.
	Network string
	// Address is host:port for IP networks (host empty for every address)
	// and the socket path for unix networks.
	Address string
}

// String formats the key as network/address, the form used in logs.
func (k ListenKey) String() string { return k.Network + "/" + k.Address }

// Stream reports whether the key names a stream (connection) socket.
func (k ListenKey) Stream() bool {
	switch k.Network {
	case "tcp", "tcp4", "tcp6", "unix":
		return true
	}
	return false
}

// Service is one [services.NAME] table after defaults and validation.
type Service struct {
	// Name is the table name, the NAME in [services.NAME].
	Name string
	// File is the file that defines the service.
	File string
	// Disabled services are validated but never bound.
	Disabled bool

	Listen ListenKey
	// SocketMode is applied to a unix socket after binding; zero leaves
	// the mode the umask produced.
	SocketMode os.FileMode
	// SocketOwner is given to a unix socket after binding (socket_user
	// and socket_group, as systemd's SocketUser= and SocketGroup=); the
	// zero value, and every tcp or udp service, leaves the socket to
	// superd's own uid and gid.
	SocketOwner SocketOwner
	// Backlog is the listen backlog; zero means the system maximum
	// (net.core.somaxconn).
	Backlog int
	// Wait selects wait mode: the handler gets the listening or bound
	// socket itself and superd stops watching it until the handler exits.
	Wait bool

	// Builtin names an in-process service (echo, discard, daytime,
	// chargen, time); when set, Exec is the zero value.
	Builtin string
	// Exec describes the handler process when Builtin is empty.
	Exec Exec

	Limits Limits
	Access Access
	// Proxy is the PROXY protocol setting; the zero value reads no
	// header.
	Proxy Proxy
	// ReusePort sets SO_REUSEPORT before the bind, so that several
	// processes that all set it can bind the same address and the
	// kernel spreads connections among them. A reload keeps a bound
	// socket as it is: the setting applies when the socket is bound.
	ReusePort bool
}

// Proxy is the PROXY protocol (v1 and v2) setting of a nowait TCP
// service: superd reads the header a load balancer sends before the
// client's bytes, and the handler, the access lists and the logs see the
// client the header names.
type Proxy struct {
	// Enabled makes every connection start with a header; one without is
	// refused.
	Enabled bool
	// From lists the load balancers allowed to send a header; a
	// connection from any other address is refused. Not empty when
	// Enabled.
	From []netip.Prefix
	// Timeout is how long the header may take to arrive, from the
	// accept; default DefaultProxyTimeout, at most MaxProxyTimeout.
	Timeout time.Duration
}

// Trusted reports whether addr may send a PROXY header.
func (p Proxy) Trusted(addr netip.Addr) bool {
	return Access{OnlyFrom: p.From}.Allowed(addr) && len(p.From) > 0
}

// DefaultProxyTimeout is Proxy.Timeout when proxy_timeout is not set.
const DefaultProxyTimeout = 3 * time.Second

// MaxProxyTimeout bounds proxy_timeout: a load balancer sends its header
// at once, and a slow one holds an instances slot meanwhile.
const MaxProxyTimeout = time.Minute

// SocketOwner is who a unix socket belongs to once bound. Load resolved
// the names; a superd that is not root was only allowed to name itself
// and its own groups (unless it has CAP_CHOWN), as chown(2) demands.
type SocketOwner struct {
	// Uid is the socket's owner; used only when UidSet.
	Uid    uint32
	UidSet bool
	// Gid is the socket's group; used only when GidSet.
	Gid    uint32
	GidSet bool
}

// ChownArgs returns o as chown(2) and fchownat(2) take it: -1 leaves
// that id as it is. Both are -1 for the zero value, when no chown is
// needed at all.
func (o SocketOwner) ChownArgs() (uid, gid int) {
	uid, gid = -1, -1
	if o.UidSet {
		uid = int(o.Uid)
	}
	if o.GidSet {
		gid = int(o.Gid)
	}
	return uid, gid
}

// DefaultPath is the PATH a handler gets unless its env table sets one.
// (services gives handlers this value; Load needs it to follow
// "#!/usr/bin/env prog" lines the way env will.)
const DefaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// Exec describes how to start a handler process.
type Exec struct {
	// Path is the absolute path of the executable.
	Path string
	// Argv is the full argument vector, Argv[0] included (argv0).
	Argv []string
	// Env holds the env table as sorted "KEY=value" entries.
	Env []string
	// PassEnv names variables copied from superd's own environment.
	PassEnv []string
	// Dir is the working directory, default "/".
	Dir string
	// Stderr is "log" (default), "socket" or "null".
	Stderr string
	// Cred is the identity the handler runs as.
	Cred Cred
	// Umask is applied before the handler starts; negative means leave
	// superd's umask.
	Umask int
	// Nice is the niceness set before the handler starts; meaningful only
	// when SetNice is true.
	Nice    int
	SetNice bool
	// Rlimits are applied before the handler's first instruction.
	Rlimits []Rlimit
}

// Cred is a resolved user and group identity.
type Cred struct {
	// Set is false when no user was configured (superd not running as
	// root): the handler then runs as superd's own identity, and the
	// other fields describe that identity when it has a passwd entry.
	Set    bool
	User   string // user name, or the number as written when it has no passwd entry
	Uid    uint32
	Gid    uint32
	Groups []uint32 // supplementary groups from the group database
	Home   string
	Shell  string
}

// Rlimit is one resource limit, applied as both soft and hard limit.
type Rlimit struct {
	// Name is the key in the limits table (nofile, nproc, as, cpu, core,
	// fsize, data, stack, memlock, rss, locks, sigpending, msgqueue,
	// rtprio).
	Name string
	// Resource is the RLIMIT_* number.
	Resource int
	// Value is the limit; RlimInfinity means unlimited.
	Value uint64
}

// RlimInfinity is the value of an "unlimited" limit.
const RlimInfinity = ^uint64(0)

// Limits are the admission limits of a service.
type Limits struct {
	// Instances is the most handlers (or built-in connections) at once;
	// default 256.
	Instances int
	// PerSource is the most handlers at once for one remote IPv4 address
	// or IPv6 /64; zero means no limit.
	PerSource int
	// Rate is the most new connections per second (token bucket, burst
	// equal to the rate); zero means no limit.
	Rate float64
	// Timeout is how long a handler may run before its process group gets
	// SIGTERM (and SIGKILL 5s later); zero means no limit. It is at most
	// MaxTimeout.
	Timeout time.Duration
}

// The longest durations Load accepts. Each is far longer than any
// sensible setting, and far enough from the 292 years a time.Duration
// holds that adding a kill delay or taking a deadline from the clock
// cannot overflow.
const (
	// MaxTimeout bounds Limits.Timeout: one year. A handler meant to run
	// for longer wants no timeout at all (zero).
	MaxTimeout = 365 * 24 * time.Hour
	// MaxShutdownGrace bounds Global.ShutdownGrace: one hour. superd's
	// stop waits that long, and a service manager stopping superd gives
	// up far sooner (systemd after 90s by default).
	MaxShutdownGrace = time.Hour
	// MaxUpgradeTimeout bounds Global.UpgradeTimeout: ten minutes, far
	// more than loading any configuration takes.
	MaxUpgradeTimeout = 10 * time.Minute
)

// Access holds the address lists of a service.
type Access struct {
	// OnlyFrom, when not empty, lists the only prefixes allowed.
	OnlyFrom []netip.Prefix
	// NoAccess lists denied prefixes; it wins over OnlyFrom.
	NoAccess []netip.Prefix
}

// Allowed reports whether a connection from addr may be served.
//
//	OnlyFrom empty, addr not in NoAccess   → true
//	addr in OnlyFrom, addr not in NoAccess → true
//	addr in NoAccess                       → false
//	OnlyFrom not empty, addr not in it     → false
func (a Access) Allowed(addr netip.Addr) bool {
	// A prefix never contains an address with a zone (fe80::1%eth0).
	addr = addr.Unmap().WithZone("")
	for _, p := range a.NoAccess {
		if p.Contains(addr) {
			return false
		}
	}
	if len(a.OnlyFrom) == 0 {
		return true
	}
	for _, p := range a.OnlyFrom {
		if p.Contains(addr) {
			return true
		}
	}
	return false
}

// Empty reports whether the lists allow every address.
func (a Access) Empty() bool { return len(a.OnlyFrom) == 0 && len(a.NoAccess) == 0 }
