// Package confine is superd's confinement trampoline: both sides of the
// private protocol by which superd starts a handler through its own
// binary, so that resource limits, a umask, a niceness and a user switch
// are in force before the handler's first instruction.
//
// Go's os/exec cannot set resource limits, a umask or a niceness in the
// child between fork and exec, and setting them on the running handler
// afterwards leaves a window in which it runs unconfined. So a service
// that asks for them (Needed) is started as the running superd binary
// (TrampolinePath, with ExtraFiles) and the argument vector Args builds;
// that process, given Command as argv[1], calls Run, which applies the
// settings, drops privileges and execs the handler. Services without
// those keys skip the trampoline and its cost.
//
// The package deliberately does not start, wait for or log processes,
// read the configuration file, or hold any state: the process table
// starts the trampoline and reads its failure report (ReportFD), and the
// configuration has been validated before it gets here. Its only
// imports are config, for the Exec it encodes, and the system calls.
package confine

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"

	"github.com/superd/superd/config"
)

// Command is the hidden argv[1] that makes the superd binary act as the
// confinement trampoline (see Run).
const Command = "__confine"

// The trampoline is the running superd binary, not the file at superd's
// path: a package upgrade replaces that file (or deletes it) while the
// old daemon runs, and superd must never hand its private protocol, as
// root, to whatever program is there now. So main opens /proc/self/exe
// at start (OpenExecutable), every confined start passes that descriptor
// to the child as ExeFD, and the child executes TrampolinePath. Go's
// child-side code moves every file of a start into place before the
// exec, whatever the numbers of superd's own descriptors, so ExeFD
// always is the binary when the kernel resolves the path; superd's own
// descriptor stays close-on-exec, so no other handler inherits it.
const (
	// ReportFD is the trampoline's descriptor for reporting a failure
	// to superd: the write end of a close-on-exec pipe, so superd reads
	// it to end of file, which the handler's exec (or the trampoline's
	// death) brings. ExtraFiles puts it in place.
	ReportFD = 3
	// ExeFD is the running superd binary in the trampoline, from
	// OpenExecutable. ExtraFiles puts it in place.
	ExeFD = 4
	// TrampolinePath is what a confined start executes: ExeFD, resolved
	// by the kernel in the child.
	TrampolinePath = "/proc/self/fd/4"
)

// ExtraFiles returns the exec.Cmd ExtraFiles of a confined start: report
// (the write end of the report pipe) as ReportFD and exe (from
// OpenExecutable) as ExeFD. The caller still owns and closes both.
func ExtraFiles(report, exe *os.File) []*os.File {
	// ExtraFiles[i] becomes descriptor 3+i in the child.
	files := make([]*os.File, ExeFD-2)
	files[ReportFD-3], files[ExeFD-3] = report, exe
	return files
}

// OpenExecutable opens the running superd binary (/proc/self/exe, which
// names the very file the kernel runs even after it was deleted or
// replaced) for ExtraFiles. The descriptor is O_PATH: it can be executed
// but not read or written. The caller closes it once no handler can
// start any more.
func OpenExecutable() (*os.File, error) {
	fd, err := unix.Open("/proc/self/exe", unix.O_PATH|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open the running superd binary: %w", &os.PathError{Op: "open", Path: "/proc/self/exe", Err: err})
	}
	return os.NewFile(uintptr(fd), "/proc/self/exe"), nil
}

// Needed reports whether e asks for anything only the trampoline can
// apply: a umask, a niceness or resource limits. A user switch alone
// does not need it (os/exec does that); with the trampoline, the
// trampoline does it, after the limits (see Args).
func Needed(e *config.Exec) bool {
	return e.Umask >= 0 || e.SetNice || len(e.Rlimits) > 0
}
