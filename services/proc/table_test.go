package proc

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/superd/superd/internal/testkit"
)

// testTimeout bounds every wait in these tests: a bound for "never".
const testTimeout = testkit.Timeout

func TestMain(m *testing.M) {
	// As superd's main does: nothing this process inherited may reach a
	// handler.
	if err := testkit.CloseOnExecInherited(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Exit(m.Run())
}

// testEnv is a Table and a recording logger. At cleanup every handler
// still running is killed and reaped.
type testEnv struct {
	rec *testkit.Recorder
	log *slog.Logger
	tab *Table
}

func newEnv(t *testing.T) *testEnv {
	t.Helper()
	rec := testkit.NewRecorder(t)
	tab, err := New()
	if err != nil {
		t.Fatal(err)
	}
	e := &testEnv{rec: rec, log: rec.Logger(), tab: tab}
	t.Cleanup(func() {
		e.tab.Signal(unix.SIGKILL)
		ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
		defer cancel()
		if err := e.tab.Wait(ctx); err != nil {
			t.Errorf("Table.Wait at cleanup: %v", err)
			return
		}
		// Shutdown's last step: the exit poller's goroutine and epoll
		// instance end with the test.
		e.tab.closeExits()
	})
	return e
}

var match = testkit.Match

// shCmd is a handler command as services builds them: a new session, so
// that its pid is its process group.
func shCmd(script string) *Command {
	return &Command{Path: "/bin/sh", Args: []string{"sh", "-c", script}, Env: os.Environ(),
		Sys: &syscall.SysProcAttr{Setsid: true}}
}

// pipeOut gives cmd a pipe as stdout and returns the read end. Every
// process of the group that inherits it holds the write end, so EOF on
// the read end means they are all gone.
func pipeOut(t *testing.T, cmd *Command) *os.File {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close(); w.Close() })
	cmd.Stdout = w
	return r
}

// readToEOF reads r until EOF, failing after testTimeout.
func readToEOF(t *testing.T, r *os.File) string {
	t.Helper()
	r.SetReadDeadline(time.Now().Add(testTimeout))
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("read until every holder of the pipe is gone: %v (got %q)", err, b)
	}
	return string(b)
}

// startProc starts req with the closing of the caller's copies that
// services does after a start.
func startProc(t *testing.T, p *Table, req Request) int {
	t.Helper()
	pid, err := p.Start(req)
	if err != nil {
		t.Fatalf("start %v: %v", req.Cmd.Args, err)
	}
	if f := req.Cmd.Stdout; f != nil {
		f.Close()
	}
	return pid
}

func waitProcs(t *testing.T, p *Table) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	if err := p.Wait(ctx); err != nil {
		t.Fatalf("Table.Wait: %v", err)
	}
}

// TestProcsStartReap checks one handler's life: Count while it runs, one
// exited call after it is reaped and before its exit is logged, and the
// exit line with pid, remote, status and duration.
func TestProcsStartReap(t *testing.T) {
	e := newEnv(t)
	p := e.tab
	cmd := shCmd("read x; exit 7")
	in, inW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer inW.Close()
	cmd.Stdin = in
	var calls atomic.Int32
	var exitLoggedFirst atomic.Bool
	pid := startProc(t, p, Request{
		Cmd:    cmd,
		Log:    e.log.With("service", "t"),
		Remote: "127.0.0.1:5555",
		Exited: func(Exit) {
			calls.Add(1)
			exitLoggedFirst.Store(e.rec.Count(match("exit")) > 0)
		},
	})
	in.Close()
	if got := p.Count(); got != 1 {
		t.Errorf("Count while the handler runs = %d, want 1", got)
	}
	inW.Write([]byte("go\n"))
	ex := e.rec.Wait(t, match("exit", "pid", strconv.Itoa(pid)))
	waitProcs(t, p)
	if ex.Attrs["status"] != "7" || ex.Attrs["remote"] != "127.0.0.1:5555" || ex.Attrs["service"] != "t" || ex.Attrs["duration"] == "" {
		t.Errorf("exit line = %v, want service=t status=7 remote=127.0.0.1:5555 and a duration", ex)
	}
	var order []string
	for _, l := range e.rec.All() {
		if l.Attrs["pid"] == strconv.Itoa(pid) {
			order = append(order, l.Msg)
		}
	}
	if strings.Join(order, ",") != "start,exit" {
		t.Errorf("log lines of pid %d: %q, want start then exit", pid, order)
	}
	if st := e.rec.Wait(t, match("start", "pid", strconv.Itoa(pid))); st.Attrs["remote"] != "127.0.0.1:5555" || st.Attrs["service"] != "t" {
		t.Errorf("start line = %v, want service=t remote=127.0.0.1:5555", st)
	}
	if got := calls.Load(); got != 1 {
		t.Errorf("exited called %d times, want once", got)
	}
	if exitLoggedFirst.Load() {
		t.Errorf("the exit was logged before exited ran, want exited first (it frees the slot)")
	}
	if got := p.Count(); got != 0 {
		t.Errorf("Count after the handler was reaped = %d, want 0", got)
	}

	// Without remote (wait mode) the exit line has none.
	pid = startProc(t, p, Request{Cmd: shCmd("exit 0"), Log: e.log, Exited: func(Exit) {}})
	ex = e.rec.Wait(t, match("exit", "pid", strconv.Itoa(pid)))
	if _, ok := ex.Attrs["remote"]; ok || ex.Attrs["status"] != "0" {
		t.Errorf("wait-mode exit line = %v, want status=0 and no remote", ex)
	}
	waitProcs(t, p)
}

