package proc

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
)

// TestTablePendingAtExitLineLogger checks, for a handler whose stderr
// the logger (not the reaper) reads, that its pipe has left Pending (and
// t.pipes) by the time its exit line is logged, as TestProcsWait expects
// of the reaper's path.
//
// The test holds t.mu from the Exited call (after the reaper's own use
// of it) until a goroutine of the Table waits for t.mu: that one is the
// removal of the pipe from t.pipes, and the exit line must wait for it.
// It fails when the pipe's done is already closed then (the reaper is
// free to log the exit line while the pipe is still counted), or when
// the exit line is logged while the pipe is still in t.pipes.
func TestTablePendingAtExitLineLogger(t *testing.T) {
	e := newEnv(t)
	p := e.tab
	in, inW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer inW.Close()
	cmd := shCmd(`echo hi >&2; read x`)
	cmd.Stdin = in
	exited := make(chan struct{})
	held := make(chan struct{})
	pid := startProc(t, p, Request{Cmd: cmd, Log: e.log, LogStderr: true, Exited: func(Exit) {
		close(exited)
		<-held // the test holds t.mu now
	}})
	in.Close()
	// Logged while the handler runs: the logger owns the pipe.
	e.rec.Wait(t, match("stderr", "pid", strconv.Itoa(pid), "line", "hi"))
	sp := onlyPipe(t, p)
	if st, _ := sp.inspect(); st != pipeLogger {
		t.Fatalf("pipe state %d after a live line, want pipeLogger", st)
	}
	// A write end of our own keeps the logger from its end of file until
	// the test holds t.mu.
	w, err := os.OpenFile(fmt.Sprintf("/proc/%d/fd/2", pid), os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	inW.Close() // the handler exits
	<-exited
	p.mu.Lock()
	close(held)
	w.Close() // end of file for the logger
	var why string
	within(t, "the exit line, or a goroutine of the Table waiting for t.mu", func() bool {
		if e.rec.Count(match("exit", "pid", strconv.Itoa(pid))) > 0 {
			why = "the exit line was logged while the pipe was still in t.pipes"
			return true
		}
		if goroutineParked("sync.Mutex.Lock", "(*Table).") {
			select {
			case <-sp.done:
				why = "the pipe's done was closed before its removal from t.pipes: the reaper may log the exit line while Pending still counts the pipe"
			default:
			}
			return true
		}
		return false
	})
	_, still := p.pipes[sp]
	p.mu.Unlock()
	if why != "" {
		t.Errorf("%s (pipe in t.pipes: %v)", why, still)
	}
	e.rec.Wait(t, match("exit", "pid", strconv.Itoa(pid)))
	waitProcs(t, p)
}

// TestTablePendingAtExitLineBlackBox is the black-box form: the log sink
// calls Pending as it handles each exit line, for handlers that live past
// stderrLive (their logger closes the pipe) and for ones that do not
// (their reaper does). Every call must report no pipe: there is one per
// handler and it is gone once the handler's last lines are logged. The
// race is narrow: this may pass with the bug of the test above.
func TestTablePendingAtExitLineBlackBox(t *testing.T) {
	e := newEnv(t)
	p := e.tab
	var bad atomic.Int32
	var mu sync.Mutex
	var seen []string
	log := slog.New(hookHandler{e.rec.Handler(), func(r slog.Record) {
		if r.Message != "exit" {
			return
		}
		if _, _, pipes := p.Pending(); pipes != 0 {
			bad.Add(1)
			mu.Lock()
			seen = append(seen, recordAttr(r, "pid"))
			mu.Unlock()
		}
	}})
	// A contender for t.mu, so that the logger's removal of the pipe may
	// come late.
	contendPending(t, p)
	const n = 30
	for i := range n {
		// One at a time, so that each exit line sees its own pipe only.
		script := `echo a >&2; exit 0`
		if i%2 == 0 {
			script = `echo a >&2; sleep 0.06; echo b >&2`
		}
		startProc(t, p, Request{Cmd: shCmd(script), Log: log, LogStderr: true, Exited: func(Exit) {}})
		ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
		err := p.Wait(ctx)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
	}
	if b := bad.Load(); b > 0 {
		t.Errorf("%d of %d exit lines were logged while Pending still counted the handler's stderr pipe (pids %v)", b, n, seen)
	}
}

// TestTablePendingAfterClosePipes: once closePipes has returned, Pending
// counts none of the pipes it closed, as TestProcsClosePipes expects. A
// pipe that a logger reads is closed by the logger, which must remove it
// from t.pipes before it closes done (what closePipes waits for); a
// contender for t.mu widens the window where the other order fails.
func TestTablePendingAfterClosePipes(t *testing.T) {
	e := newEnv(t)
	p := e.tab
	contendPending(t, p)
	bad := 0
	const rounds = 20
	for range rounds {
		pid := startProc(t, p, Request{Cmd: shCmd(`echo a >&2; exec sleep 30`), Log: e.log, LogStderr: true, Exited: func(Exit) {}})
		// The logger reads the pipe.
		e.rec.Wait(t, match("stderr", "pid", strconv.Itoa(pid)))
		p.closePipes()
		if _, _, pipes := p.Pending(); pipes != 0 {
			bad++
		}
		syscall.Kill(-pid, syscall.SIGKILL)
		waitProcs(t, p)
	}
	if bad > 0 {
		t.Errorf("%d of %d times, Pending counted the pipe after closePipes had returned", bad, rounds)
	}
}

// contendPending calls p.Pending in a loop until the test ends: a
// contender for t.mu, which widens the windows between a Table's own
// uses of it.
func contendPending(t *testing.T, p *Table) {
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
				p.Pending()
			}
		}
	}()
	t.Cleanup(func() { close(stop); wg.Wait() })
}
