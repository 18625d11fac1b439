package proc

import (
	"log/slog"
	"os"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestTableExitBurst: handlers that all exit at once, more of them than
// one epoll_wait takes, are each reaped once, with their exit line, and
// leave no zombie and no descriptor.
func TestTableExitBurst(t *testing.T) {
	const n = 3*maxExitEvents + 5
	e := newEnv(t)
	before := openFDs(t)
	check := sentinel(t)
	// They all read one pipe: closing its write end ends every one.
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	exits := map[int]int{}
	pids := make([]int, 0, n)
	for range n {
		cmd := shCmd(`read x; exit 3`)
		cmd.Stdin = r
		pid := startProc(t, e.tab, Request{Cmd: cmd, Log: e.log, LogStderr: true, Exited: func(x Exit) {
			mu.Lock()
			defer mu.Unlock()
			if x.Err != nil || x.Status.ExitStatus() != 3 {
				t.Errorf("Exited(%+v), want status 3", x)
			}
			exits[x.Status.ExitStatus()]++
		}})
		pids = append(pids, pid)
	}
	r.Close()
	if got := e.tab.Count(); got != n {
		t.Fatalf("Count = %d with %d handlers running", got, n)
	}
	w.Close()
	waitProcs(t, e.tab)
	mu.Lock()
	if exits[3] != n || len(exits) != 1 {
		t.Errorf("Exited calls by status: %v, want %d × 3", exits, n)
	}
	mu.Unlock()
	for _, pid := range pids {
		e.rec.Wait(t, match("exit", "pid", strconv.Itoa(pid), "status", "3"))
		if zombieChildOf(pid, os.Getpid()) {
			t.Errorf("handler %d is a zombie after its reap", pid)
		}
	}
	if got := e.tab.Count(); got != 0 {
		t.Errorf("Count = %d after every exit", got)
	}
	check()
	if after := openFDs(t); after > before {
		t.Errorf("%d descriptors open after the handlers, %d before", after, before)
	}
}

// TestTableExitPollerRefused: a handler whose pidfd the exit poller
// cannot take (its registration fails) gets a reaper of its own, and is
// reaped, timed out and logged as the others are.
func TestTableExitPollerRefused(t *testing.T) {
	e := newEnv(t)
	// An instance that refuses every registration: epoll_ctl on a
	// descriptor that is no epoll instance fails with EINVAL.
	e.tab.closeExits()
	notEpoll, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	e.tab.mu.Lock()
	e.tab.exits, e.tab.exitsFD = notEpoll, int(notEpoll.Fd())
	e.tab.mu.Unlock()
	ev := unix.EpollEvent{Events: unix.EPOLLIN}
	if err := unix.EpollCtl(int(notEpoll.Fd()), unix.EPOLL_CTL_ADD, 0, &ev); err == nil {
		t.Fatal("epoll_ctl on /dev/null succeeded")
	}
	done := make(chan Exit, 2)
	quick := startProc(t, e.tab, Request{Cmd: shCmd(`exit 4`), Log: e.log, Exited: func(x Exit) { done <- x }})
	slow := startProc(t, e.tab, Request{Cmd: shCmd(`exec sleep 30`), Log: e.log, Timeout: 50 * time.Millisecond, Exited: func(x Exit) { done <- x }})
	for range 2 {
		select {
		case x := <-done:
			if !x.TimedOut && x.Status.ExitStatus() != 4 {
				t.Errorf("Exited(%+v): want status 4, or the timeout", x)
			}
		case <-time.After(testTimeout):
			t.Fatal("a handler was never reaped")
		}
	}
	e.rec.Wait(t, match("exit", "pid", strconv.Itoa(quick), "status", "4"))
	e.rec.Wait(t, match("exit", "pid", strconv.Itoa(slow), "status", "signal:SIGTERM"))
	if err := e.tab.Shutdown(time.Second, e.log); err != nil {
		t.Fatal(err)
	}
	// Shutdown closed the instance it had.
	if _, err := notEpoll.Stat(); err == nil {
		t.Error("the exit poller's descriptor is still open after Shutdown")
	}
}

// TestTableShutdownClosesDescriptors: once Shutdown returns, the Table
// holds no descriptor: neither /dev/null nor the exit poller's instance.
func TestTableShutdownClosesDescriptors(t *testing.T) {
	before := openFDs(t)
	e := newEnv(t)
	startProc(t, e.tab, Request{Cmd: shCmd(`exit 0`), Log: e.log, LogStderr: true})
	waitProcs(t, e.tab)
	if err := e.tab.Shutdown(time.Second, e.log); err != nil {
		t.Fatal(err)
	}
	if after := openFDs(t); after > before {
		t.Errorf("%d descriptors open after Shutdown, %d before New", after, before)
	}
}

// TestTableExitNotHeldByAnotherLog: what may wait in one handler's reap
// (its stderr drain, held by a process it left, or a slow log) holds up
// no other handler's reap: the exit poller reaps everybody, so that part
// runs on a worker. Held up, another handler's Exited (its admission
// slots), Duration and timeout would all come late. The hold here is A's
// stderr record, kept in the log sink until B's Exited has run; B starts
// only once A has been reaped.
func TestTableExitNotHeldByAnotherLog(t *testing.T) {
	e := newEnv(t)
	bDone := make(chan struct{})
	gaveUp := make(chan struct{})
	log := slog.New(hookHandler{e.rec.Handler(), func(r slog.Record) {
		if r.Message == "stderr" && recordAttr(r, "line") == "hold-me" {
			select {
			case <-bDone:
			case <-time.After(testTimeout): // a bound for "never"
				close(gaveUp)
			}
		}
	}})
	aReaped := make(chan struct{})
	startProc(t, e.tab, Request{Cmd: shCmd(`echo hold-me >&2; exit 0`), Log: log, LogStderr: true,
		Exited: func(Exit) { close(aReaped) }})
	<-aReaped
	startProc(t, e.tab, Request{Cmd: shCmd(`exit 0`), Log: e.log,
		Exited: func(Exit) { close(bDone) }})
	select {
	case <-bDone:
	case <-gaveUp:
		t.Error("B, which exited after A's reap, was not reaped until A's stderr drain ended")
	}
	waitProcs(t, e.tab)
}

// TestTableDrainCountsFromReap: a reaped handler's stderr drain is timed
// from its reap, not from when a worker gets to its exit line: a batch
// of handlers whose pipes others hold shares one window of
// stderrDrainMax, rather than one each, in turn.
func TestTableDrainCountsFromReap(t *testing.T) {
	e := newEnv(t)
	cmd := shCmd(`read x`)
	in, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	cmd.Stdin = in
	exited := make(chan struct{})
	pipe := make(chan *stderrPipe, 1)
	startProc(t, e.tab, Request{Cmd: cmd, Log: e.log, LogStderr: true, Exited: func(Exit) {
		if sp := <-pipe; sp.drainFrom.Load() == 0 {
			t.Error("the stderr drain had not begun when Exited was called")
		}
		close(exited)
	}})
	in.Close()
	pipe <- onlyPipe(t, e.tab) // before the handler can end: it waits for w
	w.Close()
	<-exited
	waitProcs(t, e.tab)
}

// TestFindLeftoversSkipsNewLeader: once a handler is reaped, a live
// process with its pid that leads a group of that number is a stranger
// that got the pid (the kernel keeps a group's number from new processes
// while the group has members), not a process the handler left.
func TestFindLeftoversSkipsNewLeader(t *testing.T) {
	null, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer null.Close()
	pid, pidfd, err := forkExec(shCmd(`exec sleep 30`), null, -1)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		syscall.Kill(pid, syscall.SIGKILL)
		waitExit(pid, pidfd)
	}()
	if l := findLeftovers(pid); l != nil {
		for _, m := range l.members {
			unix.Close(m.fd)
		}
		t.Errorf("findLeftovers(%d) with %d leading its own group = %d members, want none", pid, pid, len(l.members))
	}
}
