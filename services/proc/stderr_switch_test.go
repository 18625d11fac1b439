package proc

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// TestTableLineAcrossPollerSwitch: the handler writes the start of a
// line and exits; a writer it left (the test, holding the pipe's write
// end) writes the rest once the reaper has read the start without the
// poller and gone into it. Each line is logged whole (or in maxLogLine
// pieces), none twice, before the exit line, and nothing is cut.
func TestTableLineAcrossPollerSwitch(t *testing.T) {
	long := strings.Repeat("x", 3000)
	tail := strings.Repeat("y", 3000)
	for _, tt := range []struct {
		name, first, rest string
		want              []string
	}{
		{"partial", "part", "ial\nnext", []string{"partial", "next"}},
		{"long", long, tail + "\n", []string{long + tail[:maxLogLine-len(long)], tail[maxLogLine-len(long):]}},
		{"newline first", "one\n", "\ntwo", []string{"one", "", "two"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			p := e.tab
			in, inW, err := os.Pipe()
			if err != nil {
				t.Fatal(err)
			}
			defer inW.Close()
			cmd := shCmd(`printf '%s' "$FIRST" >&2; read x`)
			cmd.Env = append(os.Environ(), "FIRST="+tt.first)
			cmd.Stdin = in
			pid := startProc(t, p, Request{Cmd: cmd, Log: e.log, LogStderr: true, Exited: func(Exit) {}})
			in.Close()
			w, err := os.OpenFile(fmt.Sprintf("/proc/%d/fd/2", pid), os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer w.Close()
			sp := onlyPipe(t, p)
			inW.Close() // the handler exits
			var state pipeState
			within(t, "a reader of the pipe in the poller", func() bool {
				st, polled := sp.inspect()
				state = st
				return st != pipeIdle && polled
			})
			if _, err := w.WriteString(tt.rest); err != nil {
				t.Fatal(err)
			}
			w.Close()
			e.rec.Wait(t, match("exit", "pid", strconv.Itoa(pid)))
			msgs, lines := checkOrder(t, e, pid)
			if strings.Join(lines, "|") != strings.Join(tt.want, "|") {
				t.Errorf("reader %d: stderr %s, want %s", state, short(lines), short(tt.want))
			}
			if strings.Contains(strings.Join(msgs, ","), "stderr_cut") {
				t.Errorf("reader %d: %q: stderr_cut, want the pipe read to its end", state, msgs)
			}
			t.Logf("reader: %d (1 reaper, 2 logger)", state)
			waitProcs(t, p)
		})
	}
}

// TestTableClosePipesRacesTimer calls closePipes at points around the
// stderrLive timer of a running handler that wrote one line: whichever
// of the two gets the pipe, it is cut exactly once, its line is logged
// at most once, and its descriptor is closed exactly once. (Pending
// right after closePipes: TestTablePendingAfterClosePipes.)
func TestTableClosePipesRacesTimer(t *testing.T) {
	e := newEnv(t)
	p := e.tab
	before := openFDs(t)
	for i := range 24 {
		cmd := shCmd(`echo a >&2; echo ready; exec sleep 30`)
		out := pipeOut(t, cmd)
		pid := startProc(t, p, Request{Cmd: cmd, Log: e.log, LogStderr: true, Exited: func(Exit) {}})
		buf := make([]byte, 6)
		if _, err := out.Read(buf); err != nil {
			t.Fatal(err)
		}
		out.Close()
		sp := onlyPipe(t, p)
		// Wait for a spread of points: before the timer, at it, after.
		if i%3 == 1 {
			within(t, "the timer's claim", func() bool { st, _ := sp.inspect(); return st != pipeIdle })
		} else if i%3 == 2 {
			e.rec.Wait(t, match("stderr", "pid", strconv.Itoa(pid)))
		}
		p.closePipes()
		check := sentinel(t)
		select {
		case <-sp.done:
		default:
			t.Errorf("round %d: closePipes returned with the pipe open", i)
		}
		syscall.Kill(-pid, syscall.SIGKILL)
		e.rec.Wait(t, match("exit", "pid", strconv.Itoa(pid)))
		waitProcs(t, p)
		check()
		msgs, lines := checkOrder(t, e, pid)
		cuts := strings.Count(strings.Join(msgs, ","), "stderr_cut")
		if cuts != 1 || len(lines) > 1 {
			t.Errorf("round %d: pid %d logged %q, want one stderr_cut and at most the one line", i, pid, msgs)
		}
	}
	if after := openFDs(t); after > before {
		t.Errorf("%d descriptors open after the handlers, %d before", after, before)
	}
}
