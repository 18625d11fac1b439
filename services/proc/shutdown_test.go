package proc

import (
	"bufio"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestTableShutdownLeavesNoGoroutine: after Shutdown returns, the
// Table's goroutines (parked workers, reapers, stderr loggers and their
// timers) all end, whatever read the pipes: a reaper, a logger, a drain
// held up by a daemon.
func TestTableShutdownLeavesNoGoroutine(t *testing.T) {
	before := runtime.NumGoroutine()
	e := newEnv(t)
	p := e.tab
	// Parked workers: short handlers, one after another and a burst.
	for range 3 {
		startProc(t, p, Request{Cmd: shCmd(`echo short >&2`), Log: e.log, LogStderr: true, Exited: func(Exit) {}})
		waitProcs(t, p)
	}
	for range 20 {
		startProc(t, p, Request{Cmd: shCmd(`echo burst >&2`), Log: e.log, LogStderr: true, Exited: func(Exit) {}})
	}
	waitProcs(t, p)
	// A handler whose logger reads its pipe.
	live := startProc(t, p, Request{Cmd: shCmd(`echo live >&2; exec sleep 30`), Log: e.log, LogStderr: true, Exited: func(Exit) {}})
	e.rec.Wait(t, match("stderr", "pid", strconv.Itoa(live), "line", "live"))
	// A handler whose pipe a daemon keeps after it ends on SIGTERM.
	_, _ = startWithDaemon(t, e, `setsid sh -c 'exec sleep 30' & echo $!; echo daemon >&2; exec sleep 30`, Request{})
	// One that ignores SIGTERM.
	stubborn := shCmd(`trap "" TERM; echo ready; while :; do sleep 1; done`)
	out := pipeOut(t, stubborn)
	startProc(t, p, Request{Cmd: stubborn, Log: e.log, LogStderr: true, Exited: func(Exit) {}})
	if line, err := bufio.NewReader(out).ReadString('\n'); err != nil || line != "ready\n" {
		t.Fatalf("handler said %q, %v", line, err)
	}
	if err := p.Shutdown(100*time.Millisecond, e.log); err != nil {
		t.Fatalf("Shutdown = %v", err)
	}
	if h, l, pipes := p.Pending(); h+l+pipes != 0 {
		t.Errorf("Pending after Shutdown = %d, %d, %d; want nothing", h, l, pipes)
	}
	deadline := time.Now().Add(testTimeout)
	for runtime.NumGoroutine() > before {
		if time.Now().After(deadline) {
			t.Fatalf("%d goroutines %v after Shutdown, %d before the Table:\n%s", runtime.NumGoroutine(), testTimeout, before, procGoroutines())
		}
		time.Sleep(time.Millisecond)
	}
	p.workers.mu.Lock()
	live, idle := p.workers.live, len(p.workers.idle)
	p.workers.mu.Unlock()
	if live != 0 || idle != 0 {
		t.Errorf("workers after Shutdown: %d live, %d idle; want none", live, idle)
	}
}

// procGoroutines returns the stacks of the goroutines in this package.
func procGoroutines() string {
	buf := make([]byte, 4<<20)
	buf = buf[:runtime.Stack(buf, true)]
	var out []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "superd/services/proc.(*") && !strings.Contains(g, "TestTable") {
			out = append(out, g)
		}
	}
	return strings.Join(out, "\n\n")
}

// TestTableReleased: Released's channel closes at the next release of
// a handler's descriptors for every caller that took it, and a channel
// taken after that release waits for the next one.
func TestTableReleased(t *testing.T) {
	e := newEnv(t)
	p := e.tab
	closed := func(c <-chan struct{}) bool {
		select {
		case <-c:
			return true
		default:
			return false
		}
	}
	wait := func(what string, c <-chan struct{}) {
		t.Helper()
		select {
		case <-c:
		case <-time.After(testTimeout):
			t.Fatalf("%s: not closed after %v", what, testTimeout)
		}
	}
	a, b := p.Released(), p.Released()
	if closed(a) {
		t.Fatal("Released closed before any release")
	}
	startProc(t, p, Request{Cmd: shCmd(`echo x >&2`), Log: e.log, LogStderr: true, Exited: func(Exit) {}})
	wait("first taker", a)
	wait("second taker", b)
	waitProcs(t, p)
	c := p.Released()
	if closed(c) {
		t.Fatal("a channel taken after every release is already closed")
	}
	// Releases nobody waited for, then a take: the next release closes it.
	startProc(t, p, Request{Cmd: shCmd(`exit 0`), Log: e.log, Exited: func(Exit) {}})
	wait("a taker before a handler without stderr", c)
	waitProcs(t, p)
	for range 3 {
		startProc(t, p, Request{Cmd: shCmd(`exit 0`), Log: e.log, LogStderr: true, Exited: func(Exit) {}})
		waitProcs(t, p)
	}
	d := p.Released()
	if closed(d) {
		t.Fatal("a channel taken after every release is already closed")
	}
	startProc(t, p, Request{Cmd: shCmd(`echo y >&2; sleep 0.07`), Log: e.log, LogStderr: true, Exited: func(Exit) {}})
	wait("a taker before a handler whose logger closes its pipe", d)
	waitProcs(t, p)
}
