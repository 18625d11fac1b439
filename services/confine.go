package services

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/superd/superd/config"
)

// ConfineCommand is the hidden argv[1] that makes the superd binary act
// as the confinement trampoline (see Confine).
const ConfineCommand = "__confine"

// Go's os/exec cannot set resource limits, a umask or a niceness in the
// child between fork and exec, and setting them on the running handler
// afterwards leaves a window in which it runs unconfined. So a service
// that asks for them starts superd itself as a trampoline that applies
// them, drops privileges, and execs the handler: the handler's first
// instruction already runs confined. Services without those keys skip
// the trampoline and its cost.

// The trampoline is the running superd binary, not the file at superd's
// path: a package upgrade replaces that file (or deletes it) while the
// old daemon runs, and superd must never hand its private protocol, as
// root, to whatever program is there now. So main opens /proc/self/exe
// at start (OpenExecutable), every confined start passes that descriptor
// to the child as exeFD, and the child executes trampolinePath. Go's
// child-side code moves every file of a start into place before the
// exec, whatever the numbers of superd's own descriptors, so exeFD
// always is the binary when the kernel resolves the path; superd's own
// descriptor stays close-on-exec, so no other handler inherits it.
const (
	exeFD          = 4
	trampolinePath = "/proc/self/fd/4"
)

// OpenExecutable opens the running superd binary (/proc/self/exe, which
// names the very file the kernel runs even after it was deleted or
// replaced) for Runtime.Exe. The descriptor is O_PATH: it can be
// executed but not read or written. The caller closes it once no
// handler can start any more.
func OpenExecutable() (*os.File, error) {
	fd, err := unix.Open("/proc/self/exe", unix.O_PATH|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open the running superd binary: %w", &os.PathError{Op: "open", Path: "/proc/self/exe", Err: err})
	}
	return os.NewFile(uintptr(fd), "/proc/self/exe"), nil
}

// confineArgs encodes what the trampoline must do as arguments, so the
// trampoline needs no configuration file and no pipe.
func confineArgs(argv0 string, e *config.Exec) []string {
	args := []string{argv0, ConfineCommand}
	if e.Umask >= 0 {
		args = append(args, "umask="+strconv.Itoa(e.Umask))
	}
	if e.SetNice {
		args = append(args, "nice="+strconv.Itoa(e.Nice))
	}
	for _, r := range e.Rlimits {
		args = append(args, fmt.Sprintf("rlimit=%d:%d", r.Resource, r.Value))
	}
	if e.Cred.Set {
		groups := make([]string, len(e.Cred.Groups))
		for i, g := range e.Cred.Groups {
			groups[i] = strconv.FormatUint(uint64(g), 10)
		}
		args = append(args,
			"uid="+strconv.FormatUint(uint64(e.Cred.Uid), 10),
			"gid="+strconv.FormatUint(uint64(e.Cred.Gid), 10),
			"groups="+strings.Join(groups, ","))
	}
	args = append(args, "--", e.Path)
	return append(args, e.Argv...)
}

// needsConfine reports whether e asks for anything only the trampoline
// can apply.
func needsConfine(e *config.Exec) bool {
	return e.Umask >= 0 || e.SetNice || len(e.Rlimits) > 0
}

// confinement is a parsed trampoline command line.
type confinement struct {
	umask, nice       int
	setUmask, setNice bool
	rlimits           map[int]uint64
	setCred           bool
	uid, gid          int
	groups            []int
	path              string
	argv              []string
}

// reportFD is the trampoline's descriptor for reporting a failure to
// superd; superd reads it to end of file, which the exec brings.
const reportFD = 3

// Confine runs the trampoline: args are the arguments after
// ConfineCommand. It applies the limits, umask and niceness, switches
// to the handler's user, and execs the handler with the current
// environment. It returns only on failure, after reporting the error to
// superd on reportFD (or, when that is not open, on stderr: the report
// must not reach a client through stderr = "socket").
func Confine(args []string) error {
	// The report pipe must not reach the handler, nor the superd binary
	// the trampoline was executed from; and niceness is a thread's, so
	// the thread that sets it must be the one that execs.
	unix.Close(exeFD)
	unix.CloseOnExec(reportFD)
	runtime.LockOSThread()
	err := confine(args)
	if _, werr := unix.Write(reportFD, []byte(err.Error())); werr != nil {
		fmt.Fprintln(os.Stderr, err)
	}
	return err
}

func confine(args []string) error {
	c, err := parseConfine(args)
	if err != nil {
		return fmt.Errorf("superd confine: %w", err)
	}
	if err := c.apply(); err != nil {
		return fmt.Errorf("superd confine %s: %w", c.path, err)
	}
	err = syscall.Exec(c.path, c.argv, os.Environ())
	return fmt.Errorf("exec %s: %w", c.path, err)
}

func parseConfine(args []string) (*confinement, error) {
	c := &confinement{rlimits: make(map[int]uint64)}
	for i, a := range args {
		if a == "--" {
			if len(args) < i+3 {
				return nil, errors.New("missing handler path or argv0")
			}
			c.path, c.argv = args[i+1], args[i+2:]
			return c, nil
		}
		if err := c.parseOption(a); err != nil {
			return nil, err
		}
	}
	return nil, errors.New("missing --")
}

func (c *confinement) parseOption(a string) error {
	key, val, _ := strings.Cut(a, "=")
	var err error
	switch key {
	case "umask":
		c.setUmask = true
		c.umask, err = strconv.Atoi(val)
	case "nice":
		c.setNice = true
		c.nice, err = strconv.Atoi(val)
	case "rlimit":
		res, lim, _ := strings.Cut(val, ":")
		var r int
		var v uint64
		if r, err = strconv.Atoi(res); err == nil {
			v, err = strconv.ParseUint(lim, 10, 64)
			c.rlimits[r] = v
		}
	case "uid":
		c.setCred = true
		c.uid, err = strconv.Atoi(val)
	case "gid":
		c.gid, err = strconv.Atoi(val)
	case "groups":
		c.groups, err = parseInts(val)
	default:
		err = errors.New("unknown option")
	}
	if err != nil {
		return fmt.Errorf("bad argument %q: %w", a, err)
	}
	return nil
}

func parseInts(s string) ([]int, error) {
	if s == "" {
		return []int{}, nil
	}
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(f)
		if err != nil {
			return nil, err
		}
		out = append(out, n)
	}
	return out, nil
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
func (c *confinement) apply() error {
	if c.setCred {
		if err := c.raiseHardLimits(); err != nil {
			return err
		}
	}
	if c.setNice {
		if err := unix.Setpriority(unix.PRIO_PROCESS, 0, c.nice); err != nil {
			return fmt.Errorf("setpriority %d: %w", c.nice, err)
		}
	}
	if c.setUmask {
		unix.Umask(c.umask)
	}
	if c.setCred {
		if err := syscall.Setgroups(c.groups); err != nil {
			return fmt.Errorf("setgroups: %w", err)
		}
		if err := syscall.Setgid(c.gid); err != nil {
			return fmt.Errorf("setgid %d: %w", c.gid, err)
		}
		if err := syscall.Setuid(c.uid); err != nil {
			return fmt.Errorf("setuid %d: %w", c.uid, err)
		}
	}
	for res, v := range c.rlimits {
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
func (c *confinement) raiseHardLimits() error {
	for res, v := range c.rlimits {
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