func TestProcsStartFails(t *testing.T) {
	e := newEnv(t)
	p := e.tab
	for _, logStderr := range []bool{false, true} {
		cmd := &Command{Path: "/nonexistent/handler", Args: []string{"handler"}, Sys: &syscall.SysProcAttr{Setsid: true}}
		pid, err := p.Start(Request{Cmd: cmd, Log: e.log, LogStderr: logStderr,
			Exited: func(Exit) { t.Errorf("exited called for a handler that never started") }})
		if err == nil || !errors.Is(err, os.ErrNotExist) {
			t.Errorf("start of a missing program = %d, %v; want an error wrapping ErrNotExist", pid, err)
		}
	}
	if got := p.Count(); got != 0 {
		t.Errorf("Count after failed starts = %d, want 0", got)
	}
	waitProcs(t, p)
}

// TestProcsStderr checks that stderr lines are logged one record each,
// tagged with the pid, CR LF trimmed, and a line longer than maxLogLine
// logged in pieces.
func TestProcsStderr(t *testing.T) {
	e := newEnv(t)
	p := e.tab
	long := strings.Repeat("x", maxLogLine+10)
	pid := startProc(t, p, Request{
		Cmd:       shCmd(`printf 'one\ntwo\r\n\n' >&2; printf 'last' >&2`),
		Log:       e.log.With("service", "t"),
		LogStderr: true,
		Exited:    func(Exit) {},
	})
	waitProcs(t, p)
	var got []string
	for _, l := range e.rec.Filter(match("stderr")) {
		if l.Attrs["pid"] != strconv.Itoa(pid) || l.Attrs["service"] != "t" {
			t.Errorf("stderr line %v, want pid=%d service=t", l, pid)
		}
		got = append(got, l.Attrs["line"])
	}
	want := []string{"one", "two", "", "last"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("stderr lines = %q, want %q", got, want)
	}

	cmd := shCmd(`printf '%s\n' "$LONG" >&2`)
	cmd.Env = []string{"LONG=" + long}
	pid = startProc(t, p, Request{Cmd: cmd, Log: e.log, LogStderr: true, Exited: func(Exit) {}})
	waitProcs(t, p)
	got = nil
	for _, l := range e.rec.Filter(match("stderr", "pid", strconv.Itoa(pid))) {
		got = append(got, l.Attrs["line"])
	}
	if len(got) != 2 || len(got[0]) != maxLogLine || got[0]+got[1] != long {
		lens := make([]int, len(got))
		for i, g := range got {
			lens[i] = len(g)
		}
		t.Errorf("a %d-byte line was logged as pieces of %v bytes, want %d and %d", len(long), lens, maxLogLine, len(long)-maxLogLine)
	}
}

// TestProcsStderrBeforeExit checks that a handler's last stderr lines
// are logged before its exit line, even when it exits with its pipe
// full of them.
func TestProcsStderrBeforeExit(t *testing.T) {
	e := newEnv(t)
	p := e.tab
	const n = 3000
	pid := startProc(t, p, Request{
		Cmd:       shCmd(`i=0; while [ $i -lt ` + strconv.Itoa(n) + ` ]; do echo "line $i" >&2; i=$((i+1)); done`),
		Log:       e.log,
		LogStderr: true,
		Exited:    func(Exit) {},
	})
	e.rec.Wait(t, match("exit", "pid", strconv.Itoa(pid)))
	if got := e.rec.Count(match("stderr", "pid", strconv.Itoa(pid))); got != n {
		t.Errorf("%d stderr lines logged before the exit line, want %d", got, n)
	}
	if got := e.rec.Count(match("stderr_cut")); got != 0 {
		t.Errorf("%d stderr_cut lines for a handler that left nothing behind, want 0", got)
	}
	waitProcs(t, p)
}

