package testkit

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// Argv0 is the argv[0] that makes a test binary act as a helper program:
// argv is [Argv0, NAME, ARGS...]. It is argv[0], not an environment
// variable as in os/exec's tests, because superd builds a handler's
// environment from an empty list: argv is what reaches the handler.
const Argv0 = "helper"

// Helpers is a registry of helper programs, the handlers that tests run
// by re-executing their own test binary (see net/http/cgi's host_test.go
// and os/exec's exec_test.go). A package's tests make one, Register
// their helpers, and call Dispatch (or Main) first thing in TestMain.
type Helpers struct {
	// Exe is the program Cmd names. Empty means the running test binary.
	// Set it in TestMain, before tests run, when handlers need a copy
	// elsewhere (one that a handler running as nobody can reach).
	Exe string

	mu    sync.Mutex
	progs map[string]func(args []string) int
	used  map[string]bool
}

// NewHelpers returns an empty registry.
func NewHelpers() *Helpers {
	return &Helpers{progs: make(map[string]func([]string) int), used: make(map[string]bool)}
}

// Register adds the helper name. fn gets the arguments after the name
// and returns the exit status. Registering a name twice panics.
func (h *Helpers) Register(name string, fn func(args []string) int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, dup := h.progs[name]; dup {
		panic(fmt.Sprintf("testkit: helper %q registered twice", name))
	}
	h.progs[name] = fn
}

// Dispatch returns at once unless this process was started as a helper
// (argv[0] is Argv0). Then it runs the helper named by argv[1] and exits
// with its status, or with 2 and a message on stderr for an unknown
// name. It never returns for a helper, so call it before anything else
// in TestMain.
//
// It exits with syscall.Exit, not os.Exit: a -race binary would sleep a
// second at exit (GORACE atexit_sleep_ms), and handlers exit a lot.
// Helpers write with raw system calls or to the unbuffered os.Stderr,
// so nothing is left unflushed.
func (h *Helpers) Dispatch() {
	if len(os.Args) < 2 || filepath.Base(os.Args[0]) != Argv0 {
		return
	}
	h.mu.Lock()
	fn, ok := h.progs[os.Args[1]]
	h.mu.Unlock()
	if !ok {
		fmt.Fprintf(os.Stderr, "no helper %q\n", os.Args[1])
		syscall.Exit(2)
	}
	syscall.Exit(fn(os.Args[2:]))
}

// Cmd returns the program and the argument vector (argv[0] included)
// that run the helper name with args, for a handler's configuration. It
// panics for a name that is not registered: a typo in a test.
func (h *Helpers) Cmd(name string, args ...string) (path string, argv []string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, ok := h.progs[name]; !ok {
		panic(fmt.Sprintf("testkit: no helper %q registered", name))
	}
	h.used[name] = true
	path = h.Exe
	if path == "" {
		exe, err := os.Executable()
		if err != nil {
			panic(fmt.Sprintf("testkit: the test binary's path: %v", err))
		}
		path = exe
	}
	return path, append([]string{Argv0, name}, args...)
}

// Unused returns, sorted, the registered helpers that Cmd never named.
// A TestMain whose tests all ran (no -run, no -short, no skips) may fail
// on them, as os/exec's tests do: a helper nobody runs is dead code.
func (h *Helpers) Unused() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var names []string
	for name := range h.progs {
		if !h.used[name] {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	return names
}

// CloseOnExecInherited marks every descriptor above 2 close-on-exec, as
// superd's main does at start: nothing the test process inherited (from
// the shell or go test) may reach a handler and be mistaken for a leak.
func CloseOnExecInherited() error {
	if err := unix.CloseRange(3, math.MaxUint32, unix.CLOSE_RANGE_CLOEXEC); err != nil {
		return fmt.Errorf("marking inherited descriptors close-on-exec: close_range: %w", err)
	}
	return nil
}
