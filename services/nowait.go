package services

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"os"
	"strconv"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// serveNowait is the accept loop of a handler-per-connection service.
func (s *Service) serveNowait(ctx context.Context) error {
	// Each connection's checks and start run in a goroutine of their
	// own, bounded by the instances slots, because starting a process
	// blocks until the child has exec'd: the loop accepts the next
	// client meanwhile. serveNowait waits for them before it returns.
	var (
		wg    sync.WaitGroup
		delay time.Duration
		fails startFailures
	)
	defer wg.Wait()
	for s.admit(ctx) {
		// fork failing for want of processes or descriptors, or a handler
		// gone missing: slow down, as for accept errors.
		if d := fails.delay(); d > 0 && !sleep(ctx, d) {
			s.adm.slots.release()
			return nil
		}
		// While a client already accepted waits for descriptors to
		// start its handler, it goes first: another accept would only
		// take one more descriptor and make one more client wait.
		if !s.short.waitNoneWaiting(ctx) {
			s.adm.slots.release()
			return nil
		}
		fd, sa, err := s.sock.acceptRaw()
		if err != nil {
			s.adm.slots.release()
			if s.acceptError(ctx, err, &delay) {
				return nil
			}
			continue
		}
		delay = 0
		wg.Add(1)
		go func() {
			defer wg.Done()
			fails.record(s.handle(ctx, fd, sa))
		}()
	}
	return nil
}

// startFailures is the back-off after handlers failed to start.
type startFailures struct {
	mu sync.Mutex
	d  time.Duration
}

