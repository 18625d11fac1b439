package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"testing/slogtest"
	"time"

	gsyslog "github.com/hashicorp/go-syslog"
)

// fakeSyslog is a gsyslog.Syslogger that records what it is given.
type fakeSyslog struct {
	mu   sync.Mutex
	msgs []fakeMsg
}

type fakeMsg struct {
	p    gsyslog.Priority
	text string
}

func (f *fakeSyslog) WriteLevel(p gsyslog.Priority, b []byte) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.msgs = append(f.msgs, fakeMsg{p, string(b)})
	return nil
}

func (f *fakeSyslog) Write(b []byte) (int, error) { return len(b), f.WriteLevel(gsyslog.LOG_INFO, b) }

func (f *fakeSyslog) Close() error { return nil }

func (f *fakeSyslog) take() []fakeMsg {
	f.mu.Lock()
	defer f.mu.Unlock()
	m := f.msgs
	f.msgs = nil
	return m
}

var _ gsyslog.Syslogger = (*fakeSyslog)(nil)

func TestSyslogPriority(t *testing.T) {
	tests := []struct {
		level slog.Level
		want  gsyslog.Priority
	}{
		{slog.LevelDebug - 4, gsyslog.LOG_DEBUG},
		{slog.LevelDebug, gsyslog.LOG_DEBUG},
		{slog.LevelDebug + 2, gsyslog.LOG_DEBUG},
		{slog.LevelInfo, gsyslog.LOG_INFO},
		{slog.LevelInfo + 2, gsyslog.LOG_INFO},
		{slog.LevelWarn, gsyslog.LOG_WARNING},
		{slog.LevelWarn + 1, gsyslog.LOG_WARNING},
		{slog.LevelError, gsyslog.LOG_ERR},
		{slog.LevelError + 8, gsyslog.LOG_ERR},
	}
	for _, tt := range tests {
		if got := syslogPriority(tt.level); got != tt.want {
			t.Errorf("syslogPriority(%v) = %v, want %v", tt.level, got, tt.want)
		}
	}
}