// TestProcsSignal checks that Signal reaches the whole process group:
// the shell and the sleep it started both end, so the pipe they share
// reaches EOF.
func TestProcsSignal(t *testing.T) {
	e := newEnv(t)
	p := e.tab
	cmd := shCmd("sleep 30 & echo started; wait")
	out := pipeOut(t, cmd)
	pid := startProc(t, p, Request{Cmd: cmd, Log: e.log, Exited: func(Exit) {}})
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || line != "started\n" {
		t.Fatalf("handler said %q, %v", line, err)
	}
	p.Signal(syscall.SIGTERM)
	readToEOF(t, out)
	ex := e.rec.Wait(t, match("exit", "pid", strconv.Itoa(pid)))
	if ex.Attrs["status"] != "signal:SIGTERM" {
		t.Errorf("exit status = %s, want signal:SIGTERM", ex.Attrs["status"])
	}
	waitProcs(t, p)
}

// TestProcsTimeout checks that a handler past its timeout gets SIGTERM
// on its whole process group, and that the timeout is logged.
func TestProcsTimeout(t *testing.T) {
	e := newEnv(t)
	p := e.tab
	cmd := shCmd("sleep 30 & wait")
	out := pipeOut(t, cmd)
	began := time.Now()
	pid := startProc(t, p, Request{Cmd: cmd, Log: e.log, Timeout: 200 * time.Millisecond, Exited: func(Exit) {}})
	readToEOF(t, out)
	if took := time.Since(began); took < 200*time.Millisecond {
		t.Errorf("the handler ended after %v, before its 200ms timeout", took)
	}
	to := e.rec.Wait(t, match("timeout", "pid", strconv.Itoa(pid)))
	if to.Attrs["after"] != "200ms" || to.Level.String() != "WARN" {
		t.Errorf("timeout line = %v, want WARN after=200ms", to)
	}
	ex := e.rec.Wait(t, match("exit", "pid", strconv.Itoa(pid)))
	if ex.Attrs["status"] != "signal:SIGTERM" {
		t.Errorf("exit status = %s, want signal:SIGTERM", ex.Attrs["status"])
	}
	waitProcs(t, p)

	// A handler that ends in time logs no timeout.
	pid = startProc(t, p, Request{Cmd: shCmd("exit 0"), Log: e.log, Timeout: time.Minute, Exited: func(Exit) {}})
	e.rec.Wait(t, match("exit", "pid", strconv.Itoa(pid)))
	waitProcs(t, p)
	if n := e.rec.Count(match("timeout", "pid", strconv.Itoa(pid))); n != 0 {
		t.Errorf("%d timeout lines for a handler that ended in time, want 0", n)
	}
}

