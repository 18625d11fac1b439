package proc

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

// stderrCase is a handler script and the stderr lines it must log.
type stderrCase struct {
	script string
	env    []string
	want   []string
}

// stderrCases returns n handlers of several kinds: short ones (the reaper
// reads their pipe), ones that end around stderrLive (the timer and the
// reaper race for the pipe), ones that outlive it (the logger reads it),
// a partial last line, a line longer than maxLogLine, and silence.
func stderrCases(n int) []stderrCase {
	long := strings.Repeat("L", maxLogLine+904)
	cases := make([]stderrCase, n)
	for i := range cases {
		id := strconv.Itoa(i)
		switch i % 6 {
		case 0:
			cases[i] = stderrCase{script: `echo a` + id + ` >&2; echo b >&2`, want: []string{"a" + id, "b"}}
		case 1:
			cases[i] = stderrCase{script: `printf 'x\ny' >&2`, want: []string{"x", "y"}}
		case 2:
			// 30 to 70 ms: both sides of stderrLive.
			d := fmt.Sprintf("0.%03d", 30+(i*7)%41)
			cases[i] = stderrCase{script: `echo a >&2; sleep ` + d + `; printf 'b\nc' >&2`, want: []string{"a", "b", "c"}}
		case 3:
			cases[i] = stderrCase{script: `printf '%s\n' "$LONG" >&2`, env: []string{"LONG=" + long},
				want: []string{long[:maxLogLine], long[maxLogLine:]}}
		case 4:
			cases[i] = stderrCase{script: `exit 3`}
		case 5:
			// A long line split across the handler's life: half before
			// stderrLive, half after.
			cases[i] = stderrCase{script: `printf '%s' "$LONG" >&2; sleep 0.08; printf '%s\n' "$LONG" >&2`,
				env: []string{"LONG=" + long[:3000]}, want: []string{long[:maxLogLine], long[:6000-maxLogLine]}}
		}
	}
	return cases
}

// runCases starts every case at once, from starters goroutines, and
// checks each handler's log.
func runCases(t *testing.T, e *testEnv, cases []stderrCase, starters int) {
	t.Helper()
	pids := make([]int, len(cases))
	exits := make([]atomic.Int32, len(cases))
	var wg sync.WaitGroup
	for s := range starters {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := s; i < len(cases); i += starters {
				c := cases[i]
				cmd := shCmd(c.script)
				if c.env != nil {
					cmd.Env = append(os.Environ(), c.env...)
				}
				pid, err := e.tab.Start(Request{Cmd: cmd, Log: e.log, LogStderr: true, Exited: func(Exit) { exits[i].Add(1) }})
				if err != nil {
					t.Errorf("start %d: %v", i, err)
				}
				pids[i] = pid
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	waitProcs(t, e.tab)
	for i, c := range cases {
		if n := exits[i].Load(); n != 1 {
			t.Errorf("case %d: Exited called %d times, want once", i, n)
		}
		msgs, lines := checkOrder(t, e, pids[i])
		if strings.Join(lines, "|") != strings.Join(c.want, "|") {
			t.Errorf("case %d (%s): pid %d logged stderr %s, want %s", i, c.script, pids[i], short(lines), short(c.want))
		}
		for _, m := range msgs {
			if m == "stderr_cut" {
				t.Errorf("case %d (%s): pid %d: stderr_cut for a handler that left nothing behind", i, c.script, pids[i])
			}
		}
	}
	if h, l, pipes := e.tab.Pending(); h+l+pipes != 0 {
		t.Errorf("Pending after Wait = %d, %d, %d; want nothing", h, l, pipes)
	}
}

// short renders lines with the long ones abbreviated.
func short(lines []string) string {
	out := make([]string, len(lines))
	for i, l := range lines {
		if len(l) > 20 {
			l = fmt.Sprintf("%s…(%d bytes)", l[:8], len(l))
		}
		out[i] = strconv.Quote(l)
	}
	return "[" + strings.Join(out, " ") + "]"
}

// TestTableManyConcurrent runs 200 handlers at once: every stderr line
// of each is logged once, in order, between its start and exit lines;
// nothing is cut; no descriptor is left or closed twice.
func TestTableManyConcurrent(t *testing.T) {
	e := newEnv(t)
	before := openFDs(t)
	runCases(t, e, stderrCases(200), 4)
	if after := openFDs(t); after > before {
		t.Errorf("%d descriptors open after 200 handlers, %d before", after, before)
	}
	check := sentinel(t)
	runCases(t, e, stderrCases(60), 1)
	check()
	if after := openFDs(t); after > before {
		t.Errorf("%d descriptors open after the second round, %d before", after, before)
	}
}

// TestTableExitAroundStderrLive runs handlers one at a time that exit
// from 40 to 60 ms after their start, with lines before and after the
// sleep: whichever of the timer and the reaper gets the pipe, every line
// is logged before the exit line and none twice.
func TestTableExitAroundStderrLive(t *testing.T) {
	e := newEnv(t)
	before := openFDs(t)
	for ms := 40; ms <= 60; ms++ {
		want := []string{"before", "after", "tail"}
		pid := startProc(t, e.tab, Request{
			Cmd:       shCmd(fmt.Sprintf(`echo before >&2; sleep 0.%03d; printf 'after\ntail' >&2`, ms)),
			Log:       e.log,
			LogStderr: true,
			Exited:    func(Exit) {},
		})
		waitProcs(t, e.tab)
		msgs, lines := checkOrder(t, e, pid)
		if strings.Join(lines, "|") != strings.Join(want, "|") {
			t.Errorf("%d ms: stderr %q, want %q", ms, lines, want)
		}
		if strings.Contains(strings.Join(msgs, ","), "stderr_cut") {
			t.Errorf("%d ms: stderr_cut for a handler that left nothing behind: %q", ms, msgs)
		}
	}
	if after := openFDs(t); after > before {
		t.Errorf("%d descriptors open after the handlers, %d before", after, before)
	}
}

// TestTableFailedStartNoFDLeak: a start that fails after the stderr pipe
// was made (exec of a missing program) closes both of its ends.
func TestTableFailedStartNoFDLeak(t *testing.T) {
	e := newEnv(t)
	before := openFDs(t)
	for range 20 {
		cmd := &Command{Path: "/nonexistent/handler", Args: []string{"handler"}, Sys: shCmd("").Sys}
		if _, err := e.tab.Start(Request{Cmd: cmd, Log: e.log, LogStderr: true, Exited: func(Exit) { t.Errorf("Exited for a failed start") }}); err == nil {
			t.Fatal("start of a missing program succeeded")
		}
	}
	if after := openFDs(t); after > before {
		t.Errorf("%d descriptors open after 20 failed starts, %d before", after, before)
	}
	if h, l, pipes := e.tab.Pending(); h+l+pipes != 0 {
		t.Errorf("Pending after failed starts = %d, %d, %d; want nothing", h, l, pipes)
	}
	waitProcs(t, e.tab)
}
