package testkit

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
)

// newHelpers is the registry this package's tests run their binary as.
func newHelpers() *Helpers {
	h := NewHelpers()
	h.Register("readline", Readline)
	h.Register("exit", Exit)
	h.Register("describe", Describe)
	h.Register("stderr", Stderr)
	return h
}

func TestMain(m *testing.M) {
	newHelpers().Dispatch()
	if err := CloseOnExecInherited(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Exit(m.Run())
}

// TestRecorderConcurrent logs from many goroutines through loggers with
// attributes of their own while other goroutines wait: run with -race.
// Every record arrives once, with its logger's attributes, and every
// waiter wakes.
func TestRecorderConcurrent(t *testing.T) {
	r := NewRecorder(t)
	const workers, each = 8, 200
	var waiters sync.WaitGroup
	for range 4 {
		waiters.Go(func() {
			// WaitN may only fail the test from the test's goroutine;
			// here a short count is reported after the fact.
			var got []Entry
			func() {
				defer func() { recover() }()
				got = r.WaitN(noFatal{t}, workers*each, Match("tick"))
			}()
			if len(got) < workers*each {
				t.Errorf("a waiter woke with %d entries, want %d", len(got), workers*each)
			}
		})
	}
	var logs sync.WaitGroup
	for w := range workers {
		logs.Go(func() {
			log := r.Logger().With("worker", w)
			for i := range each {
				log.Info("tick", "i", i)
			}
		})
	}
	logs.Wait()
	waiters.Wait()
	all := r.WaitN(t, workers*each, Match("tick"))
	if len(all) != workers*each {
		t.Fatalf("%d entries, want %d", len(all), workers*each)
	}
	seen := map[string]bool{}
	for _, e := range all {
		k := e.Attrs["worker"] + "/" + e.Attrs["i"]
		if seen[k] {
			t.Fatalf("entry %s recorded twice", k)
		}
		seen[k] = true
	}
	for w := range workers {
		if n := r.Count(Match("tick", "worker", fmt.Sprint(w))); n != each {
			t.Errorf("worker %d: %d entries, want %d", w, n, each)
		}
	}
}

// noFatal turns Fatalf into a panic, for a wait in a goroutine other
// than the test's.
type noFatal struct{ testing.TB }

func (n noFatal) Fatalf(format string, args ...any) { panic(fmt.Sprintf(format, args...)) }

// TestRecorderAttrs checks what an Entry holds: level, message, the
// logger's and the record's attributes as strings, groups flattened,
// the record's attribute winning over the logger's, empty ones dropped.
func TestRecorderAttrs(t *testing.T) {
	r := NewRecorder(t)
	log := r.Logger().With("service", "echo", "n", 1).WithGroup("g").With("a", true)
	log.Warn("refused", "n", 2, slog.Group("h", "c", "x"), slog.Group("", "inline", 3), slog.Attr{}, slog.Group("empty"))
	r.Logger().WithGroup("").Error("plain", "err", errors.New("boom"))
	r.Logger().With("k", "logger").Info("override", "k", "record")

	got := r.All()
	if len(got) != 3 {
		t.Fatalf("%d entries, want 3: %v", len(got), got)
	}
	want := Entry{Level: slog.LevelWarn, Msg: "refused", Attrs: map[string]string{
		"service": "echo", "n": "1", "g.a": "true", "g.n": "2", "g.h.c": "x", "g.inline": "3",
	}}
	if got[0].String() != want.String() {
		t.Errorf("entry\n got %s\nwant %s", got[0], want)
	}
	if e := got[1]; e.Level != slog.LevelError || e.Msg != "plain" || e.Attrs["err"] != "boom" || len(e.Attrs) != 1 {
		t.Errorf("entry %s, want ERROR \"plain\" err=boom", e)
	}
	if e := got[2]; e.Attrs["k"] != "record" {
		t.Errorf("entry %s, want the record's k=record over the logger's", e)
	}
}

func TestMatchers(t *testing.T) {
	r := NewRecorder(t)
	r.Add(Entry{Msg: "READY=1\nSTATUS=ok"})
	r.Logger().Info("exit", "status", "0", "pid", "7")
	r.Logger().Info("exit", "status", "1")

	for _, c := range []struct {
		name string
		m    Matcher
		n    int
	}{
		{"message only", Match("exit"), 2},
		{"one attribute", Match("exit", "status", "0"), 1},
		{"two attributes", Match("exit", "status", "0", "pid", "7"), 1},
		{"attribute absent is not empty", Match("exit", "pid", ""), 0},
		{"other message", Match("start"), 0},
		{"prefix", Prefix("READY=1"), 1},
		{"prefix of nothing", Prefix("STOPPING=1"), 0},
	} {
		if got := r.Count(c.m); got != c.n {
			t.Errorf("%s: Count = %d, want %d", c.name, got, c.n)
		}
	}
	if got := r.Wait(t, Match("exit", "status", "1")); got.Attrs["status"] != "1" {
		t.Errorf("Wait returned %s", got)
	}
	if a, b := r.Index(Prefix("READY=1")), r.Index(Match("exit", "status", "1")); a != 0 || b != 2 {
		t.Errorf("Index = %d and %d, want 0 and 2", a, b)
	}
	if i := r.Index(Match("start")); i != -1 {
		t.Errorf("Index of nothing = %d, want -1", i)
	}
	defer func() {
		if recover() == nil {
			t.Error("Match with an odd number of key, value arguments did not panic")
		}
	}()
	Match("exit", "status")
}

// TestHelpers runs this test binary as its helpers, as the packages'
// tests do with handlers.
func TestHelpers(t *testing.T) {
	h := newHelpers()
	run := func(stdin string, extra []*os.File, name string, args ...string) (stdout, stderr string, code int) {
		t.Helper()
		path, argv := h.Cmd(name, args...)
		cmd := exec.Command(path)
		cmd.Args = argv
		cmd.Stdin = strings.NewReader(stdin)
		cmd.ExtraFiles = extra
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		err := cmd.Run()
		var ee *exec.ExitError
		if err != nil && !errors.As(err, &ee) {
			t.Fatalf("running helper %s: %v", name, err)
		}
		return out.String(), errb.String(), cmd.ProcessState.ExitCode()
	}

	if out, _, code := run("a line\nmore\n", nil, "readline"); out != "got:a line\n" || code != 0 {
		t.Errorf("readline: %q, status %d; want \"got:a line\\n\", 0", out, code)
	}
	if _, _, code := run("", nil, "exit", "3"); code != 3 {
		t.Errorf("exit 3: status %d", code)
	}
	if out, errs, code := run("", nil, "stderr", "one", "two"); out != "done\n" || errs != "one\ntwo\n" || code != 0 {
		t.Errorf("stderr: stdout %q, stderr %q, status %d", out, errs, code)
	}
	out, _, _ := run("", nil, "describe")
	if !strings.Contains(out, "\nextra-fds=[]\n") {
		t.Errorf("describe without extra descriptors:\n%s", out)
	}
	f, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out, _, _ = run("", []*os.File{f}, "describe")
	if !strings.Contains(out, "\nextra-fds=[3:/dev/null]\n") {
		t.Errorf("describe with /dev/null as fd 3:\n%s", out)
	}

	// An unknown name is an error of the test's, said on stderr.
	path, argv := h.Cmd("readline")
	cmd := exec.Command(path)
	cmd.Args = append(argv[:1], "no-such-helper")
	errs, err := cmd.CombinedOutput()
	if cmd.ProcessState == nil || cmd.ProcessState.ExitCode() != 2 || !strings.Contains(string(errs), `no helper "no-such-helper"`) {
		t.Errorf("unknown helper: %v, %q; want status 2 and a message", err, errs)
	}

	if got, want := h.Unused(), []string(nil); !slices.Equal(got, want) {
		t.Errorf("Unused = %q, want none", got)
	}
	if got := newHelpers().Unused(); !slices.Equal(got, []string{"describe", "exit", "readline", "stderr"}) {
		t.Errorf("Unused of a fresh registry = %q, want every helper", got)
	}
	h.Exe = "/some/copy"
	if path, argv := h.Cmd("exit", "0"); path != "/some/copy" || !slices.Equal(argv, []string{Argv0, "exit", "0"}) {
		t.Errorf("Cmd with Exe set = %q %q", path, argv)
	}
	for _, f := range []func(){
		func() { h.Register("exit", Exit) },
		func() { h.Cmd("no-such-helper") },
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Error("a duplicate Register or a Cmd of an unknown helper did not panic")
				}
			}()
			f()
		}()
	}
}

// TestNet checks FreePort, RoundTrip and ReadAll against a loopback
// echo server of the test's own.
func TestNet(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	defer func() {
		l.Close()
		wg.Wait()
	}()
	wg.Go(func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			io.Copy(c, c)
			c.Close()
		}
	})
	addr := l.Addr().String()
	if got := RoundTrip(t, addr, "hello\n"); got != "hello\n" {
		t.Errorf("RoundTrip = %q, want hello", got)
	}
	c := Dial(t, addr)
	io.WriteString(c, "x")
	c.(*net.TCPConn).CloseWrite()
	if got := ReadAll(t, c); got != "x" {
		t.Errorf("ReadAll = %q, want x", got)
	}
	for _, network := range []string{"tcp", "udp"} {
		p := FreePort(t, network)
		if p <= 0 || p > 65535 {
			t.Errorf("FreePort(%s) = %d", network, p)
		}
	}
	n := 0
	WaitFor(t, "three polls", func() bool { n++; return n == 3 })
}
