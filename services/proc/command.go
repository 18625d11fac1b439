package proc

import (
	"errors"
	"os"
	"runtime"
	"syscall"

	"golang.org/x/sys/unix"
)

// Command is one handler's exec: what syscall.ForkExec needs, with the
// files as *os.File so that they stay open, and the caller's, for the
// call. The Table starts it with syscall.ForkExec rather than os/exec:
// os/exec waits for each process on a thread blocked in waitid, while
// the Table waits for the pidfds of all its handlers in Go's poller (see
// exits.go).
type Command struct {
	Path string
	Args []string // Args[0] is argv[0]
	// Env is passed as it is: the caller resolves duplicated keys
	// (os/exec would keep the last; a C program's getenv finds the
	// first).
	Env []string
	Dir string // "" keeps superd's working directory
	// Stdin, Stdout and Stderr become descriptors 0, 1 and 2; a nil one
	// is /dev/null (Stderr: see Request.LogStderr).
	Stdin, Stdout, Stderr *os.File
	// ExtraFiles become descriptors 3, 4, …; a nil entry is closed in
	// the child.
	ExtraFiles []*os.File
	// Sys must set Setsid, so that the handler's pid is its process
	// group. Start copies it (to add its PidFD) and never changes it.
	Sys *syscall.SysProcAttr
}

// closedFD is what syscall.ProcAttr.Files takes for "closed in the child".
const closedFD = ^uintptr(0)

// forkExec starts c with null as the nil ones of Stdin, Stdout and
// Stderr, and stderrFD, unless it is -1, in place of Stderr (the stderr
// pipe, which is no *os.File: one would cost an fcntl, a finalizer and
// the poller's close on every connection). It returns the child's pid and its pidfd (-1 when the kernel
// gave none; then the caller waits by pid).
func forkExec(c *Command, null *os.File, stderrFD int) (pid, pidfd int, err error) {
	files := make([]uintptr, 3+len(c.ExtraFiles))
	for i, f := range [3]*os.File{c.Stdin, c.Stdout, c.Stderr} {
		if f == nil {
			f = null
		}
		files[i] = f.Fd()
	}
	if stderrFD >= 0 {
		files[2] = uintptr(stderrFD)
	}
	for i, f := range c.ExtraFiles {
		files[3+i] = closedFD
		if f != nil {
			files[3+i] = f.Fd()
		}
	}
	sys := *c.Sys
	pidfd = -1
	sys.PidFD = &pidfd
	pid, err = syscall.ForkExec(c.Path, c.Args, &syscall.ProcAttr{Dir: c.Dir, Env: c.Env, Files: files, Sys: &sys})
	// The descriptors in files must stay open until the child has them.
	runtime.KeepAlive(c)
	runtime.KeepAlive(null)
	if err != nil {
		return 0, -1, &os.PathError{Op: "fork/exec", Path: c.Path, Err: err}
	}
	return pid, pidfd, nil
}

// awaitExit returns once the child pid has exited (or cannot be waited
// for), without reaping it: its zombie keeps the pid from being reused
// until the caller's wait4, which the Table makes under its lock with
// the removal of the handler from its table. It closes pidfd (-1 for
// none). With a pidfd it parks the goroutine in Go's poller until the
// pidfd becomes readable, rather than holding an OS thread in a blocking
// wait: a thousand running handlers cost a thousand parked goroutines,
// not a thousand threads.
//
// The pid itself is what waitid watches: a zombie's pid cannot be reused
// before its parent reaps it, and superd reaps its handlers nowhere else
// (ReapOrphans skips them).
func awaitExit(pid, pidfd int) {
	if pidfd >= 0 && pollExit(pid, pidfd) {
		return
	}
	for {
		var info unix.Siginfo
		err := unix.Waitid(unix.P_PID, pid, &info, unix.WEXITED|unix.WNOWAIT, nil)
		if !errors.Is(err, syscall.EINTR) {
			return
		}
	}
}

// exitedYet reports whether the child pid has exited (or cannot be
// waited for), without reaping it.
func exitedYet(pid int) bool {
	for {
		var info unix.Siginfo
		err := unix.Waitid(unix.P_PID, pid, &info, unix.WEXITED|unix.WNOHANG|unix.WNOWAIT, nil)
		switch {
		case errors.Is(err, syscall.EINTR):
			continue
		case err != nil:
			return true // nothing to wait for: the caller's wait4 says why
		}
		// WNOHANG with no change of state leaves info zeroed.
		return info.Signo != 0
	}
}

// pollExit waits for pidfd in the poller until pid has exited. It closes
// pidfd. It reports false when the poller could not take the pidfd (the
// caller then waits by pid).
func pollExit(pid, pidfd int) bool {
	// A pidfd has no other status flag to keep: one fcntl, not
	// unix.SetNonblock's two.
	if _, err := unix.FcntlInt(uintptr(pidfd), unix.F_SETFL, unix.O_NONBLOCK); err != nil {
		unix.Close(pidfd)
		return false
	}
	f := os.NewFile(uintptr(pidfd), "pidfd")
	defer f.Close()
	rc, err := f.SyscallConn()
	if err != nil {
		return false
	}
	// rc.Read's own error means the poller could not wait (a descriptor
	// it does not take). The first call must look even though the
	// handler has only just started: rc.Read clears the readiness the
	// poller may already have seen before it waits, so an exit before
	// that point is found only by looking.
	return rc.Read(func(uintptr) bool { return exitedYet(pid) }) == nil
}