// TestProcsWait checks Wait: it returns the context's error while a
// handler runs, nil once all are reaped, and it ends the stderr logging
// of an orphan that left the handler's process group holding the pipe.
func TestProcsWait(t *testing.T) {
	e := newEnv(t)
	p := e.tab
	if err := p.Wait(context.Background()); err != nil {
		t.Fatalf("Wait with nothing running = %v", err)
	}

	cmd := shCmd("exec sleep 30")
	pid := startProc(t, p, Request{Cmd: cmd, Log: e.log, Exited: func(Exit) {}})
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	err := p.Wait(ctx)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Wait with a handler running = %v, want context.DeadlineExceeded", err)
	}
	// The shutdown grace is the context: Wait ends with it, whatever
	// still runs. The handler runs for 30s, so a Wait that waited for it
	// would not return before the test's own bound.
	ctx, cancel = context.WithCancel(context.Background())
	waited := make(chan error, 1)
	go func() { waited <- p.Wait(ctx) }()
	cancel()
	select {
	case err := <-waited:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Wait after its context was cancelled = %v, want context.Canceled", err)
		}
	case <-time.After(testTimeout):
		t.Fatalf("Wait still blocked %v after its context was cancelled", testTimeout)
	}
	if n := p.Count(); n != 1 {
		t.Fatalf("Count after the Waits = %d, want the handler still running", n)
	}
	syscall.Kill(-pid, syscall.SIGKILL)
	waitProcs(t, p)

	// An orphan in a session of its own keeps the stderr pipe open after
	// the handler exits: the pipe is cut (logged before the exit), and
	// Wait does not wait for the orphan. The same Table: Waits that
	// ended with their context leave nothing that a later start must be
	// ordered after.
	cmd = shCmd("setsid sleep 30 & echo $!; echo bye >&2")
	out := pipeOut(t, cmd)
	pid = startProc(t, p, Request{Cmd: cmd, Log: e.log, LogStderr: true, Exited: func(Exit) {}})
	line, err := bufio.NewReader(out).ReadString('\n')
	orphan, aerr := strconv.Atoi(strings.TrimSpace(line))
	if err != nil || aerr != nil {
		t.Fatalf("orphan pid %q: %v %v", line, err, aerr)
	}
	t.Cleanup(func() { syscall.Kill(orphan, syscall.SIGKILL) })
	e.rec.Wait(t, match("exit", "pid", strconv.Itoa(pid)))
	var order []string
	for _, l := range e.rec.All() {
		if l.Attrs["pid"] == strconv.Itoa(pid) {
			order = append(order, l.Msg)
		}
	}
	if got := strings.Join(order, ","); got != "start,stderr,stderr_cut,exit" {
		t.Errorf("log lines of pid %d: %s, want start,stderr,stderr_cut,exit", pid, got)
	}
	if h, l, pipes := p.Pending(); h+l+pipes != 0 {
		t.Errorf("Pending after the exit line = %d handlers, %d leftovers, %d pipes; want none", h, l, pipes)
	}
	waitProcs(t, p)
	if err := syscall.Kill(orphan, 0); err != nil {
		t.Errorf("the orphan %d is gone (%v): the test did not set up what it meant to", orphan, err)
	}
}

// TestProcsClosePipes checks that closePipes closes the stderr pipe of a
// handler that still runs (at shutdown: one that cannot be reaped), and
// that Pending counts it until then.
func TestProcsClosePipes(t *testing.T) {
	e := newEnv(t)
	p := e.tab
	cmd := shCmd("echo ready; exec sleep 30")
	out := pipeOut(t, cmd)
	pid := startProc(t, p, Request{Cmd: cmd, Log: e.log, LogStderr: true, Exited: func(Exit) {}})
	if line, err := bufio.NewReader(out).ReadString('\n'); err != nil || line != "ready\n" {
		t.Fatalf("handler said %q, %v", line, err)
	}
	if h, l, pipes := p.Pending(); h != 1 || l != 0 || pipes != 1 {
		t.Errorf("Pending with a handler running = %d handlers, %d leftovers, %d pipes; want 1, 0, 1", h, l, pipes)
	}
	link, target := stderrPipeLink(t, p)
	p.closePipes()
	if h, _, pipes := p.Pending(); h != 1 || pipes != 0 {
		t.Errorf("Pending after closePipes = %d handlers, %d pipes; want 1, 0", h, pipes)
	}
	if n := e.rec.Count(match("stderr_cut", "pid", strconv.Itoa(pid), "bytes", "0")); n != 1 {
		t.Errorf("%d stderr_cut lines with bytes=0 for pid %d, want 1", n, pid)
	}
	if now, _ := os.Readlink(link); now == target {
		t.Errorf("%s still is %s after closePipes, want it closed", link, target)
	}
	syscall.Kill(-pid, syscall.SIGKILL)
	waitProcs(t, p)
}

// stderrPipeLink returns the /proc/self/fd link of the one stderr pipe
// p holds, and what it points to (pipe:[INODE]).
func stderrPipeLink(t *testing.T, p *Table) (link, target string) {
	t.Helper()
	link = "/proc/self/fd/" + strconv.Itoa(onlyPipe(t, p).fd)
	target, err := os.Readlink(link)
	if err != nil || !strings.HasPrefix(target, "pipe:") {
		t.Fatalf("readlink %s = %q, %v; want a pipe", link, target, err)
	}
	return link, target
}

// TestAddDurations checks the saturating addition of the timeout and the
// kill delay.
func TestAddDurations(t *testing.T) {
	const maxD, minD = time.Duration(math.MaxInt64), time.Duration(math.MinInt64)
	tests := []struct{ a, b, want time.Duration }{
		{time.Second, killDelay, 6 * time.Second},
		{0, 0, 0},
		{maxD, killDelay, maxD},
		{maxD - time.Second, killDelay, maxD},
		{maxD - killDelay, killDelay, maxD},
		{maxD, maxD, maxD},
		{minD, -time.Second, minD},
		{minD, maxD, -1},
		{-time.Second, time.Second, 0},
	}
	for _, tt := range tests {
		if got := addDurations(tt.a, tt.b); got != tt.want {
			t.Errorf("addDurations(%d, %d) = %d, want %d", tt.a, tt.b, got, tt.want)
		}
	}
}

