package proc

import (
	"errors"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// The exit poller waits for every running handler at once. The pidfds
// of the handlers go into one epoll instance of the Table's own, which
// sits in Go's poller as a single descriptor; one goroutine (reapExits)
// reaps whatever that instance reports and finishes each handler itself.
//
// A reaper per handler parked on its pidfd (waitExit) cost, per
// connection, an fcntl to make the pidfd non-blocking, its registration
// with Go's poller and its removal (two epoll_ctl), a wait4 that found
// the handler still running (the poller's readiness could predate the
// registration), and two goroutine wake-ups: the job handed to a worker,
// then the exit. Here it is one epoll_ctl at the start, one wait4 at the
// exit, and one wake-up for however many handlers exited meanwhile.
//
// Each pidfd is registered EPOLLONESHOT, with the pid as its data: it is
// reported once. Its close at the reap removes it from the instance once
// no other descriptor table holds it; one that still does (the child of
// a concurrent fork, between its clone and its exec) is already disarmed,
// so it cannot be reported again for a pid the kernel has since reused.
//
// Starts through the confinement trampoline, a kernel that gives no
// pidfd, and a registration that fails keep a reaper of their own.

// maxExitEvents is how many exits one epoll_wait takes.
const maxExitEvents = 32

// pollExit registers r's pidfd with the exit poller, which it starts on
// first use, and reports whether it did: when not, r needs a reaper of
// its own. The epoll_ctl runs under t.mu, so that Shutdown cannot close
// the instance under it.
func (t *Table) pollExit(r *running) bool {
	if r.pidfd < 0 {
		return false
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.exits == nil && !t.openExitsLocked() {
		return false
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLONESHOT, Fd: int32(r.pid)}
	return unix.EpollCtl(t.exitsFD, unix.EPOLL_CTL_ADD, r.pidfd, &ev) == nil
}

// openExitsLocked creates the exit poller's epoll instance and starts
// reapExits on it. It reports false when the instance could not be made
// (descriptors exhausted, say): handlers then get reapers of their own,
// and the next start tries again. t.mu is held.
//
// Goroutine: reapExits is the Table's; it ends when closeExits closes the
// instance, at the end of Shutdown.
func (t *Table) openExitsLocked() bool {
	fd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return false
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return false
	}
	f := os.NewFile(uintptr(fd), "exit poller")
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return false
	}
	t.exits, t.exitsFD = f, fd
	go t.reapExits(rc)
	return true
}

// closeExits stops the exit poller once every handler has been reaped
// (Shutdown calls it then): closing the instance ends reapExits.
func (t *Table) closeExits() {
	t.mu.Lock()
	f := t.exits
	t.exits, t.exitsFD = nil, -1
	t.mu.Unlock()
	if f != nil {
		f.Close()
	}
}

// reapExits reaps the handlers whose pidfds the instance reports, until
// the instance is closed.
func (t *Table) reapExits(rc syscall.RawConn) {
	var evs [maxExitEvents]unix.EpollEvent
	for {
		n := 0
		err := rc.Read(func(fd uintptr) bool {
			for {
				var err error
				n, err = unix.EpollWait(int(fd), evs[:], 0)
				if !errors.Is(err, syscall.EINTR) {
					// Nothing yet (or a failure, which waiting for the
					// next readiness is all there is to do about).
					return err == nil && n > 0
				}
			}
		})
		if err != nil {
			return // closed by closeExits
		}
		for _, ev := range evs[:n] {
			t.exited(int(ev.Fd))
		}
	}
}

// exited reaps the handler pid, whose pidfd the exit poller reported
// readable, and finishes it.
func (t *Table) exited(pid int) {
	t.mu.Lock()
	r := t.procs[pid]
	t.mu.Unlock()
	if r == nil {
		return // not a handler's: no registration carries another pid
	}
	var ws syscall.WaitStatus
	for {
		n, err := syscall.Wait4(pid, &ws, syscall.WNOHANG, nil)
		if errors.Is(err, syscall.EINTR) {
			continue
		}
		if err == nil && n == 0 {
			// Readable but not yet waitable: hand it to a reaper of its
			// own rather than re-arm a registration that said so.
			t.workers.run(func() {
				defer t.goDone()
				t.reap(r)
			})
			return
		}
		unix.Close(r.pidfd)
		t.finish(r, ws, err)
		t.goDone()
		return
	}
}