// TestLogFormat pins the text an operator greps for, for both sinks: the
// syslog message text is want, and the stderr line is "time=… level=L " + want.
func TestLogFormat(t *testing.T) {
	tests := []struct {
		name      string
		log       func(l *slog.Logger)
		wantPrio  gsyslog.Priority
		wantLevel string
		want      string
	}{
		{
			name: "exit",
			log: func(l *slog.Logger) {
				l.With("service", "hello").Info("exit", "pid", 123, "remote", "127.0.0.1:5555", "status", 0, "duration", 12*time.Millisecond)
			},
			wantPrio: gsyslog.LOG_INFO, wantLevel: "INFO",
			want: "service=hello event=exit pid=123 remote=127.0.0.1:5555 status=0 duration=12ms",
		},
		{
			name:     "error value is quoted",
			log:      func(l *slog.Logger) { l.Error("spawn", "err", errors.New("exec: no such file")) },
			wantPrio: gsyslog.LOG_ERR, wantLevel: "ERROR",
			want: `event=spawn err="exec: no such file"`,
		},
		{
			name:     "message with space",
			log:      func(l *slog.Logger) { l.Warn("rate limited", "n", 3) },
			wantPrio: gsyslog.LOG_WARNING, wantLevel: "WARN",
			want: `event="rate limited" n=3`,
		},
		{
			name:     "debug",
			log:      func(l *slog.Logger) { l.Debug("accept") },
			wantPrio: gsyslog.LOG_DEBUG, wantLevel: "DEBUG",
			want: `event=accept`,
		},
		{
			name:     "multi-line value stays on one line",
			log:      func(l *slog.Logger) { l.Info("stderr", "line", "a\nb\n") },
			wantPrio: gsyslog.LOG_INFO, wantLevel: "INFO",
			want: `event=stderr line="a\nb\n"`,
		},
		{
			name:     "trailing newline in message",
			log:      func(l *slog.Logger) { l.Info("exit\n") },
			wantPrio: gsyslog.LOG_INFO, wantLevel: "INFO",
			want: `event="exit\n"`,
		},
		{
			name:     "quotes and equals",
			log:      func(l *slog.Logger) { l.Info("exec", "arg", `a="b"`) },
			wantPrio: gsyslog.LOG_INFO, wantLevel: "INFO",
			want: `event=exec arg="a=\"b\""`,
		},
		{
			name:     "empty message",
			log:      func(l *slog.Logger) { l.With("service", "x").Info("", "k", "v") },
			wantPrio: gsyslog.LOG_INFO, wantLevel: "INFO",
			want: `service=x k=v`,
		},
		{
			name: "groups",
			log: func(l *slog.Logger) {
				l.With("service", "hello").WithGroup("req").With("id", 7).Info("done", "bytes", 10)
			},
			wantPrio: gsyslog.LOG_INFO, wantLevel: "INFO",
			want: `service=hello event=done req.id=7 req.bytes=10`,
		},
		{
			name: "empty group is left out",
			log: func(l *slog.Logger) {
				l.With("service", "hello").WithGroup("req").WithGroup("sub").Info("done")
			},
			wantPrio: gsyslog.LOG_INFO, wantLevel: "INFO",
			want: `service=hello event=done`,
		},
		{
			name: "siblings do not share attrs",
			log: func(l *slog.Logger) {
				// Three appends leave spare capacity in the parent's slice.
				p := l.With("a", 1).With("b", 2).With("c", 3)
				q := p.With("x", 0)
				_ = p.With("d", 4)
				q.Info("e")
			},
			wantPrio: gsyslog.LOG_INFO, wantLevel: "INFO",
			want: `a=1 b=2 c=3 x=0 event=e`,
		},
		{
			name: "siblings in a group do not share attrs",
			log: func(l *slog.Logger) {
				p := l.WithGroup("g").With("a", 1).With("b", 2).With("c", 3)
				q := p.With("x", 0)
				_ = p.With("d", 4)
				q.Info("e")
			},
			wantPrio: gsyslog.LOG_INFO, wantLevel: "INFO",
			want: `event=e g.a=1 g.b=2 g.c=3 g.x=0`,
		},
	}
	stderrLine := regexp.MustCompile(`^time=\S+ level=(\S+) (.*)\n$`)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fake := &fakeSyslog{}
			tt.log(slog.New(newSyslogHandler(fake, slog.LevelDebug)))
			msgs := fake.take()
			if len(msgs) != 1 {
				t.Fatalf("syslog: got %d messages %+v, want 1", len(msgs), msgs)
			}
			if got := msgs[0]; got.p != tt.wantPrio || got.text != tt.want {
				t.Errorf("syslog: got priority %v text\n\t%s\nwant priority %v text\n\t%s", got.p, got.text, tt.wantPrio, tt.want)
			}

			var buf bytes.Buffer
			tt.log(slog.New(newStderrHandler(&buf, slog.LevelDebug)))
			m := stderrLine.FindStringSubmatch(buf.String())
			if m == nil {
				t.Fatalf("stderr: got %q, want one line time=… level=%s %s", buf.String(), tt.wantLevel, tt.want)
			}
			if m[1] != tt.wantLevel || m[2] != tt.want {
				t.Errorf("stderr: got level %s text\n\t%s\nwant level %s text\n\t%s", m[1], m[2], tt.wantLevel, tt.want)
			}
		})
	}
}

// parseKV parses a slog.TextHandler-style line back into a map, nesting
// dotted keys as groups, for slogtest.
func parseKV(t *testing.T, line string) map[string]any {
	t.Helper()
	m := map[string]any{}
	for s := line; s != ""; {
		key, rest := kvToken(t, s, " =")
		if !strings.HasPrefix(rest, "=") {
			t.Fatalf("parse %q: no '=' after key %q", line, key)
		}
		val, rest := kvToken(t, rest[1:], " ")
		path := strings.Split(key, ".")
		g := m
		for _, name := range path[:len(path)-1] {
			sub, ok := g[name].(map[string]any)
			if !ok {
				sub = map[string]any{}
				g[name] = sub
			}
			g = sub
		}
		if _, dup := g[path[len(path)-1]]; dup {
			t.Errorf("parse %q: duplicate key %q", line, key)
		}
		g[path[len(path)-1]] = val
		s = strings.TrimPrefix(rest, " ")
	}
	return m
}

// kvToken returns the leading token of s, which is a Go-quoted string or
// ends before any byte in stop, and the rest of s.
func kvToken(t *testing.T, s, stop string) (tok, rest string) {
	t.Helper()
	if strings.HasPrefix(s, `"`) {
		q, err := strconv.QuotedPrefix(s)
		if err != nil {
			t.Fatalf("parse %q: %v", s, err)
		}
		tok, err := strconv.Unquote(q)
		if err != nil {
			t.Fatalf("parse %q: %v", s, err)
		}
		return tok, s[len(q):]
	}
	if i := strings.IndexAny(s, stop); i >= 0 {
		return s[:i], s[i:]
	}
	return s, ""
}

