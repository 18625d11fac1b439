package upgrade

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Predecessor is the old process of an upgrade, as the new one sees it.
//
// Ownership: the Predecessor owns the new process's end of the
// handshake and a pidfd of the old process; Close closes both. Next is
// meant for one reading goroutine; Terminate and Close may be called
// from another.
type Predecessor struct {
	// Pid is the old process's.
	Pid int

	conn net.Conn
	r    *bufio.Reader

	// readMu makes Interrupt and the deadline Next sets one step each,
	// so that an Interrupt is never overwritten by a later Next.
	readMu      sync.Mutex
	interrupted bool

	mu    sync.Mutex // guards pidfd against Close
	pidfd int        // -1 when it could not be opened, or after Close
	// owned holds the descriptors (as passed) of the unix sockets whose
	// file this process removes when it closes them.
	owned map[int]bool
}

// FromEnv returns the old process when this one was started by an
// upgrade, and nil when it was not. It must run before the sockets
// passed are taken (activation.Files): it sets LISTEN_PID, which the old
// process could not know when it started this one, and WATCHDOG_PID
// when systemd's watchdog was the old process's. It unsets its own
// variables, so that no handler sees them. Variables that do not come
// from this process's parent are an error.
func FromEnv() (*Predecessor, error) {
	fdVar, pidVar, ownedVar := os.Getenv(envFD), os.Getenv(envPID), os.Getenv(envOwned)
	os.Unsetenv(envFD)
	os.Unsetenv(envPID)
	os.Unsetenv(envOwned)
	if fdVar == "" && pidVar == "" {
		return nil, nil
	}
	fd, err1 := strconv.Atoi(fdVar)
	pid, err2 := strconv.Atoi(pidVar)
	if err1 != nil || err2 != nil || fd < 3 {
		return nil, fmt.Errorf("%s=%q and %s=%q are not an upgrade's", envFD, fdVar, envPID, pidVar)
	}
	if ppid := os.Getppid(); ppid != pid {
		return nil, fmt.Errorf("%s names pid %d, but superd's parent is pid %d (the old superd of an upgrade has gone)", envPID, pid, ppid)
	}
	unix.CloseOnExec(fd)
	f := os.NewFile(uintptr(fd), "upgrade")
	conn, err := net.FileConn(f)
	f.Close()
	if err != nil {
		return nil, fmt.Errorf("the upgrade's descriptor %d: %w", fd, err)
	}
	self := strconv.Itoa(os.Getpid())
	if os.Getenv("LISTEN_FDS") != "" {
		os.Setenv("LISTEN_PID", self)
	}
	if os.Getenv("WATCHDOG_USEC") != "" && os.Getenv("WATCHDOG_PID") == pidVar {
		os.Setenv("WATCHDOG_PID", self)
	}
	// The parent cannot be reaped while it waits for this process, so
	// the pid still names it.
	pidfd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		pidfd = -1
	} else {
		unix.CloseOnExec(pidfd)
	}
	owned := map[int]bool{}
	for _, s := range strings.Split(ownedVar, ",") {
		if n, err := strconv.Atoi(s); err == nil {
			owned[n] = true
		}
	}
	return &Predecessor{Pid: pid, conn: conn, r: bufio.NewReader(conn), pidfd: pidfd, owned: owned}, nil
}

// OwnsFile reports whether the old process removes the file of the unix
// socket it passed on descriptor fd when it closes it (it bound it): the
// new one is to do so in its turn. A socket systemd passed is systemd's.
func (p *Predecessor) OwnsFile(fd int) bool { return p.owned[fd] }

// readyTimeout bounds the write of the ready message.
const readyTimeout = 5 * time.Second

// Ready tells the old process that this one has its sockets: it stops
// taking clients and sends its counts.
func (p *Predecessor) Ready() error {
	b, _ := json.Marshal(message{Ready: true, Pid: os.Getpid()})
	p.conn.SetWriteDeadline(time.Now().Add(readyTimeout))
	_, err := p.conn.Write(append(b, '\n'))
	if err != nil {
		return fmt.Errorf("tell the old superd (pid %d) that this one is ready: %w", p.Pid, err)
	}
	return nil
}