// TestExitStatus reaps real processes with waitExit, by pidfd and by
// pid alone: an exit code and signals; and a wait that failed.
func TestExitStatus(t *testing.T) {
	tests := []struct{ script, want string }{
		{"exit 0", "0"},
		{"exit 3", "3"},
		{"kill -TERM $$", "signal:SIGTERM"},
		{"kill -KILL $$", "signal:SIGKILL"},
	}
	null, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer null.Close()
	for _, byPidfd := range []bool{true, false} {
		for _, tt := range tests {
			pid, pidfd, err := forkExec(shCmd(tt.script), null, -1)
			if err != nil {
				t.Fatal(err)
			}
			if pidfd < 0 {
				t.Fatal("forkExec gave no pidfd: this kernel has them")
			}
			if !byPidfd {
				unix.Close(pidfd)
				pidfd = -1
			}
			ws, err := waitExit(pid, pidfd)
			if got := exitStatus(ws, err); got != tt.want {
				t.Errorf("exitStatus after %q (pidfd %v) = %q, want %q", tt.script, byPidfd, got, tt.want)
			}
		}
	}
	if got := exitStatus(0, syscall.ECHILD); !strings.Contains(got, "no child processes") {
		t.Errorf("exitStatus(0, ECHILD) = %q, want the error text", got)
	}
}

// TestProcsStartNearDescriptorLimit gives a handler a descriptor with
// the highest number superd may have: Go's child cannot move its pipe
// above it and fails with EBADF, which Start must report as the
// shortage of descriptors it is (so that the start is deferred, not
// failed).
func TestProcsStartNearDescriptorLimit(t *testing.T) {
	e := newEnv(t)
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	fd, err := unix.FcntlInt(0, unix.F_DUPFD_CLOEXEC, int(lim.Cur)-1)
	if err != nil {
		t.Fatal(err)
	}
	stdin := os.NewFile(uintptr(fd), "stdin")
	defer stdin.Close()
	cmd := shCmd("exit 0")
	cmd.Stdin = stdin
	_, err = e.tab.Start(Request{Cmd: cmd, Log: e.log, Exited: func(Exit) { t.Errorf("Exited called for a handler that never started") }})
	if !errors.Is(err, syscall.EBADF) || !DescriptorsExhausted(err) {
		t.Errorf("start with fd %d under a limit of %d = %v, want EBADF reported as a shortage of descriptors", fd, lim.Cur, err)
	}

	// An EBADF far from the limit is no shortage.
	if err := forkNearLimit(shCmd("exit 0"), nil, -1, os.NewSyscallError("fork/exec", syscall.EBADF)); DescriptorsExhausted(err) {
		t.Errorf("forkNearLimit of an EBADF far from the limit = %v, want it unchanged", err)
	}
}

// TestTableWaitNoLeak calls Wait many times with a context that ends
// while a handler runs, as a shutdown's grace does: no call may leave a
// goroutine behind (before the fix, each left one blocked in
// WaitGroup.Wait until every handler was gone).
func TestTableWaitNoLeak(t *testing.T) {
	e := newEnv(t)
	cmd := shCmd("exec sleep 30")
	pid := startProc(t, e.tab, Request{Cmd: cmd, Log: e.log})
	const calls = 200
	before := runtime.NumGoroutine()
	for range calls {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if err := e.tab.Wait(ctx); !errors.Is(err, context.Canceled) {
			t.Fatalf("Wait with a cancelled context and a handler running = %v, want context.Canceled", err)
		}
	}
	// Goroutines that return have nothing left to wait for; one that
	// waits for the handler never ends while it runs. Counting, with a
	// margin for the runtime's own, tells the two apart.
	if after := runtime.NumGoroutine(); after-before >= calls/2 {
		t.Errorf("%d goroutines after %d Waits that ended with their context, %d before: Wait leaks one per call", after, calls, before)
	}
	syscall.Kill(-pid, syscall.SIGKILL)
	waitProcs(t, e.tab)
}