// renameEvent moves the event key to slog.MessageKey, the name slogtest
// checks the message under.
func renameEvent(t *testing.T, m map[string]any) map[string]any {
	t.Helper()
	if _, ok := m[slog.MessageKey]; ok {
		t.Errorf("output has key %q; the message should be under %q", slog.MessageKey, eventKey)
	}
	if v, ok := m[eventKey]; ok {
		m[slog.MessageKey] = v
		delete(m, eventKey)
	}
	return m
}

func TestStderrHandlerSlogtest(t *testing.T) {
	var buf *bytes.Buffer
	slogtest.Run(t,
		func(*testing.T) slog.Handler {
			buf = &bytes.Buffer{}
			return newStderrHandler(buf, slog.LevelInfo)
		},
		func(t *testing.T) map[string]any {
			line, ok := strings.CutSuffix(buf.String(), "\n")
			if !ok || strings.Contains(line, "\n") {
				t.Fatalf("got %q, want one line", buf.String())
			}
			return renameEvent(t, parseKV(t, line))
		})
}

// syslogMsg is one datagram as gsyslog formats it for a socket given to
// DialLogger: "<PRI>RFC3339 HOSTNAME TAG[PID]: TEXT\n".
type syslogMsg struct {
	pri  int
	time time.Time
	tag  string
	pid  int
	text string
}

// listenSyslog returns a fake syslog daemon: a unix datagram socket in a
// temporary directory, closed at the end of the test.
func listenSyslog(t *testing.T) (path string, c *net.UnixConn) {
	t.Helper()
	path = filepath.Join(t.TempDir(), "log")
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return path, c
}

// readSyslog reads and parses the next datagram, failing the test if none
// arrives or it is malformed.
func readSyslog(t *testing.T, c *net.UnixConn) syslogMsg {
	t.Helper()
	if err := c.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64<<10)
	n, _, err := c.ReadFrom(buf)
	if err != nil {
		t.Fatalf("read syslog datagram: %v", err)
	}
	raw := string(buf[:n])
	m := regexp.MustCompile(`^<(\d+)>(\S+) \S* ([^\s\[]+)\[(\d+)\]: ([^\n]*)\n$`).FindStringSubmatch(raw)
	if m == nil {
		t.Fatalf("datagram %q: want <PRI>TIME HOST TAG[PID]: TEXT and one trailing newline", raw)
	}
	pri, _ := strconv.Atoi(m[1])
	ts, err := time.Parse(time.RFC3339, m[2])
	if err != nil {
		t.Fatalf("datagram %q: timestamp: %v", raw, err)
	}
	pid, _ := strconv.Atoi(m[4])
	return syslogMsg{pri: pri, time: ts, tag: m[3], pid: pid, text: m[5]}
}

// TestSyslogHandlerSlogtest runs slogtest end to end: newLogger → gsyslog →
// a unix datagram socket. The time and level slogtest looks for are the ones
// the syslog message carries: the header timestamp and the PRI severity.
func TestSyslogHandlerSlogtest(t *testing.T) {
	path, c := listenSyslog(t)
	slogtest.Run(t,
		func(t *testing.T) slog.Handler {
			if strings.HasSuffix(t.Name(), "/zero-time") {
				t.Skip("by design: the syslog header always carries the send time, and the record's own time is never rendered")
			}
			var stderr bytes.Buffer
			l, closeLog, err := newLogger(logOptions{Target: "syslog", Socket: path, Facility: "local3", Tag: "superd-test"}, &stderr)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() {
				if err := closeLog(); err != nil {
					t.Errorf("close: %v", err)
				}
				if stderr.Len() != 0 {
					t.Errorf("stderr: got %q, want nothing", stderr.String())
				}
			})
			return l.Handler()
		},
		func(t *testing.T) map[string]any {
			msg := readSyslog(t, c)
			m := renameEvent(t, parseKV(t, msg.text))
			for _, k := range []string{slog.TimeKey, slog.LevelKey} {
				if _, ok := m[k]; ok {
					t.Errorf("text %q has key %q; syslog carries it in the header", msg.text, k)
				}
			}
			m[slog.TimeKey] = msg.time
			m[slog.LevelKey] = msg.pri & 7
			return m
		})
}

