package services

import (
	"bufio"
	"context"
	"errors"
	"io"
	"math"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// shCmd is a handler command as Service builds them: a new session, so
// that its pid is its process group.
func shCmd(script string) *exec.Cmd {
	cmd := exec.Command("/bin/sh", "-c", script)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	return cmd
}

// pipeOut gives cmd a pipe as stdout and returns the read end. Every
// process of the group that inherits it holds the write end, so EOF on
// the read end means they are all gone.
func pipeOut(t *testing.T, cmd *exec.Cmd) *os.File {
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
// Service does after a start.
func startProc(t *testing.T, p *Procs, req startRequest) int {
	t.Helper()
	pid, err := p.start(req)
	if err != nil {
		t.Fatalf("start %v: %v", req.cmd.Args, err)
	}
	if f, ok := req.cmd.Stdout.(*os.File); ok {
		f.Close()
	}
	return pid
}

func waitProcs(t *testing.T, p *Procs) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	if err := p.Wait(ctx); err != nil {
		t.Fatalf("Procs.Wait: %v", err)
	}
}

// TestProcsStartReap checks one handler's life: Count while it runs, one
// exited call after it is reaped and before its exit is logged, and the
// exit line with pid, remote, status and duration.
func TestProcsStartReap(t *testing.T) {
	e := newEnv(t)
	p := e.rt.Procs
	cmd := shCmd("read x; exit 7")
	in, inW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer inW.Close()
	cmd.Stdin = in
	var calls atomic.Int32
	var exitLoggedFirst atomic.Bool
	pid := startProc(t, p, startRequest{
		cmd:    cmd,
		log:    e.log.With("service", "t"),
		remote: "127.0.0.1:5555",
		exited: func() {
			calls.Add(1)
			exitLoggedFirst.Store(e.rec.count(match("exit")) > 0)
		},
	})
	in.Close()
	if got := p.Count(); got != 1 {
		t.Errorf("Count while the handler runs = %d, want 1", got)
	}
	inW.Write([]byte("go\n"))
	ex := e.rec.wait(t, match("exit", "pid", strconv.Itoa(pid)))
	waitProcs(t, p)
	if ex.attrs["status"] != "7" || ex.attrs["remote"] != "127.0.0.1:5555" || ex.attrs["service"] != "t" || ex.attrs["duration"] == "" {
		t.Errorf("exit line = %v, want service=t status=7 remote=127.0.0.1:5555 and a duration", ex)
	}
	var order []string
	for _, l := range e.rec.all() {
		if l.attrs["pid"] == strconv.Itoa(pid) {
			order = append(order, l.msg)
		}
	}
	if strings.Join(order, ",") != "start,exit" {
		t.Errorf("log lines of pid %d: %q, want start then exit", pid, order)
	}
	if st := e.rec.wait(t, match("start", "pid", strconv.Itoa(pid))); st.attrs["remote"] != "127.0.0.1:5555" || st.attrs["service"] != "t" {
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
	pid = startProc(t, p, startRequest{cmd: shCmd("exit 0"), log: e.log, exited: func() {}})
	ex = e.rec.wait(t, match("exit", "pid", strconv.Itoa(pid)))
	if _, ok := ex.attrs["remote"]; ok || ex.attrs["status"] != "0" {
		t.Errorf("wait-mode exit line = %v, want status=0 and no remote", ex)
	}
	waitProcs(t, p)
}

func TestProcsStartFails(t *testing.T) {
	e := newEnv(t)
	p := e.rt.Procs
	for _, logStderr := range []bool{false, true} {
		cmd := exec.Command("/nonexistent/handler")
		pid, err := p.start(startRequest{cmd: cmd, log: e.log, logStderr: logStderr,
			exited: func() { t.Errorf("exited called for a handler that never started") }})
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
	p := e.rt.Procs
	long := strings.Repeat("x", maxLogLine+10)
	pid := startProc(t, p, startRequest{
		cmd:       shCmd(`printf 'one\ntwo\r\n\n' >&2; printf 'last' >&2`),
		log:       e.log.With("service", "t"),
		logStderr: true,
		exited:    func() {},
	})
	waitProcs(t, p)
	var got []string
	for _, l := range e.rec.filter(match("stderr")) {
		if l.attrs["pid"] != strconv.Itoa(pid) || l.attrs["service"] != "t" {
			t.Errorf("stderr line %v, want pid=%d service=t", l, pid)
		}
		got = append(got, l.attrs["line"])
	}
	want := []string{"one", "two", "", "last"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("stderr lines = %q, want %q", got, want)
	}

	cmd := shCmd(`printf '%s\n' "$LONG" >&2`)
	cmd.Env = []string{"LONG=" + long}
	pid = startProc(t, p, startRequest{cmd: cmd, log: e.log, logStderr: true, exited: func() {}})
	waitProcs(t, p)
	got = nil
	for _, l := range e.rec.filter(match("stderr", "pid", strconv.Itoa(pid))) {
		got = append(got, l.attrs["line"])
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
	p := e.rt.Procs
	const n = 3000
	pid := startProc(t, p, startRequest{
		cmd:       shCmd(`i=0; while [ $i -lt ` + strconv.Itoa(n) + ` ]; do echo "line $i" >&2; i=$((i+1)); done`),
		log:       e.log,
		logStderr: true,
		exited:    func() {},
	})
	e.rec.wait(t, match("exit", "pid", strconv.Itoa(pid)))
	if got := e.rec.count(match("stderr", "pid", strconv.Itoa(pid))); got != n {
		t.Errorf("%d stderr lines logged before the exit line, want %d", got, n)
	}
	if got := e.rec.count(match("stderr_cut")); got != 0 {
		t.Errorf("%d stderr_cut lines for a handler that left nothing behind, want 0", got)
	}
	waitProcs(t, p)
}

// TestProcsSignal checks that Signal reaches the whole process group:
// the shell and the sleep it started both end, so the pipe they share
// reaches EOF.
func TestProcsSignal(t *testing.T) {
	e := newEnv(t)
	p := e.rt.Procs
	cmd := shCmd("sleep 30 & echo started; wait")
	out := pipeOut(t, cmd)
	pid := startProc(t, p, startRequest{cmd: cmd, log: e.log, exited: func() {}})
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || line != "started\n" {
		t.Fatalf("handler said %q, %v", line, err)
	}
	p.Signal(syscall.SIGTERM)
	readToEOF(t, out)
	ex := e.rec.wait(t, match("exit", "pid", strconv.Itoa(pid)))
	if ex.attrs["status"] != "signal:SIGTERM" {
		t.Errorf("exit status = %s, want signal:SIGTERM", ex.attrs["status"])
	}
	waitProcs(t, p)
}

// TestProcsTimeout checks that a handler past its timeout gets SIGTERM
// on its whole process group, and that the timeout is logged.
func TestProcsTimeout(t *testing.T) {
	e := newEnv(t)
	p := e.rt.Procs
	cmd := shCmd("sleep 30 & wait")
	out := pipeOut(t, cmd)
	began := time.Now()
	pid := startProc(t, p, startRequest{cmd: cmd, log: e.log, timeout: 200 * time.Millisecond, exited: func() {}})
	readToEOF(t, out)
	if took := time.Since(began); took < 200*time.Millisecond {
		t.Errorf("the handler ended after %v, before its 200ms timeout", took)
	}
	to := e.rec.wait(t, match("timeout", "pid", strconv.Itoa(pid)))
	if to.attrs["after"] != "200ms" || to.level.String() != "WARN" {
		t.Errorf("timeout line = %v, want WARN after=200ms", to)
	}
	ex := e.rec.wait(t, match("exit", "pid", strconv.Itoa(pid)))
	if ex.attrs["status"] != "signal:SIGTERM" {
		t.Errorf("exit status = %s, want signal:SIGTERM", ex.attrs["status"])
	}
	waitProcs(t, p)

	// A handler that ends in time logs no timeout.
	pid = startProc(t, p, startRequest{cmd: shCmd("exit 0"), log: e.log, timeout: time.Minute, exited: func() {}})
	e.rec.wait(t, match("exit", "pid", strconv.Itoa(pid)))
	waitProcs(t, p)
	if n := e.rec.count(match("timeout", "pid", strconv.Itoa(pid))); n != 0 {
		t.Errorf("%d timeout lines for a handler that ended in time, want 0", n)
	}
}

// TestProcsWait checks Wait: it returns the context's error while a
// handler runs, nil once all are reaped, and it ends the stderr logging
// of an orphan that left the handler's process group holding the pipe.
func TestProcsWait(t *testing.T) {
	e := newEnv(t)
	p := e.rt.Procs
	if err := p.Wait(context.Background()); err != nil {
		t.Fatalf("Wait with nothing running = %v", err)
	}

	cmd := shCmd("exec sleep 30")
	pid := startProc(t, p, startRequest{cmd: cmd, log: e.log, exited: func() {}})
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	began := time.Now()
	err := p.Wait(ctx)
	took := time.Since(began)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Wait with a handler running = %v, want context.DeadlineExceeded", err)
	}
	// The shutdown grace is this context: Wait must end with it, not a
	// second later (closeOrphanPipes waits for the reapers of handlers
	// that are simply still running, not only for the stderr loggers).
	if took > 600*time.Millisecond {
		t.Errorf("Wait with a 100ms context and a running handler returned after %v, want about 100ms", took)
	}
	syscall.Kill(-pid, syscall.SIGKILL)
	waitProcs(t, p)

	// An orphan in a session of its own keeps the stderr pipe open after
	// the handler exits: the pipe is cut (logged before the exit), and
	// Wait does not wait for the orphan. A fresh Procs: the Wait above
	// that ended with its context left a goroutine in WaitGroup.Wait,
	// and the WaitGroup rules forbid an Add that is not ordered after it.
	e = newEnv(t)
	p = e.rt.Procs
	cmd = shCmd("setsid sleep 30 & echo $!; echo bye >&2")
	out := pipeOut(t, cmd)
	pid = startProc(t, p, startRequest{cmd: cmd, log: e.log, logStderr: true, exited: func() {}})
	line, err := bufio.NewReader(out).ReadString('\n')
	orphan, aerr := strconv.Atoi(strings.TrimSpace(line))
	if err != nil || aerr != nil {
		t.Fatalf("orphan pid %q: %v %v", line, err, aerr)
	}
	t.Cleanup(func() { syscall.Kill(orphan, syscall.SIGKILL) })
	e.rec.wait(t, match("exit", "pid", strconv.Itoa(pid)))
	var order []string
	for _, l := range e.rec.all() {
		if l.attrs["pid"] == strconv.Itoa(pid) {
			order = append(order, l.msg)
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

// TestProcsClosePipes checks that ClosePipes closes the stderr pipe of a
// handler that still runs (at shutdown: one that cannot be reaped), and
// that Pending counts it until then.
func TestProcsClosePipes(t *testing.T) {
	e := newEnv(t)
	p := e.rt.Procs
	cmd := shCmd("echo ready; exec sleep 30")
	out := pipeOut(t, cmd)
	pid := startProc(t, p, startRequest{cmd: cmd, log: e.log, logStderr: true, exited: func() {}})
	if line, err := bufio.NewReader(out).ReadString('\n'); err != nil || line != "ready\n" {
		t.Fatalf("handler said %q, %v", line, err)
	}
	if h, l, pipes := p.Pending(); h != 1 || l != 0 || pipes != 1 {
		t.Errorf("Pending with a handler running = %d handlers, %d leftovers, %d pipes; want 1, 0, 1", h, l, pipes)
	}
	link, target := stderrPipeLink(t, p)
	p.ClosePipes()
	if h, _, pipes := p.Pending(); h != 1 || pipes != 0 {
		t.Errorf("Pending after ClosePipes = %d handlers, %d pipes; want 1, 0", h, pipes)
	}
	if n := e.rec.count(match("stderr_cut", "pid", strconv.Itoa(pid), "bytes", "0")); n != 1 {
		t.Errorf("%d stderr_cut lines with bytes=0 for pid %d, want 1", n, pid)
	}
	if now, _ := os.Readlink(link); now == target {
		t.Errorf("%s still is %s after ClosePipes, want it closed", link, target)
	}
	syscall.Kill(-pid, syscall.SIGKILL)
	waitProcs(t, p)
}

// stderrPipeLink returns the /proc/self/fd link of the one stderr pipe
// p holds, and what it points to (pipe:[INODE]).
func stderrPipeLink(t *testing.T, p *Procs) (link, target string) {
	t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.pipes) != 1 {
		t.Fatalf("Procs holds %d stderr pipes, want 1", len(p.pipes))
	}
	for sp := range p.pipes {
		rc, err := sp.rd.SyscallConn()
		if err != nil {
			t.Fatal(err)
		}
		rc.Control(func(fd uintptr) { link = "/proc/self/fd/" + strconv.Itoa(int(fd)) })
	}
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
