package proc

import (
	"os"
	"strconv"
	"strings"
	"testing"
)

// TestProcsStderrLive checks that a handler that lives on gets its
// stderr lines logged while it runs (by the logger that starts after
// stderrLive), not only after its exit.
func TestProcsStderrLive(t *testing.T) {
	e := newEnv(t)
	p := e.tab
	in, hold, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer hold.Close()
	cmd := shCmd(`echo hello >&2; read x`)
	cmd.Stdin = in
	pid := startProc(t, p, Request{Cmd: cmd, Log: e.log, LogStderr: true, Exited: func(Exit) {}})
	in.Close()
	e.rec.Wait(t, match("stderr", "pid", strconv.Itoa(pid), "line", "hello"))
	if n := p.Count(); n != 1 {
		t.Errorf("Count when the line was logged = %d, want the handler still running", n)
	}
	if n := e.rec.Count(match("exit", "pid", strconv.Itoa(pid))); n != 0 {
		t.Errorf("%d exit lines before the handler was let go, want 0", n)
	}
	hold.Close() // read x sees end of file: the handler exits
	e.rec.Wait(t, match("exit", "pid", strconv.Itoa(pid)))
	if n := e.rec.Count(match("stderr", "pid", strconv.Itoa(pid))); n != 1 {
		t.Errorf("%d stderr lines, want the 1", n)
	}
	waitProcs(t, p)
}

// TestProcsStderrFlood checks a handler that writes several pipe buffers
// of stderr in one go and exits: it waits for the logger rather than for
// ever, and every line is logged before its exit line, none cut.
func TestProcsStderrFlood(t *testing.T) {
	e := newEnv(t)
	p := e.tab
	const n = 12000 // 17 bytes each: 204 KB, three pipe buffers
	pid := startProc(t, p, Request{
		Cmd:       shCmd(`yes 0123456789abcdef | head -n ` + strconv.Itoa(n) + ` >&2`),
		Log:       e.log,
		LogStderr: true,
		Exited:    func(Exit) {},
	})
	e.rec.Wait(t, match("exit", "pid", strconv.Itoa(pid), "status", "0"))
	if got := e.rec.Count(match("stderr", "pid", strconv.Itoa(pid), "line", "0123456789abcdef")); got != n {
		t.Errorf("%d stderr lines logged before the exit line, want %d", got, n)
	}
	if got := e.rec.Count(match("stderr_cut")); got != 0 {
		t.Errorf("%d stderr_cut lines, want 0", got)
	}
	waitProcs(t, p)
}

// TestProcsStderrLineFillsBuffer checks that a line of exactly
// maxLogLine bytes is logged as one record, not as the line and an
// empty one, while an empty line after it is still logged.
func TestProcsStderrLineFillsBuffer(t *testing.T) {
	e := newEnv(t)
	p := e.tab
	exact := strings.Repeat("y", maxLogLine)
	cmd := shCmd(`printf '%s\n\nend\n' "$EXACT" >&2`)
	cmd.Env = []string{"EXACT=" + exact}
	pid := startProc(t, p, Request{Cmd: cmd, Log: e.log, LogStderr: true, Exited: func(Exit) {}})
	e.rec.Wait(t, match("exit", "pid", strconv.Itoa(pid)))
	var got []string
	for _, l := range e.rec.Filter(match("stderr", "pid", strconv.Itoa(pid))) {
		got = append(got, l.Attrs["line"])
	}
	if len(got) != 3 || got[0] != exact || got[1] != "" || got[2] != "end" {
		lens := make([]int, len(got))
		for i, g := range got {
			lens[i] = len(g)
		}
		t.Errorf("stderr records of %v bytes, want %d, 0 and 3 (the line, the empty line, end)", lens, maxLogLine)
	}
	waitProcs(t, p)
}