func TestNewLoggerSyslog(t *testing.T) {
	const local3 = 19 // facility number; PRI = facility*8 + severity
	path, c := listenSyslog(t)
	var stderr bytes.Buffer
	l, closeLog, err := newLogger(logOptions{Target: "syslog", Socket: path, Facility: "local3", Tag: "superd-test", Level: slog.LevelInfo}, &stderr)
	if err != nil {
		t.Fatal(err)
	}
	svc := l.With("service", "hello")
	tests := []struct {
		name    string
		log     func()
		wantPRI int
		want    string
	}{
		{
			name: "info after a filtered debug",
			log: func() {
				svc.Debug("accept", "remote", "127.0.0.1:5555") // below Level: must not be sent
				svc.Info("exit", "pid", 123, "remote", "127.0.0.1:5555", "status", 0, "duration", 12*time.Millisecond)
			},
			wantPRI: local3*8 + 6, // 158
			want:    "service=hello event=exit pid=123 remote=127.0.0.1:5555 status=0 duration=12ms",
		},
		{
			name:    "error",
			log:     func() { svc.Error("spawn", "err", "exec: no such file") },
			wantPRI: local3*8 + 3, // 155
			want:    `service=hello event=spawn err="exec: no such file"`,
		},
		{
			name:    "warn",
			log:     func() { l.Warn("rate", "n", 2) },
			wantPRI: local3*8 + 4, // 156
			want:    `event=rate n=2`,
		},
		{
			name:    "multi-line message is one datagram",
			log:     func() { l.Info("stderr\n", "line", "x\ny\n") },
			wantPRI: local3*8 + 6,
			want:    `event="stderr\n" line="x\ny\n"`,
		},
	}
	for _, tt := range tests {
		tt.log()
		got := readSyslog(t, c)
		if got.pri != tt.wantPRI || got.tag != "superd-test" || got.pid != os.Getpid() || got.text != tt.want {
			t.Errorf("%s: got <%d> %s[%d]: %s\nwant <%d> superd-test[%d]: %s", tt.name,
				got.pri, got.tag, got.pid, got.text, tt.wantPRI, os.Getpid(), tt.want)
		}
	}
	if err := closeLog(); err != nil {
		t.Errorf("close: %v", err)
	}
	if err := closeLog(); err != nil {
		t.Errorf("second close: %v", err)
	}
	if stderr.Len() != 0 {
		t.Errorf("stderr: got %q, want nothing", stderr.String())
	}
}

func TestNewLoggerFallback(t *testing.T) {
	tests := []struct {
		name      string
		level     slog.Level
		wantLines []string // after the notice; regexps
	}{
		{"info", slog.LevelInfo, []string{`^time=\S+ level=INFO service=hello event=exit pid=1$`, `^time=\S+ level=ERROR service=hello event=fail$`}},
		{"notice even above its level", slog.LevelError, []string{`^time=\S+ level=ERROR service=hello event=fail$`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			socket := filepath.Join(t.TempDir(), "no-such-socket")
			var stderr bytes.Buffer
			l, closeLog, err := newLogger(logOptions{Target: "syslog", Socket: socket, Facility: "daemon", Tag: "superd-test", Level: tt.level}, &stderr)
			if err != nil {
				t.Fatal(err)
			}
			notice := stderr.String()
			if strings.Count(notice, "\n") != 1 {
				t.Fatalf("stderr after newLogger: got %q, want exactly one line", notice)
			}
			m := parseKV(t, strings.TrimSuffix(notice, "\n"))
			if m[slog.LevelKey] != "WARN" || !strings.Contains(fmt.Sprint(m[eventKey]), "syslog") || !strings.Contains(fmt.Sprint(m["err"]), socket) {
				t.Errorf("notice %q: want level=WARN, an event mentioning syslog and an err naming %s", notice, socket)
			}

			stderr.Reset()
			svc := l.With("service", "hello")
			svc.Info("exit", "pid", 1)
			svc.Error("fail")
			lines := strings.SplitAfter(stderr.String(), "\n")
			if last := lines[len(lines)-1]; last != "" {
				t.Errorf("stderr: unterminated line %q", last)
			}
			lines = lines[:len(lines)-1]
			if len(lines) != len(tt.wantLines) {
				t.Fatalf("stderr: got %q, want %d lines matching %q", lines, len(tt.wantLines), tt.wantLines)
			}
			for i, want := range tt.wantLines {
				if got := strings.TrimSuffix(lines[i], "\n"); !regexp.MustCompile(want).MatchString(got) {
					t.Errorf("stderr line %d: got %q, want match for %q", i, got, want)
				}
			}
			if err := closeLog(); err != nil {
				t.Errorf("close: %v", err)
			}
		})
	}
}

