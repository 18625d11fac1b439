package logging

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coreos/go-systemd/v22/journal"
	gsyslog "github.com/hashicorp/go-syslog"
)

// TestLogFormat pins the text an operator greps for, for all sinks: the
// syslog message text and the journal's MESSAGE are want, and the stderr
// line is "time=… level=L " + want.
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

			jf := &fakeJournal{}
			jh, _, err := openJournalWith(Options{Target: TargetJournal, Level: slog.LevelDebug}, io.Discard, jf.api())
			if err != nil {
				t.Fatal(err)
			}
			tt.log(slog.New(jh))
			entries := jf.take()
			if len(entries) != 1 {
				t.Fatalf("journal: got %d entries %+v, want 1", len(entries), entries)
			}
			wantMessage := tt.want
			if tt.name == "multi-line value stays on one line" {
				wantMessage = "a\nb\n" // a handler's stderr line is the MESSAGE as it is
			}
			if got := entries[0]; got.prio != journal.Priority(tt.wantPrio) || got.message != wantMessage {
				t.Errorf("journal: got priority %v MESSAGE\n\t%s\nwant priority %v MESSAGE\n\t%s", got.prio, got.message, tt.wantPrio, wantMessage)
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

func TestNewErrors(t *testing.T) {
	tests := []struct {
		name string
		o    Options
		want string // substring of the error
	}{
		{"unknown target", Options{Target: "kmsg"}, `log target "kmsg": want "syslog", "stderr" or "journal"`},
		{"target in another case", Options{Target: "Journal"}, `log target "Journal"`},
		{"unknown facility", Options{Target: "syslog", Facility: "local9"}, `syslog facility "local9"`},
		{"unknown facility for the journal", Options{Target: "journal", Facility: "local9"}, `syslog facility "local9"`},
	}
	for _, tt := range tests {
		var stderr bytes.Buffer
		l, closeLog, err := New(tt.o, &stderr)
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

// TestNames pins the names and defaults package config accepts and
// documents, so that a change here is a visible change of superd's
// configuration language.
func TestNames(t *testing.T) {
	if got, want := Targets(), []string{"syslog", "stderr", "journal"}; !slices.Equal(got, want) {
		t.Errorf("Targets() = %q, want %q", got, want)
	}
	if !slices.Contains(Targets(), DefaultTarget) {
		t.Errorf("DefaultTarget %q is not in Targets() %q", DefaultTarget, Targets())
	}
	want := []string{"kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news", "uucp", "cron",
		"authpriv", "ftp", "local0", "local1", "local2", "local3", "local4", "local5", "local6", "local7"}
	if got := Facilities(); !slices.Equal(got, want) {
		t.Errorf("Facilities() = %q, want %q", got, want)
	}
	if !IsFacility(DefaultFacility) {
		t.Errorf("DefaultFacility %q is not a facility", DefaultFacility)
	}
	// Callers may keep and modify the slices they get.
	Facilities()[0] = "changed"
	Targets()[0] = "changed"
	if Facilities()[0] != "kern" || Targets()[0] != TargetSyslog {
		t.Errorf("modifying a returned slice changed the next result")
	}
	for _, tt := range []struct {
		name string
		want bool
	}{
		{"daemon", true}, {"DAEMON", true}, {"Local7", true},
		{"", false}, {"local8", false}, {"daemon ", false}, {"security", false},
	} {
		if got := IsFacility(tt.name); got != tt.want {
			t.Errorf("IsFacility(%q) = %v, want %v", tt.name, got, tt.want)
		}
	}
}
