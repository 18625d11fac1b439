package proc

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// startWithDaemon starts script, which must start one daemon (a session
// of its own that keeps fd 2) and print its pid first on stdout. It
// returns the handler's pid and the daemon's, which is killed at cleanup.
func startWithDaemon(t *testing.T, e *testEnv, script string, req Request) (pid, daemon int) {
	t.Helper()
	req.Cmd = shCmd(script)
	if req.Log == nil {
		req.Log = e.log
	}
	req.LogStderr = true
	if req.Exited == nil {
		req.Exited = func(Exit) {}
	}
	return startWithDaemonCmd(t, e, req)
}

func startWithDaemonCmd(t *testing.T, e *testEnv, req Request) (pid, daemon int) {
	t.Helper()
	out := pipeOut(t, req.Cmd)
	pid = startProc(t, e.tab, req)
	line, err := bufio.NewReader(out).ReadString('\n')
	out.Close()
	daemon, aerr := strconv.Atoi(strings.TrimSpace(line))
	if err != nil || aerr != nil {
		t.Fatalf("daemon pid %q: %v %v", line, err, aerr)
	}
	t.Cleanup(func() { syscall.Kill(-daemon, syscall.SIGKILL) })
	return pid, daemon
}

// TestTableDaemonAroundStderrLive: a handler that leaves a silent
// daemon holding its stderr and exits around stderrLive. Whichever of
// the timer and the reaper gets the pipe, the drain ends (stderr_cut)
// and the exit line comes, after the handler's line.
func TestTableDaemonAroundStderrLive(t *testing.T) {
	e := newEnv(t)
	before := openFDs(t)
	for ms := 40; ms <= 60; ms += 2 {
		pid, _ := startWithDaemon(t, e, fmt.Sprintf(`setsid sh -c 'exec sleep 30' & echo $!; echo line >&2; sleep 0.%03d`, ms), Request{})
		e.rec.Wait(t, match("exit", "pid", strconv.Itoa(pid)))
		msgs, lines := checkOrder(t, e, pid)
		if got := strings.Join(msgs, ","); got != "start,stderr,stderr_cut,exit" || lines[0] != "line" {
			t.Errorf("%d ms: pid %d logged %s %q, want start,stderr,stderr_cut,exit", ms, pid, got, lines)
		}
	}
	waitProcs(t, e.tab)
	if h, l, pipes := e.tab.Pending(); h+l+pipes != 0 {
		t.Errorf("Pending after Wait = %d, %d, %d; want nothing", h, l, pipes)
	}
	if after := openFDs(t); after > before {
		t.Errorf("%d descriptors open after the handlers, %d before", after, before)
	}
}

// TestTableDaemonsAroundStderrLiveConcurrent is the test above with 24
// handlers at once, each with a daemon of its own, spread from 44 to 56
// ms: more chances for the timer and the reaper to meet.
func TestTableDaemonsAroundStderrLiveConcurrent(t *testing.T) {
	e := newEnv(t)
	before := openFDs(t)
	var pids []int
	for i := range 24 {
		ms := 44 + i%13
		pid, _ := startWithDaemon(t, e, fmt.Sprintf(`setsid sh -c 'exec sleep 30' & echo $!; echo line >&2; sleep 0.%03d`, ms), Request{})
		pids = append(pids, pid)
	}
	for _, pid := range pids {
		e.rec.Wait(t, match("exit", "pid", strconv.Itoa(pid)))
		msgs, lines := checkOrder(t, e, pid)
		if got := strings.Join(msgs, ","); got != "start,stderr,stderr_cut,exit" || lines[0] != "line" {
			t.Errorf("pid %d logged %s %q, want start,stderr,stderr_cut,exit", pid, got, lines)
		}
	}
	waitProcs(t, e.tab)
	if after := openFDs(t); after > before {
		t.Errorf("%d descriptors open after the handlers, %d before", after, before)
	}
}

// TestTableDrainEndsTrickle: a daemon that writes a line every 20 ms
// for ever keeps the drain going past every stderrDrain, but not past
// stderrDrainMax: the exit line comes. Both for a handler whose reaper
// reads its pipe and for one whose logger does.
func TestTableDrainEndsTrickle(t *testing.T) {
	for _, live := range []bool{false, true} {
		t.Run(fmt.Sprintf("logger=%v", live), func(t *testing.T) {
			e := newEnv(t)
			script := `setsid sh -c 'while :; do echo tick >&2; sleep 0.02; done' & echo $!; echo bye >&2`
			var inW *os.File
			req := Request{Cmd: shCmd(script), Log: e.log, LogStderr: true, Exited: func(Exit) {}}
			if live {
				req.Cmd = shCmd(script + `; read x`)
				in, w, err := os.Pipe()
				if err != nil {
					t.Fatal(err)
				}
				defer w.Close()
				req.Cmd.Stdin, inW = in, w
			}
			pid, _ := startWithDaemonCmd(t, e, req)
			if live {
				req.Cmd.Stdin.Close()
				e.rec.Wait(t, match("stderr", "pid", strconv.Itoa(pid), "line", "bye"))
				inW.Close()
			}
			e.rec.Wait(t, match("exit", "pid", strconv.Itoa(pid)))
			msgs, _ := checkOrder(t, e, pid)
			if !strings.Contains(strings.Join(msgs, ","), "stderr_cut,exit") {
				t.Errorf("pid %d logged %q, want stderr_cut right before the exit", pid, msgs)
			}
			waitProcs(t, e.tab)
		})
	}
}