func TestNewLoggerStderr(t *testing.T) {
	for _, target := range []string{"stderr", ""} {
		var stderr bytes.Buffer
		l, closeLog, err := newLogger(logOptions{Target: target, Level: slog.LevelWarn}, &stderr)
		if err != nil {
			t.Fatalf("target %q: %v", target, err)
		}
		l.Info("hidden")
		l.Warn("shown", "k", "v")
		if got, want := stderr.String(), " level=WARN event=shown k=v\n"; !strings.HasPrefix(got, "time=") || !strings.HasSuffix(got, want) || strings.Count(got, "\n") != 1 {
			t.Errorf("target %q: got %q, want one line time=…%s", target, got, want)
		}
		if err := closeLog(); err != nil {
			t.Errorf("target %q: close: %v", target, err)
		}
	}
}

func TestNewLoggerErrors(t *testing.T) {
	tests := []struct {
		name string
		o    logOptions
		want string // substring of the error
	}{
		{"unknown target", logOptions{Target: "journal"}, `log target "journal"`},
		{"unknown facility", logOptions{Target: "syslog", Facility: "local9"}, `syslog facility "local9"`},
	}
	for _, tt := range tests {
		var stderr bytes.Buffer
		l, closeLog, err := newLogger(tt.o, &stderr)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: got error %v, want one containing %q", tt.name, err, tt.want)
		}
		if l != nil || closeLog != nil {
			t.Errorf("%s: got logger %v and close func, want nil on error", tt.name, l)
		}
		if stderr.Len() != 0 {
			t.Errorf("%s: stderr: got %q, want nothing", tt.name, stderr.String())
		}
	}
}

// TestHandlersConcurrent logs from many goroutines through loggers derived
// from one parent; run with -race. Every record must arrive whole.
func TestHandlersConcurrent(t *testing.T) {
	const goroutines, each = 8, 100
	fake := &fakeSyslog{}
	var stderr bytes.Buffer
	sinks := []*slog.Logger{
		slog.New(newSyslogHandler(fake, slog.LevelInfo)),
		slog.New(newStderrHandler(&stderr, slog.LevelInfo)),
	}
	var wg sync.WaitGroup
	for _, l := range sinks {
		parent := l.With("a", 1)
		for g := range goroutines {
			wg.Go(func() {
				svc := parent.With("service", fmt.Sprintf("s%d", g))
				for n := range each {
					svc.Info("tick", "n", n)
				}
			})
		}
	}
	wg.Wait()

	want := regexp.MustCompile(`^a=1 service=s\d event=tick n=\d+$`)
	msgs := fake.take()
	if len(msgs) != goroutines*each {
		t.Errorf("syslog: got %d messages, want %d", len(msgs), goroutines*each)
	}
	for _, m := range msgs {
		if !want.MatchString(m.text) {
			t.Errorf("syslog: malformed message %q", m.text)
		}
	}
	lines := strings.Split(strings.TrimSuffix(stderr.String(), "\n"), "\n")
	if len(lines) != goroutines*each {
		t.Errorf("stderr: got %d lines, want %d", len(lines), goroutines*each)
	}
	for _, line := range lines {
		_, rest, _ := strings.Cut(line, " level=INFO ")
		if !want.MatchString(rest) {
			t.Errorf("stderr: malformed line %q", line)
		}
	}
}

// TestSyslogHandleError checks that a failing Syslogger's error reaches the
// caller of Handle with context.
func TestSyslogHandleError(t *testing.T) {
	errBoom := errors.New("boom")
	h := newSyslogHandler(failingSyslog{errBoom}, slog.LevelInfo)
	err := h.Handle(context.Background(), slog.NewRecord(time.Now(), slog.LevelInfo, "x", 0))
	if !errors.Is(err, errBoom) || !strings.Contains(err.Error(), "syslog") {
		t.Errorf("got %v, want an error wrapping %v that mentions syslog", err, errBoom)
	}
}

type failingSyslog struct{ err error }

func (f failingSyslog) WriteLevel(gsyslog.Priority, []byte) error { return f.err }
func (f failingSyslog) Write([]byte) (int, error)                 { return 0, f.err }
func (f failingSyslog) Close() error                              { return nil }
