package logging

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

// TestSyslogHandlerSlogtest runs slogtest end to end: New → gsyslog →
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
			l, closeLog, err := New(Options{Target: "syslog", Socket: path, Facility: "local3", Tag: "superd-test"}, &stderr)
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

func TestNewSyslog(t *testing.T) {
	const local3 = 19 // facility number; PRI = facility*8 + severity
	path, c := listenSyslog(t)
	var stderr bytes.Buffer
	l, closeLog, err := New(Options{Target: "syslog", Socket: path, Facility: "local3", Tag: "superd-test", Level: slog.LevelInfo}, &stderr)
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

func TestNewFallback(t *testing.T) {
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
			l, closeLog, err := New(Options{Target: "syslog", Socket: socket, Facility: "daemon", Tag: "superd-test", Level: tt.level}, &stderr)
			if err != nil {
				t.Fatal(err)
			}
			notice := stderr.String()
			if strings.Count(notice, "\n") != 1 {
				t.Fatalf("stderr after New: got %q, want exactly one line", notice)
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

// TestFacilityPRI checks that every name in Facilities, and the defaults
// for an empty facility and tag, reach the syslog daemon as the facility
// number RFC 5424 gives it.
func TestFacilityPRI(t *testing.T) {
	number := map[string]int{
		"kern": 0, "user": 1, "mail": 2, "daemon": 3, "auth": 4, "syslog": 5, "lpr": 6, "news": 7,
		"uucp": 8, "cron": 9, "authpriv": 10, "ftp": 11,
		"local0": 16, "local1": 17, "local2": 18, "local3": 19, "local4": 20, "local5": 21, "local6": 22, "local7": 23,
	}
	path, c := listenSyslog(t)
	for _, f := range append(Facilities(), "") {
		wantTag, wantFacility := "superd-test", f
		o := Options{Target: TargetSyslog, Socket: path, Facility: f, Tag: wantTag}
		if f == "" {
			// The defaults superd documents, spelled out rather than
			// taken from DefaultTag and DefaultFacility.
			o.Tag, wantTag, wantFacility = "", "superd", "daemon"
		}
		n, ok := number[wantFacility]
		if !ok {
			t.Fatalf("facility %q: no known number", wantFacility)
		}
		var stderr bytes.Buffer
		l, closeLog, err := New(o, &stderr)
		if err != nil {
			t.Fatalf("facility %q: %v", f, err)
		}
		l.Error("x")
		got := readSyslog(t, c)
		if want := n*8 + 3; got.pri != want || got.tag != wantTag {
			t.Errorf("facility %q: got <%d> tag %q, want <%d> tag %q", f, got.pri, got.tag, want, wantTag)
		}
		if err := closeLog(); err != nil {
			t.Errorf("facility %q: close: %v", f, err)
		}
		if stderr.Len() != 0 {
			t.Errorf("facility %q: stderr: got %q, want nothing", f, stderr.String())
		}
	}
}