// TestTableDrainEndsFlood: a daemon that floods stderr for ever once the
// handler has been reaped is cut by stderrDrainBytes (or
// stderrDrainMax): the exit line comes, the flood logged is bounded, and
// the daemon dies of the closed pipe.
func TestTableDrainEndsFlood(t *testing.T) {
	e := newEnv(t)
	gateR, gateW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer gateW.Close()
	defer gateR.Close()
	cmd := shCmd(`setsid sh -c 'read x <&3; exec yes flood >&2' & echo $!; exec 3<&-`)
	cmd.ExtraFiles = []*os.File{gateR}
	// The flood starts when Exited runs, before the drain begins.
	pid, daemon := startWithDaemonCmd(t, e, Request{Cmd: cmd, Log: e.log, LogStderr: true, Exited: func(Exit) { gateW.Close() }})
	gateR.Close()
	e.rec.Wait(t, match("exit", "pid", strconv.Itoa(pid)))
	msgs, lines := checkOrder(t, e, pid)
	if !strings.Contains(strings.Join(msgs, ","), "stderr_cut,exit") {
		t.Errorf("pid %d: no stderr_cut right before the exit", pid)
	}
	// What the limits allow, a pipe buffer that the handler's end may
	// have held, and the lines between Exited and the drain's start.
	if limit := (stderrDrainBytes + 2*65536) / len("flood\n"); len(lines) > limit {
		t.Errorf("%d flood lines logged, want at most %d (stderrDrainBytes)", len(lines), limit)
	}
	within(t, "the flooding daemon dies of the closed pipe", func() bool {
		return processGroup(daemon) != daemon
	})
	waitProcs(t, e.tab)
}

// TestTableClosePipesDuringDrain: closePipes while a reaper waits in the
// poller for a daemon that keeps the pipe: closePipes returns, the pipe
// is cut once, and the exit line follows.
func TestTableClosePipesDuringDrain(t *testing.T) {
	e := newEnv(t)
	var sp *stderrPipe
	got := make(chan struct{})
	exited := func(Exit) {
		e.tab.mu.Lock()
		for p := range e.tab.pipes {
			sp = p
		}
		e.tab.mu.Unlock()
		close(got)
	}
	pid, _ := startWithDaemon(t, e, `setsid sh -c 'exec sleep 30' & echo $!; echo line >&2`, Request{Exited: exited})
	<-got
	within(t, "a reader waiting for the daemon in the poller", func() bool {
		select {
		case <-sp.done:
			t.Fatalf("the pipe closed before closePipes: the drain took stderrDrain")
		default:
		}
		_, polled := sp.inspect()
		return polled
	})
	check := sentinel(t)
	e.tab.closePipes()
	select {
	case <-sp.done:
	default:
		t.Errorf("closePipes returned with the pipe open")
	}
	e.rec.Wait(t, match("exit", "pid", strconv.Itoa(pid)))
	msgs, lines := checkOrder(t, e, pid)
	if got := strings.Join(msgs, ","); got != "start,stderr,stderr_cut,exit" || lines[0] != "line" {
		t.Errorf("pid %d logged %s %q, want start,stderr,stderr_cut,exit", pid, got, lines)
	}
	waitProcs(t, e.tab)
	check()
}

// TestTableDrainReadsWhatIsThere: a drain whose time is up (its exit
// waited for a worker behind others) still logs every line already in
// the pipe: the drain's time limit bounds only the waiting for a process
// that holds the pipe.
func TestTableDrainReadsWhatIsThere(t *testing.T) {
	e := newEnv(t)
	r, w, err := rawPipe()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := unix.Write(w, []byte("one\ntwo\nthree\n")); err != nil {
		t.Fatal(err)
	}
	unix.Close(w) // end of file after the lines
	sp := newStderrPipe(r, e.log, 4242)
	sp.drainFrom.Store(1) // long past: the drain's time is up
	br := bufio.NewReaderSize(sp, maxLogLine)
	cut, eof := logLines(br, sp)
	unix.Close(r)
	if cut != 0 || !eof {
		t.Errorf("logLines = cut %d, eof %v; want 0, true", cut, eof)
	}
	for _, line := range []string{"one", "two", "three"} {
		if n := e.rec.Count(match("stderr", "pid", "4242", "line", line)); n != 1 {
			t.Errorf("line %q logged %d times, want once", line, n)
		}
	}
}
