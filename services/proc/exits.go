package proc

import (
	"errors"
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// The exit poller waits for every running handler at once. The pidfds
// of the handlers go into one epoll instance of the Table's own, which
// sits in Go's poller as a single descriptor; one goroutine (reapExits)
// reaps whatever that instance reports, and calls each one's Exited. The
// rest of an exit, which may wait (the stderr pipe's drain, the log),
// goes to a worker, one per batch of exits.
//
// A reaper per handler parked on its pidfd (awaitExit) cost, per
// connection, an fcntl to make the pidfd non-blocking, its registration
// with Go's poller and its removal (two epoll_ctl), a wait4 that found
// the handler still running (the poller's readiness could predate the
// registration), and two goroutine wake-ups: the job handed to a worker,
// then the exit. Here it is one epoll_ctl at the start, one wait4 at the
// exit, and two wake-ups (the poller, the worker) for however many
// handlers exited meanwhile.
//
// The wait4 and the removal from the Table's procs (with the record of
// what the handler left in its group) happen in one step under its lock,
// so that a Start of a new handler that got the same pid, a timeout or a
// Signal never sees the reaped one's entry, and a signal for its group
// always finds its leftovers.
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

// registerExit registers r's pidfd with the exit poller, which it starts on
// first use, and reports whether it did: when not, r needs a reaper of
// its own. The epoll_ctl runs under t.mu, so that Shutdown cannot close
// the instance under it.
func (t *Table) registerExit(r *running) bool {
	if r.pidfd < 0 {
		return false
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.exits == nil && !t.openExitsLocked() {
		return false
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLONESHOT, Fd: int32(r.pid)}
	if unix.EpollCtl(t.exitsFD, unix.EPOLL_CTL_ADD, r.pidfd, &ev) != nil {
		return false
	}
	r.polled = true
	return true
}

// openExitsLocked creates the exit poller's epoll instance and starts
// reapExits on it. It reports false when the instance could not be made
// (descriptors exhausted, say) or Go's poller would not take it:
// handlers then get reapers of their own, and the next start tries
// again. t.mu is held.
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
	// os.NewFile keeps a descriptor that Go's poller refused (its own
	// epoll_ctl failed: ENOMEM, max_user_watches) as a blocking file,
	// which a deadline then reports; reapExits could never wait on it.
	if err := f.SetReadDeadline(time.Time{}); err != nil {
		f.Close()
		return false
	}
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return false
	}
	t.exits, t.exitsFD = f, fd
	go t.reapExits(f, rc)
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

// reapExits reaps the handlers whose pidfds the instance f reports, until
// f is closed. What may wait in a reap (the stderr drain, the log) goes
// to a worker, one per batch of exits: a process that a handler left
// holding its stderr, or a slow log, must hold up no other handler's
// reap, Exited or timeout.
func (t *Table) reapExits(f *os.File, rc syscall.RawConn) {
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
			// closeExits forgets f before it closes it: any other error
			// is the poller's own.
			t.mu.Lock()
			failed := t.exits == f
			t.mu.Unlock()
			if failed {
				t.abandonExits(f)
			}
			return
		}
		var tails []exitTail
		for _, ev := range evs[:n] {
			if x, ok := t.exited(int(ev.Fd)); ok {
				tails = append(tails, x)
			}
		}
		if len(tails) > 0 {
			t.workers.run(func() {
				for _, x := range tails {
					t.logExit(x.r, x.exit)
					t.goDone()
				}
			})
		}
	}
}

// exitTail is a reaped handler whose exit is still to log.
type exitTail struct {
	r    *running
	exit Exit
}

// exited reaps the handler pid, whose pidfd the exit poller reported
// readable, and does what must follow at once (see reaped). It returns
// the handler for logExit, and false when there is nothing to log (yet).
func (t *Table) exited(pid int) (exitTail, bool) {
	t.mu.Lock()
	r := t.procs[pid]
	if r == nil {
		t.mu.Unlock()
		return exitTail{}, false // not a handler's: no registration carries another pid
	}
	ws, err, done := t.reapLocked(r)
	if !done {
		// Readable but not yet waitable: hand it to a reaper of its own
		// rather than re-arm a registration that said so.
		r.polled = false
		t.mu.Unlock()
		t.reapAlone(r)
		return exitTail{}, false
	}
	t.mu.Unlock()
	unix.Close(r.pidfd)
	return exitTail{r, t.reaped(r, ws, err)}, true
}

// abandonExits gives every handler the exit poller f holds a reaper of
// its own, after f failed in a way no handler can wait on (an error
// other than its close), and forgets f: the next start opens another.
func (t *Table) abandonExits(f *os.File) {
	t.mu.Lock()
	if t.exits == f {
		t.exits, t.exitsFD = nil, -1
	}
	var orphans []*running
	for _, r := range t.procs {
		if r.polled {
			r.polled = false
			orphans = append(orphans, r)
		}
	}
	t.mu.Unlock()
	f.Close()
	for _, r := range orphans {
		t.reapAlone(r)
	}
}