// TestTableShutdown checks the shutdown sequence: terminating says what
// runs, SIGTERM ends a handler that heeds it, one that ignores it is
// killed after the grace (kill_after_grace), Shutdown returns nil once
// all are reaped, and no handler starts afterwards.
func TestTableShutdown(t *testing.T) {
	e := newEnv(t)
	polite := shCmd("exec sleep 30")
	politePid := startProc(t, e.tab, Request{Cmd: polite, Log: e.log, LogStderr: true})
	stubborn := shCmd(`trap "" TERM; echo ready; while :; do sleep 1; done`)
	out := pipeOut(t, stubborn)
	stubbornPid := startProc(t, e.tab, Request{Cmd: stubborn, Log: e.log})
	if line, err := bufio.NewReader(out).ReadString('\n'); err != nil || line != "ready\n" {
		t.Fatalf("handler said %q, %v", line, err)
	}
	if err := e.tab.Shutdown(200*time.Millisecond, e.log); err != nil {
		t.Fatalf("Shutdown = %v, want nil", err)
	}
	if l := e.rec.Wait(t, match("terminating")); l.Attrs["count"] != "2" || l.Attrs["left_behind"] != "0" ||
		l.Attrs["stderr_pipes"] != "1" || l.Attrs["grace"] != "200ms" {
		t.Errorf("terminating line %v, want count=2 left_behind=0 stderr_pipes=1 grace=200ms", l)
	}
	if l := e.rec.Wait(t, match("kill_after_grace")); l.Attrs["count"] != "1" || l.Level != slog.LevelWarn {
		t.Errorf("kill line %v, want WARN count=1", l)
	}
	if ex := e.rec.Wait(t, match("exit", "pid", strconv.Itoa(politePid))); ex.Attrs["status"] != "signal:SIGTERM" {
		t.Errorf("exit of the handler that heeds SIGTERM %v, want signal:SIGTERM", ex)
	}
	if ex := e.rec.Wait(t, match("exit", "pid", strconv.Itoa(stubbornPid))); ex.Attrs["status"] != "signal:SIGKILL" {
		t.Errorf("exit of the handler that ignores SIGTERM %v, want signal:SIGKILL", ex)
	}
	if h, l, pipes := e.tab.Pending(); h+l+pipes != 0 {
		t.Errorf("Pending after Shutdown = %d, %d, %d; want nothing", h, l, pipes)
	}
	if _, err := e.tab.Start(Request{Cmd: shCmd("exit 0"), Log: e.log, Exited: func(Exit) { t.Errorf("Exited after Shutdown") }}); !errors.Is(err, ErrShutdown) {
		t.Errorf("Start after Shutdown = %v, want ErrShutdown", err)
	}
}

// TestProcsExitedReceivesExit checks what Exited is told: the wait
// status, whether the timeout struck, and the handler's duration, for an
// exit code, a death by signal and a timeout.
func TestProcsExitedReceivesExit(t *testing.T) {
	e := newEnv(t)
	for _, tt := range []struct {
		name    string
		script  string
		timeout time.Duration
		check   func(Exit) bool
		want    string
	}{
		{"exit code", "exit 7", 0, func(x Exit) bool { return x.Status.Exited() && x.Status.ExitStatus() == 7 && !x.TimedOut }, "exit status 7, no timeout"},
		{"signal", "kill -SEGV $$", 0, func(x Exit) bool { return x.Status.Signaled() && x.Status.Signal() == syscall.SIGSEGV && !x.TimedOut }, "SIGSEGV, no timeout"},
		{"timeout", "sleep 30", 50 * time.Millisecond, func(x Exit) bool { return x.Status.Signaled() && x.TimedOut && x.Duration >= 50*time.Millisecond }, "SIGTERM after the timeout, TimedOut"},
		{"in time", "exit 0", time.Minute, func(x Exit) bool { return x.Status.Exited() && x.Status.ExitStatus() == 0 && !x.TimedOut }, "exit 0, no timeout"},
	} {
		got := make(chan Exit, 1)
		startProc(t, e.tab, Request{Cmd: shCmd(tt.script), Log: e.log, Timeout: tt.timeout, Exited: func(x Exit) { got <- x }})
		select {
		case x := <-got:
			if !tt.check(x) || x.Err != nil || x.StartFailed || x.Duration <= 0 {
				t.Errorf("%s: Exited got %+v (status %v), want %s and a duration", tt.name, x, exitStatus(x.Status, x.Err), tt.want)
			}
		case <-time.After(testTimeout):
			t.Fatalf("%s: Exited not called within %v", tt.name, testTimeout)
		}
	}
	waitProcs(t, e.tab)
}