// Next reads the next message from the old process, waiting until
// deadline (zero: for ever): a change to its counts, or synced. An
// error ends the handshake: io.EOF when the old process closed it (its
// clients have all ended), a timeout, or a message it cannot read.
func (p *Predecessor) Next(deadline time.Time) (c Change, synced bool, err error) {
	p.readMu.Lock()
	if p.interrupted {
		deadline = time.Unix(1, 0)
	}
	p.conn.SetReadDeadline(deadline)
	p.readMu.Unlock()
	line, err := p.r.ReadBytes('\n')
	if err != nil {
		return Change{}, false, err
	}
	var m message
	if err := json.Unmarshal(line, &m); err != nil {
		return Change{}, false, fmt.Errorf("the old superd (pid %d) sent %q: %w", p.Pid, line, err)
	}
	if m.Synced {
		return Change{}, true, nil
	}
	c = Change{FD: m.FD, Slots: m.Slots, Held: m.Held, Released: m.Released}
	if m.Source != "" {
		if c.Source, err = netip.ParsePrefix(m.Source); err != nil {
			return Change{}, false, fmt.Errorf("the old superd (pid %d) sent source %q: %w", p.Pid, m.Source, err)
		}
		c.Sources = m.Sources
	}
	return c, false, nil
}

// Terminate sends SIGTERM to the old process, if it still runs: when the
// new process stops, so do the old one's remaining handlers, with the
// old one's shutdown_grace. The pidfd makes sure the signal reaches the
// old process and no other that took its pid.
func (p *Predecessor) Terminate() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.pidfd < 0 {
		return fmt.Errorf("no pidfd of the old superd (pid %d)", p.Pid)
	}
	err := unix.PidfdSendSignal(p.pidfd, syscall.SIGTERM, nil, 0)
	if err == unix.ESRCH {
		return nil // it has exited
	}
	return err
}

// Running reports whether the old process still runs, as far as its
// pidfd tells (false once it has exited, or without one).
func (p *Predecessor) Running() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.pidfd < 0 {
		return false
	}
	n, err := unix.Poll([]unix.PollFd{{Fd: int32(p.pidfd), Events: unix.POLLIN}}, 0)
	return err == nil && n == 0
}

// Wait waits until the old process has exited, or for d at most: after
// Terminate, its handlers' shutdown grace. It reports whether it exited.
func (p *Predecessor) Wait(d time.Duration) bool {
	p.mu.Lock()
	fd := p.pidfd
	p.mu.Unlock()
	if fd < 0 {
		return true
	}
	deadline := time.Now().Add(d)
	for {
		ms := int(time.Until(deadline) / time.Millisecond)
		if ms < 0 {
			return false
		}
		n, err := unix.Poll([]unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}, ms)
		if err == unix.EINTR {
			continue
		}
		return err == nil && n == 1 || err != nil
	}
}

// Interrupt makes a Next under way, and every later one, return a
// timeout: superd is stopping while it waits for the old process.
func (p *Predecessor) Interrupt() {
	p.readMu.Lock()
	defer p.readMu.Unlock()
	p.interrupted = true
	p.conn.SetReadDeadline(time.Unix(1, 0))
}

// CloseHandshake ends the handshake (a Next under way returns an error)
// but keeps the pidfd: the old process may still have to be stopped.
func (p *Predecessor) CloseHandshake() error { return p.conn.Close() }

// Close ends the handshake and closes the pidfd. Wait and Terminate must
// not run meanwhile.
func (p *Predecessor) Close() error {
	p.mu.Lock()
	if p.pidfd >= 0 {
		unix.Close(p.pidfd)
		p.pidfd = -1
	}
	p.mu.Unlock()
	return p.conn.Close()
}
