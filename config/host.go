package config

import (
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Host is what Load asks the running system, beyond the files and the
// user databases, about a superd that is not root: which ports it may
// bind, to whom it may give a unix socket, which files it may execute.
// Each nil field asks the real system; tests set them. Load asks each
// question at most once, and never when Options.Euid is 0.
type Host struct {
	// UnprivilegedPortStart returns net.ipv4.ip_unprivileged_port_start:
	// the lowest port a process without CAP_NET_BIND_SERVICE may bind.
	// The real one reads /proc/sys/net/ipv4/ip_unprivileged_port_start,
	// and says 1024 (the kernel's default) when it cannot.
	UnprivilegedPortStart func() int
	// HasCapability reports whether the process has capability (a
	// unix.CAP_* number) in its effective set. The real one asks
	// capget(2), and says false when that fails.
	HasCapability func(capability int) bool
	// Groups returns the effective gid and the supplementary groups of
	// the process. The real one asks getegid(2) and getgroups(2).
	Groups func() (gid uint32, groups []uint32)
}

// portStartFile holds net.ipv4.ip_unprivileged_port_start.
const portStartFile = "/proc/sys/net/ipv4/ip_unprivileged_port_start"

// defaultPortStart is the kernel's default for the sysctl, and what
// Linux before 4.11 (which has no such sysctl) always used.
const defaultPortStart = 1024

// realPortStart reads the sysctl of superd's network namespace.
func realPortStart() int {
	b, err := os.ReadFile(portStartFile)
	if err != nil {
		return defaultPortStart
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || n < 0 {
		return defaultPortStart
	}
	return n
}

// realHasCapability reads the effective set of the calling thread; Go
// gives every thread of a process the same sets.
func realHasCapability(capability int) bool {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData // version 3: 64 bits in two halves
	if capability < 0 || capability >= 64 || unix.Capget(&hdr, &data[0]) != nil {
		return false
	}
	return data[capability/32].Effective&(1<<(capability%32)) != 0
}

// realGroups returns the process's groups; when getgroups fails, only
// the effective gid.
func realGroups() (uint32, []uint32) {
	gid := uint32(os.Getegid())
	ids, err := os.Getgroups()
	if err != nil {
		return gid, nil
	}
	out := make([]uint32, 0, len(ids))
	for _, g := range ids {
		out = append(out, uint32(g))
	}
	return gid, out
}

// hostFacts remembers the answers of one Host for one Load.
type hostFacts struct {
	h Host

	portStart   int
	portStartOK bool
	caps        map[int]bool
	gid         uint32
	groups      []uint32
	groupsOK    bool
}

// facts fills in the real system for the fields left nil.
func (h Host) facts() *hostFacts {
	if h.UnprivilegedPortStart == nil {
		h.UnprivilegedPortStart = realPortStart
	}
	if h.HasCapability == nil {
		h.HasCapability = realHasCapability
	}
	if h.Groups == nil {
		h.Groups = realGroups
	}
	return &hostFacts{h: h, caps: map[int]bool{}}
}

func (f *hostFacts) unprivilegedPortStart() int {
	if !f.portStartOK {
		f.portStart, f.portStartOK = f.h.UnprivilegedPortStart(), true
	}
	return f.portStart
}

func (f *hostFacts) hasCapability(c int) bool {
	v, ok := f.caps[c]
	if !ok {
		v = f.h.HasCapability(c)
		f.caps[c] = v
	}
	return v
}

// ownGroups returns the effective gid and every group of the process,
// the effective gid included.
func (f *hostFacts) ownGroups() (uint32, []uint32) {
	if !f.groupsOK {
		gid, groups := f.h.Groups()
		f.gid, f.groups, f.groupsOK = gid, sortedIDs(append(slices.Clone(groups), gid)), true
	}
	return f.gid, f.groups
}

// checkPortPrivilege refuses, for a superd that is not root, a port
// that it could not bind: without it, `run` would retry the bind for
// ever while reporting ready. Disabled services are never bound.
func (b *builder) checkPortPrivilege(port int) {
	if b.l.opts.Euid == 0 || b.sp.disabled {
		return
	}
	start := b.l.host.unprivilegedPortStart()
	if port >= start || b.l.host.hasCapability(unix.CAP_NET_BIND_SERVICE) {
		return
	}
	b.failf("port", "port %d needs root or CAP_NET_BIND_SERVICE (net.ipv4.ip_unprivileged_port_start is %d)", port, start)
}

// socketOwner resolves socket_user and socket_group of a unix socket.
// chown(2) lets a process without CAP_CHOWN give a file it owns only to
// itself and to a group it belongs to: a superd that is not root may
// name nobody else, or its chown would fail at every bind.
func (b *builder) socketOwner() SocketOwner {
	sp := b.sp
	var o SocketOwner
	if sp.has("socket_user") {
		o.Uid, o.UidSet = sp.socketUser.uid, true
	}
	if sp.has("socket_group") {
		o.Gid, o.GidSet = sp.socketGroup.gid, true
	}
	euid := b.l.opts.Euid
	if euid == 0 || sp.disabled || (!o.UidSet && !o.GidSet) || b.l.host.hasCapability(unix.CAP_CHOWN) {
		return o
	}
	ok := true
	if o.UidSet && int64(o.Uid) != int64(euid) {
		b.failf("socket_user", "superd runs as uid %d and cannot give the socket to user %s (uid %d): that needs root or CAP_CHOWN",
			euid, sp.socketUser.name, o.Uid)
		ok = false
	}
	if _, groups := b.l.host.ownGroups(); o.GidSet && !slices.Contains(groups, o.Gid) {
		b.failf("socket_group", "superd runs as uid %d and cannot give the socket to group %s (gid %d), which is not one of its groups %s: that needs root or CAP_CHOWN",
			euid, sp.socketGroup.name, o.Gid, formatIDs(groups))
		ok = false
	}
	if !ok {
		return SocketOwner{}
	}
	return o
}

// formatIDs is "[4 27 1000]".
func formatIDs(ids []uint32) string { return fmt.Sprint(ids) }
