package confine

import (
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"syscall"

	"golang.org/x/sys/unix"
)

// Run runs the trampoline: args are the arguments after Command. It
// applies the limits, umask and niceness, switches to the handler's
// user, and execs the handler with the current environment. It returns
// only on failure, after reporting the error to superd on ReportFD (or,
// when that is not open, on stderr: the report must not reach a client
// through stderr = "socket"). The caller then exits.
func Run(args []string) error {
	// The report pipe must not reach the handler, nor the superd binary
	// the trampoline was executed from; and niceness is a thread's, so
	// the thread that sets it must be the one that execs.
	unix.Close(ExeFD)
	unix.CloseOnExec(ReportFD)
	runtime.LockOSThread()
	// Once a tight nproc or as is in force, the Go runtime must not need
	// another thread or another mapping before the exec: one P and no
	// garbage collection (the trampoline allocates almost nothing) keep
	// it from starting GC workers or new Ms.
	runtime.GOMAXPROCS(1)
	debug.SetGCPercent(-1)
	err := run(args)
	if _, werr := unix.Write(ReportFD, []byte(err.Error())); werr != nil {
		fmt.Fprintln(os.Stderr, err)
	}
	return err
}

func run(args []string) error {
	s, err := parse(args)
	if err != nil {
		return fmt.Errorf("superd confine: %w", err)
	}
	env := os.Environ()
	spareHeap()
	if err := s.apply(); err != nil {
		return fmt.Errorf("superd confine %s: %w", s.path, err)
	}
	// syscall.Exec, not a raw execve: it also puts back the NOFILE soft
	// limit the process started with, which the handler must get.
	err = syscall.Exec(s.path, s.argv, env)
	return fmt.Errorf("exec %s: %w", s.path, err)
}

// apply confines the trampoline in an order that works for a Go
// program with little room:
//
//  1. As root, raise the hard limits the configuration raises (only root
//     may), leaving the soft limits alone: nothing is tighter yet.
//  2. Niceness (a negative one needs root) and umask.
//  3. Switch user. Go does it on every thread, which needs memory; and
//     the kernel marks a process that is over its new user's nproc at
//     this moment, then refuses its exec — the trampoline's own threads
//     would count.
//  4. Set each limit, soft and hard, to its value: lowering needs no
//     privilege. From here to the exec the trampoline allocates almost
//     nothing, so a tight `as` cannot starve it.
func (s *settings) apply() error {
	if s.setCred {
		if err := s.raiseHardLimits(); err != nil {
			return err
		}
	}
	if s.setNice {
		if err := unix.Setpriority(unix.PRIO_PROCESS, 0, s.nice); err != nil {
			return fmt.Errorf("setpriority %d: %w", s.nice, err)
		}
	}
	if s.setUmask {
		unix.Umask(s.umask)
	}
	if s.setCred {
		if err := syscall.Setgroups(s.groups); err != nil {
			return fmt.Errorf("setgroups: %w", err)
		}
		if err := syscall.Setgid(s.gid); err != nil {
			return fmt.Errorf("setgid %d: %w", s.gid, err)
		}
		if err := syscall.Setuid(s.uid); err != nil {
			return fmt.Errorf("setuid %d: %w", s.uid, err)
		}
	}
	for res, v := range s.rlimits {
		// syscall.Setrlimit (not x/sys) so that Go's exec does not put
		// back the NOFILE soft limit it saw at start.
		if err := syscall.Setrlimit(res, &syscall.Rlimit{Cur: v, Max: v}); err != nil {
			return fmt.Errorf("setrlimit %d=%d: %w", res, v, err)
		}
	}
	return nil
}

// raiseHardLimits raises, while still root, the hard limits that the
// configuration sets higher than they are.
func (s *settings) raiseHardLimits() error {
	for res, v := range s.rlimits {
		var cur syscall.Rlimit
		if err := syscall.Getrlimit(res, &cur); err != nil {
			return fmt.Errorf("getrlimit %d: %w", res, err)
		}
		if v <= cur.Max {
			continue
		}
		cur.Max = v
		if err := syscall.Setrlimit(res, &cur); err != nil {
			return fmt.Errorf("setrlimit %d hard=%d: %w", res, v, err)
		}
	}
	return nil
}

// spareHeap leaves free pages in the Go heap, mapped already, while
// nothing is tight yet: once a small `as` is in force every new mapping
// fails, and the C strings syscall.Exec allocates must not need one
// ("runtime: out of memory" at the very exec). The collection runs here,
// as root and before any limit, so its worker threads exist already;
// with the collector off (Run) none runs again before the exec.
func spareHeap() {
	buf := make([]byte, 4<<20)
	for i := 0; i < len(buf); i += 4096 {
		buf[i] = 1
	}
	runtime.KeepAlive(buf)
	buf = nil
	runtime.GC()
}