func (f *startFailures) record(err error) {
	if errors.Is(err, errRefused) {
		return // no start was tried: says nothing of the handler
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if err == nil {
		f.d = 0
	} else {
		backoff(&f.d)
	}
}

func (f *startFailures) delay() time.Duration {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.d
}

// backoff doubles *delay from 5ms up to 1s, as net/http does for accept
// errors, and returns it.
func backoff(delay *time.Duration) time.Duration {
	if *delay == 0 {
		*delay = 5 * time.Millisecond
	} else if *delay *= 2; *delay > time.Second {
		*delay = time.Second
	}
	return *delay
}

// peer describes one accepted connection.
type peer struct {
	proto  string         // TCP or UNIX
	local  netip.AddrPort // TCP only
	remote netip.AddrPort // TCP only
	cred   *unix.Ucred    // UNIX only; nil when the kernel gave none
}

// String is the remote address as logged.
func (p *peer) String() string {
	if p.proto == "TCP" {
		return p.remote.String()
	}
	if p.cred != nil {
		return "pid:" + strconv.Itoa(int(p.cred.Pid))
	}
	return "unix"
}

// env returns the UCSPI variables, plus the ones git daemon --inetd reads.
func (p *peer) env() []string {
	env := []string{"PROTO=" + p.proto}
	switch {
	case p.proto == "TCP":
		rip, rport := p.remote.Addr().String(), strconv.Itoa(int(p.remote.Port()))
		env = append(env,
			"TCPLOCALIP="+p.local.Addr().String(),
			"TCPLOCALPORT="+strconv.Itoa(int(p.local.Port())),
			"TCPREMOTEIP="+rip, "TCPREMOTEPORT="+rport,
			"REMOTE_ADDR="+rip, "REMOTE_PORT="+rport)
	case p.cred != nil:
		env = append(env,
			"UNIXREMOTEEUID="+strconv.Itoa(int(p.cred.Uid)),
			"UNIXREMOTEEGID="+strconv.Itoa(int(p.cred.Gid)),
			"UNIXREMOTEPID="+strconv.Itoa(int(p.cred.Pid)))
	}
	return env
}

// describe works out who is on the other end of fd.
func describe(fd int, sa syscall.Sockaddr) *peer {
	return describeAt(fd, sa, netip.AddrPort{})
}

// describeAt is describe for a socket whose local address is known
// (bound to one address, not a wildcard), which saves a getsockname.
func describeAt(fd int, sa syscall.Sockaddr, local netip.AddrPort) *peer {
	remote, ok := addrPort(sa)
	if !ok {
		if _, isUnix := sa.(*syscall.SockaddrUnix); !isUnix {
			return &peer{} // unknown: check refuses it
		}
		p := &peer{proto: "UNIX"}
		if cred, err := unix.GetsockoptUcred(fd, unix.SOL_SOCKET, unix.SO_PEERCRED); err == nil {
			p.cred = cred
		}
		return p
	}
	p := &peer{proto: "TCP", remote: remote, local: local}
	if !local.IsValid() {
		// syscall's, not x/sys's: that one asks SO_PROTOCOL every time.
		if lsa, err := syscall.Getsockname(fd); err == nil {
			p.local, _ = addrPort(lsa)
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

// handle runs the checks that need the peer's address and starts the
// handler. It owns fd and the slot taken by admit. It returns errRefused
// when the checks turned the client away, and another error when a
// handler could not be started. A start that fails for want of
// descriptors is tried again (startDeferred) until ctx is done.
func (s *Service) handle(ctx context.Context, fd int, sa syscall.Sockaddr) error {
	sp := s.spec.Load()
	p := describeAt(fd, sa, s.sock.local)
	release, ok := s.check(sp, p)
	if !ok {
		unix.Close(fd)
		return errRefused
	}
	conn := os.NewFile(uintptr(fd), "conn")
	defer conn.Close()
	remote := p.String()
	s.adm.active.Add(1)
	err := s.startDeferred(ctx, func() error {
		_, err := s.rt.Procs.start(sp.request(conn, p.env(), s.log, remote, func() {
			s.adm.active.Add(-1)
			release()
		}))
		return err
	})
	switch {
	case errors.Is(err, errReported):
		// Started and reaped as usual: the reaper releases.
	case err != nil:
		s.adm.active.Add(-1)
		release()
		s.log.Error("start_failed", "remote", remote, "path", sp.svc.Exec.Path, "err", err)
	}
	return err
}

// errRefused is handle's answer for a connection the access lists or
// per_source turned away: no start was tried.
var errRefused = errors.New("connection refused by the access lists or per_source")

// check applies the access lists and per_source. On success it returns
// the function that gives back the slots the connection holds.
func (s *Service) check(sp *spec, p *peer) (release func(), ok bool) {
	svc := sp.svc
	switch p.proto {
	case "UNIX":
		return s.adm.slots.release, true
	case "":
		// Fail closed: a client superd cannot identify passes no list.
		s.adm.slots.release()
		s.adm.denials.log(s.log, "unknown peer", "?")
		return nil, false
	}
	ip := p.remote.Addr()
	if !svc.Access.Allowed(ip) {
		s.adm.slots.release()
		s.adm.denials.log(s.log, "access", p.String())
		return nil, false
	}
	if svc.Limits.PerSource <= 0 {
		return s.adm.slots.release, true
	}
	key := sourceOf(ip)
	if !s.adm.sources.take(key, svc.Limits.PerSource) {
		s.adm.slots.release()
		s.adm.denials.log(s.log, "per_source", p.String())
		return nil, false
	}
	return func() {
		s.adm.sources.give(key)
		s.adm.slots.release()
	}, true
}

// sourceKey identifies a client for per_source: its IPv4 address, or
// its IPv6 /64 (one host usually owns a whole /64).
type sourceKey = netip.Prefix

func sourceOf(ip netip.Addr) sourceKey {
	ip = ip.Unmap()
	bits := 32
	if ip.Is6() {
		bits = 64
	}
	p, _ := ip.WithZone("").Prefix(bits)
	return p
}

// sources counts running handlers per client.
type sources struct {
	mu sync.Mutex
	n  map[sourceKey]int
}

func (c *sources) take(k sourceKey, limit int) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n[k] >= limit {
		return false
	}
	c.n[k]++
	return true
}

func (c *sources) give(k sourceKey) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n[k]--; c.n[k] <= 0 {
		delete(c.n, k)
	}
}

// denials logs refused connections at most once a second per reason, so
// that a flood cannot fill the disk; each line carries the number of
// refusals it stands for (count), the last refused client among them.
// Refusals held back are logged by a timer at the end of their second,
// so the count of a flood's tail is not lost.
type denials struct {
	mu      sync.Mutex
	last    map[string]time.Time
	count   map[string]int
	remote  map[string]string
	pending map[string]bool // a flush timer is set
}

func (d *denials) log(log *slog.Logger, reason, remote string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.last == nil {
		d.last, d.count = make(map[string]time.Time), make(map[string]int)
		d.remote, d.pending = make(map[string]string), make(map[string]bool)
	}
	d.count[reason]++
	d.remote[reason] = remote
	wait := time.Second - time.Since(d.last[reason])
	if wait <= 0 {
		d.flushLocked(log, reason)
		return
	}
	if !d.pending[reason] {
		d.pending[reason] = true
		time.AfterFunc(wait, func() {
			d.mu.Lock()
			defer d.mu.Unlock()
			d.pending[reason] = false
			d.flushLocked(log, reason)
		})
	}
}

func (d *denials) flushLocked(log *slog.Logger, reason string) {
	n := d.count[reason]
	if n == 0 {
		return
	}
	d.last[reason], d.count[reason] = time.Now(), 0
	log.Warn("refused", "reason", reason, "remote", d.remote[reason], "count", n)
}
