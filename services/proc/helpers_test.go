package proc

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Helpers of the tests of the stderr pipes, Pending and Shutdown.

// hookHandler is a slog.Handler that calls hook with every record before
// handing it on, on the goroutine that logs it.
type hookHandler struct {
	slog.Handler
	hook func(slog.Record)
}

func (h hookHandler) Handle(ctx context.Context, r slog.Record) error {
	h.hook(r)
	return h.Handler.Handle(ctx, r)
}

func (h hookHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return hookHandler{h.Handler.WithAttrs(as), h.hook}
}

func (h hookHandler) WithGroup(name string) slog.Handler {
	return hookHandler{h.Handler.WithGroup(name), h.hook}
}

// recordAttr returns the value of a record's attribute key, "" if none.
func recordAttr(r slog.Record, key string) string {
	v := ""
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == key {
			v = a.Value.String()
			return false
		}
		return true
	})
	return v
}

// pidLog returns the messages logged for pid, in order, and the lines
// of its stderr records.
func pidLog(e *testEnv, pid int) (msgs, lines []string) {
	p := strconv.Itoa(pid)
	for _, l := range e.rec.All() {
		if l.Attrs["pid"] != p {
			continue
		}
		msgs = append(msgs, l.Msg)
		if l.Msg == "stderr" {
			lines = append(lines, l.Attrs["line"])
		}
	}
	return msgs, lines
}

// checkOrder checks pid's log: start first, exit last and once, every
// stderr and stderr_cut line in between, at most one stderr_cut, and
// nothing after the exit.
func checkOrder(t *testing.T, e *testEnv, pid int) (msgs, lines []string) {
	t.Helper()
	msgs, lines = pidLog(e, pid)
	bad := len(msgs) < 2 || msgs[0] != "start" || msgs[len(msgs)-1] != "exit"
	cuts := 0
	for i, m := range msgs {
		switch {
		case m == "start" && i != 0, m == "exit" && i != len(msgs)-1:
			bad = true
		case m == "stderr_cut":
			cuts++
		case m != "start" && m != "exit" && m != "stderr" && m != "stderr_cut" && m != "timeout":
			bad = true
		}
	}
	if bad || cuts > 1 {
		t.Errorf("pid %d logged %q: want start first, then stderr lines (and at most one stderr_cut), exit last", pid, msgs)
	}
	return msgs, lines
}

// openFDs returns the number of descriptors this process has open. A
// leak shows as more after than before; fewer can be earlier tests'
// files (their Tables' /dev/null) closed by the garbage collector, so a
// descriptor closed twice is left to sentinel.
func openFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents) - 1 // the directory's own
}

// sentinel opens /dev/null (at the lowest free number, often one that a
// pipe just freed) and returns a check that it is still open and still
// /dev/null: a descriptor closed twice closes the sentinel instead.
func sentinel(t *testing.T) func() {
	t.Helper()
	f, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	fd := int(f.Fd())
	link := "/proc/self/fd/" + strconv.Itoa(fd)
	return func() {
		t.Helper()
		defer f.Close()
		if got, err := os.Readlink(link); err != nil || got != os.DevNull {
			t.Errorf("sentinel descriptor %d is now %q (%v), want %s: a descriptor was closed twice", fd, got, err, os.DevNull)
		}
	}
}

// goroutineParked reports whether some goroutine is parked in state
// (e.g. "sync.Mutex.Lock") with frame as the first frame of this package
// on its stack.
func goroutineParked(state, frame string) bool {
	buf := make([]byte, 4<<20)
	buf = buf[:runtime.Stack(buf, true)]
	for _, g := range strings.Split(string(buf), "\n\n") {
		header, _, _ := strings.Cut(g, "\n")
		if !strings.Contains(header, "["+state) {
			continue
		}
		for _, l := range strings.Split(g, "\n") {
			if strings.Contains(l, "superd/services/proc.") {
				if strings.Contains(l, frame) {
					return true
				}
				break
			}
		}
	}
	return false
}

// within polls cond until it holds, failing after testTimeout: a bound
// for "never", not a speed requirement.
func within(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(testTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not after %v", what, testTimeout)
		}
		time.Sleep(time.Millisecond)
	}
}

// onlyPipe returns the one stderr pipe p holds.
func onlyPipe(t *testing.T, p *Table) *stderrPipe {
	t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.pipes) != 1 {
		t.Fatalf("the Table holds %d stderr pipes, want 1", len(p.pipes))
	}
	for sp := range p.pipes {
		return sp
	}
	return nil
}

// pipeState returns who reads sp, and whether it is in the poller.
func (sp *stderrPipe) inspect() (pipeState, bool) {
	sp.mu.Lock()
	defer sp.mu.Unlock()
	return sp.state, sp.rd != nil
}

// waitExit reaps the child pid, whose pidfd is pidfd (closed here; -1
// for none), and returns its wait status: awaitExit, then wait4, as the
// Table's reapers do.
func waitExit(pid, pidfd int) (syscall.WaitStatus, error) {
	var ws syscall.WaitStatus
	awaitExit(pid, pidfd)
	for {
		_, err := syscall.Wait4(pid, &ws, 0, nil)
		if !errors.Is(err, syscall.EINTR) {
			return ws, err
		}
	}
}
