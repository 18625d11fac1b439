package logging

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"testing/slogtest"
	"time"

	"github.com/coreos/go-systemd/v22/journal"
	"golang.org/x/sys/unix"
)

// fakeJournal stands in for journald: it records what send is given, and
// fails the calls for which fail returns an error.
type fakeJournal struct {
	mu      sync.Mutex
	entries []journalEntry
	fail    func(n int) error // n counts send calls from 1; nil: never fail
	calls   int
}

// journalEntry is one journal.Send call.
type journalEntry struct {
	message string
	prio    journal.Priority
	fields  map[string]string
	at      time.Time
}

func (f *fakeJournal) api() journalAPI {
	return journalAPI{probe: func() error { return nil }, send: f.send}
}

func (f *fakeJournal) send(message string, p journal.Priority, vars map[string]string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	if f.fail != nil {
		if err := f.fail(f.calls); err != nil {
			return err
		}
	}
	f.entries = append(f.entries, journalEntry{message, p, maps.Clone(vars), time.Now()})
	return nil
}

func (f *fakeJournal) take() []journalEntry {
	f.mu.Lock()
	defer f.mu.Unlock()
	e := f.entries
	f.entries = nil
	return e
}

// newFakeJournal returns a logger on a fake journald at level, with tag
// "superd-test" and facility local3, and the fake.
func newFakeJournal(t *testing.T, level slog.Level, stderr *bytes.Buffer) (*slog.Logger, *fakeJournal) {
	t.Helper()
	f := &fakeJournal{}
	h, closeSink, err := openJournalWith(Options{Target: TargetJournal, Facility: "local3", Tag: "superd-test", Level: level}, stderr, f.api())
	if err != nil {
		t.Fatal(err)
	}
	if closeSink != nil {
		t.Errorf("openJournalWith returned a close func; the journal sink holds nothing")
	}
	return slog.New(h), f
}

// superdFields returns the SUPERD_* fields of e.
func superdFields(e journalEntry) map[string]string {
	m := map[string]string{}
	for k, v := range e.fields {
		if strings.HasPrefix(k, journalFieldPrefix) {
			m[k] = v
		}
	}
	return m
}

func TestJournalPriority(t *testing.T) {
	tests := []struct {
		level slog.Level
		want  journal.Priority
	}{
		{slog.LevelDebug - 4, journal.PriDebug},
		{slog.LevelDebug, journal.PriDebug},
		{slog.LevelInfo - 1, journal.PriDebug},
		{slog.LevelInfo, journal.PriInfo},
		{slog.LevelInfo + 2, journal.PriInfo},
		{slog.LevelWarn, journal.PriWarning},
		{slog.LevelError - 1, journal.PriWarning},
		{slog.LevelError, journal.PriErr},
		{slog.LevelError + 8, journal.PriErr},
	}
	for _, tt := range tests {
		if got := journalPriority(tt.level); got != tt.want {
			t.Errorf("journalPriority(%v) = %v, want %v", tt.level, got, tt.want)
		}
	}
	// The numbers journald stores as PRIORITY, spelled out.
	for p, want := range map[journal.Priority]int{journal.PriErr: 3, journal.PriWarning: 4, journal.PriInfo: 6, journal.PriDebug: 7} {
		if int(p) != want {
			t.Errorf("priority %v is %d, want %d", p, int(p), want)
		}
	}
}

// TestJournalFields pins the fields superd's records become, and MESSAGE.
func TestJournalFields(t *testing.T) {
	tests := []struct {
		name        string
		log         func(l *slog.Logger)
		wantPrio    journal.Priority
		wantMessage string
		want        map[string]string // the SUPERD_* fields
	}{
		{
			name: "exit",
			log: func(l *slog.Logger) {
				l.With("service", "hello").Info("exit", "pid", 123, "remote", "127.0.0.1:5555", "status", "0", "duration", 12345678*time.Nanosecond)
			},
			wantPrio:    journal.PriInfo,
			wantMessage: "service=hello event=exit pid=123 remote=127.0.0.1:5555 status=0 duration=12.345678ms",
			want: map[string]string{"SUPERD_SERVICE": "hello", "SUPERD_EVENT": "exit", "SUPERD_HANDLER_PID": "123",
				"SUPERD_REMOTE": "127.0.0.1:5555", "SUPERD_EXIT_STATUS": "0", "SUPERD_DURATION_USEC": "12345"},
		},
		{
			name: "start, pid from With",
			log: func(l *slog.Logger) {
				l.With("service", "hello", "pid", 7).Info("start", "remote", "[::1]:9")
			},
			wantPrio:    journal.PriInfo,
			wantMessage: "service=hello pid=7 event=start remote=[::1]:9",
			want:        map[string]string{"SUPERD_SERVICE": "hello", "SUPERD_HANDLER_PID": "7", "SUPERD_EVENT": "start", "SUPERD_REMOTE": "[::1]:9"},
		},
		{
			name:        "signal status",
			log:         func(l *slog.Logger) { l.Info("exit", "status", "signal:SIGKILL") },
			wantPrio:    journal.PriInfo,
			wantMessage: "event=exit status=signal:SIGKILL",
			want:        map[string]string{"SUPERD_EVENT": "exit", "SUPERD_EXIT_STATUS": "signal:SIGKILL"},
		},
		{
			name: "stderr line is the message",
			log: func(l *slog.Logger) {
				l.With("service", "hello").Info("stderr", "pid", 42, "line", `oops: "x" = y`)
			},
			wantPrio:    journal.PriInfo,
			wantMessage: `oops: "x" = y`,
			want:        map[string]string{"SUPERD_SERVICE": "hello", "SUPERD_EVENT": "stderr", "SUPERD_HANDLER_PID": "42"},
		},
		{
			name:        "empty stderr line",
			log:         func(l *slog.Logger) { l.Info("stderr", "pid", 42, "line", "") },
			wantPrio:    journal.PriInfo,
			wantMessage: "",
			want:        map[string]string{"SUPERD_EVENT": "stderr", "SUPERD_HANDLER_PID": "42"},
		},
		{
			name:        "line of another event is a field",
			log:         func(l *slog.Logger) { l.Warn("parse", "line", "a b") },
			wantPrio:    journal.PriWarning,
			wantMessage: `event=parse line="a b"`,
			want:        map[string]string{"SUPERD_EVENT": "parse", "SUPERD_LINE": "a b"},
		},
		{
			name:        "stderr with a line that is no string",
			log:         func(l *slog.Logger) { l.Info("stderr", "line", 3) },
			wantPrio:    journal.PriInfo,
			wantMessage: `event=stderr line=3`,
			want:        map[string]string{"SUPERD_EVENT": "stderr", "SUPERD_LINE": "3"},
		},
		{
			name:        "stderr line inside a group is a field",
			log:         func(l *slog.Logger) { l.WithGroup("g").Info("stderr", "line", "x") },
			wantPrio:    journal.PriInfo,
			wantMessage: `event=stderr g.line=x`,
			want:        map[string]string{"SUPERD_EVENT": "stderr", "SUPERD_G_LINE": "x"},
		},
		{
			name: "error value and other durations",
			log: func(l *slog.Logger) {
				l.Error("bind_retry", "err", errors.New("bind: address in use"), "in", 2*time.Second, "after", -time.Microsecond)
			},
			wantPrio:    journal.PriErr,
			wantMessage: `event=bind_retry err="bind: address in use" in=2s after=-1µs`,
			want:        map[string]string{"SUPERD_EVENT": "bind_retry", "SUPERD_ERR": "bind: address in use", "SUPERD_IN_USEC": "2000000", "SUPERD_AFTER_USEC": "-1"},
		},
		{
			name: "other kinds",
			log: func(l *slog.Logger) {
				l.Info("x", "n", uint64(1<<63), "f", 0.5, "ok", true, "at", time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC))
			},
			wantPrio:    journal.PriInfo,
			wantMessage: `event=x n=9223372036854775808 f=0.5 ok=true at=2026-01-02T03:04:05.000Z`,
			want:        map[string]string{"SUPERD_EVENT": "x", "SUPERD_N": "9223372036854775808", "SUPERD_F": "0.5", "SUPERD_OK": "true", "SUPERD_AT": "2026-01-02T03:04:05.000000006Z"},
		},
		{
			name: "groups, renames only at the top",
			log: func(l *slog.Logger) {
				l.With("service", "hello").WithGroup("req").With("id", 7).Info("done", "pid", 1, "status", "s", "wait", time.Millisecond, slog.Group("sub", "b", 2))
			},
			wantPrio:    journal.PriInfo,
			wantMessage: `service=hello event=done req.id=7 req.pid=1 req.status=s req.wait=1ms req.sub.b=2`,
			want: map[string]string{"SUPERD_SERVICE": "hello", "SUPERD_EVENT": "done", "SUPERD_REQ_ID": "7", "SUPERD_REQ_PID": "1",
				"SUPERD_REQ_STATUS": "s", "SUPERD_REQ_WAIT_USEC": "1000", "SUPERD_REQ_SUB_B": "2"},
		},
		{
			name:        "inline group, empty group, empty attr",
			log:         func(l *slog.Logger) { l.Info("x", slog.Group("", "a", 1), slog.Group("e"), slog.Attr{}, "b", 2) },
			wantPrio:    journal.PriInfo,
			wantMessage: `event=x a=1 b=2`,
			want:        map[string]string{"SUPERD_EVENT": "x", "SUPERD_A": "1", "SUPERD_B": "2"},
		},
		{
			name:        "LogValuer is resolved",
			log:         func(l *slog.Logger) { l.Info("x", "v", valuer{}) },
			wantPrio:    journal.PriInfo,
			wantMessage: `event=x v.k=resolved`,
			want:        map[string]string{"SUPERD_EVENT": "x", "SUPERD_V_K": "resolved"},
		},
		{
			name:        "names sanitized",
			log:         func(l *slog.Logger) { l.Info("x", "retry-in", 1, "_x", 2, "Ünï", 3, "a.b c=d", 4, "9lives", 5) },
			wantPrio:    journal.PriInfo,
			wantMessage: `event=x retry-in=1 _x=2 Ünï=3 "a.b c=d"=4 9lives=5`,
			want: map[string]string{"SUPERD_EVENT": "x", "SUPERD_RETRY_IN": "1", "SUPERD__X": "2", "SUPERD___N__": "3",
				"SUPERD_A_B_C_D": "4", "SUPERD_9LIVES": "5"},
		},
		{
			name:        "long names cut to 64 bytes",
			log:         func(l *slog.Logger) { l.Info("x", strings.Repeat("k", 70), "v") },
			wantPrio:    journal.PriInfo,
			wantMessage: "event=x " + strings.Repeat("k", 70) + "=v",
			want:        map[string]string{"SUPERD_EVENT": "x", "SUPERD_" + strings.Repeat("K", 64-len("SUPERD_")): "v"},
		},
		{
			name: "later wins, the message over an attr called event",
			log: func(l *slog.Logger) {
				l.With("k", "with", "event", "attr").Info("real", "k", "record", "K", "upper", "event", "attr2")
			},
			wantPrio:    journal.PriInfo,
			wantMessage: `k=with event=attr event=real k=record K=upper event=attr2`,
			want:        map[string]string{"SUPERD_EVENT": "real", "SUPERD_K": "upper"},
		},
		{
			name:        "empty message: no event",
			log:         func(l *slog.Logger) { l.With("service", "x").Info("", "k", "v") },
			wantPrio:    journal.PriInfo,
			wantMessage: `service=x k=v`,
			want:        map[string]string{"SUPERD_SERVICE": "x", "SUPERD_K": "v"},
		},
		{
			name: "siblings do not share attrs",
			log: func(l *slog.Logger) {
				p := l.WithGroup("g").With("a", 1).With("b", 2).With("c", 3)
				q := p.With("x", 0)
				_ = p.With("d", 4)
				q.Info("e")
			},
			wantPrio:    journal.PriInfo,
			wantMessage: `event=e g.a=1 g.b=2 g.c=3 g.x=0`,
			want:        map[string]string{"SUPERD_EVENT": "e", "SUPERD_G_A": "1", "SUPERD_G_B": "2", "SUPERD_G_C": "3", "SUPERD_G_X": "0"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stderr bytes.Buffer
			l, f := newFakeJournal(t, slog.LevelDebug, &stderr)
			tt.log(l)
			entries := f.take()
			if len(entries) != 1 {
				t.Fatalf("got %d entries %+v, want 1", len(entries), entries)
			}
			e := entries[0]
			if e.message != tt.wantMessage || e.prio != tt.wantPrio {
				t.Errorf("got priority %v MESSAGE\n\t%q\nwant priority %v MESSAGE\n\t%q", e.prio, e.message, tt.wantPrio, tt.wantMessage)
			}
			if got := superdFields(e); !maps.Equal(got, tt.want) {
				t.Errorf("got fields\n\t%v\nwant\n\t%v", got, tt.want)
			}
			wantCommon := map[string]string{"SYSLOG_IDENTIFIER": "superd-test", "SYSLOG_FACILITY": "19"}
			for k, v := range wantCommon {
				if e.fields[k] != v {
					t.Errorf("field %s: got %q, want %q", k, e.fields[k], v)
				}
			}
			if n := len(e.fields) - len(tt.want) - len(wantCommon); n != 0 {
				t.Errorf("fields %v: %d more than the SUPERD_ ones and %v", e.fields, n, wantCommon)
			}
			for k := range e.fields {
				if !regexp.MustCompile(`^[A-Z0-9][A-Z0-9_]{0,63}$`).MatchString(k) {
					t.Errorf("field name %q is not one journald accepts", k)
				}
			}
			if stderr.Len() != 0 {
				t.Errorf("stderr: got %q, want nothing", stderr.String())
			}
		})
	}
}

type valuer struct{}

func (valuer) LogValue() slog.Value { return slog.GroupValue(slog.String("k", "resolved")) }

// TestJournalHandlerSlogtest runs slogtest on MESSAGE, and checks that the
// fields of every entry hold the same attributes as MESSAGE: each leaf
// g1.g2.k=v of the key=value line is SUPERD_G1_G2_K=v, and there are no
// other SUPERD_ fields.
func TestJournalHandlerSlogtest(t *testing.T) {
	var f *fakeJournal
	slogtest.Run(t,
		func(t *testing.T) slog.Handler {
			if strings.HasSuffix(t.Name(), "/zero-time") {
				t.Skip("by design: journald stamps every entry with the time it receives it")
			}
			var stderr bytes.Buffer
			var l *slog.Logger
			l, f = newFakeJournal(t, slog.LevelInfo, &stderr)
			t.Cleanup(func() {
				if stderr.Len() != 0 {
					t.Errorf("stderr: got %q, want nothing", stderr.String())
				}
			})
			return l.Handler()
		},
		func(t *testing.T) map[string]any {
			entries := f.take()
			if len(entries) != 1 {
				t.Fatalf("got %d entries, want 1", len(entries))
			}
			e := entries[0]
			m := renameEvent(t, parseKV(t, e.message))
			want := map[string]string{}
			flattenKV(m, nil, want)
			if got := superdFields(e); !maps.Equal(got, want) {
				t.Errorf("MESSAGE %q: got fields\n\t%v\nwant\n\t%v", e.message, got, want)
			}
			m[slog.TimeKey] = e.at
			m[slog.LevelKey] = int(e.prio)
			return m
		})
}

// flattenKV adds the leaves of m, as parseKV and renameEvent return it, to
// fields under the journal field names journalFields gives them.
func flattenKV(m map[string]any, path []string, fields map[string]string) {
	for k, v := range m {
		if sub, ok := v.(map[string]any); ok {
			flattenKV(sub, append(slices.Clip(path), k), fields)
			continue
		}
		name := journalFieldName(path, k)
		switch {
		case len(path) == 0 && k == slog.MessageKey:
			name = journalEventField
		case len(path) == 0 && journalRename(k) != "":
			name = journalRename(k)
		}
		fields[name] = fmt.Sprint(v)
	}
}

func TestNewJournalUnavailable(t *testing.T) {
	errNo := errors.New("no journald at /run/systemd/journal/socket: dial unixgram: connect: no such file or directory")
	for _, level := range []slog.Level{slog.LevelInfo, slog.LevelError} {
		var stderr bytes.Buffer
		f := &fakeJournal{}
		api := f.api()
		api.probe = func() error { return errNo }
		h, closeSink, err := openJournalWith(Options{Target: TargetJournal, Level: level}, &stderr, api)
		if err != nil || closeSink != nil {
			t.Fatalf("level %v: got close func %v and error %v, want neither", level, closeSink != nil, err)
		}
		notice := stderr.String()
		if !regexp.MustCompile(`^time=\S+ level=WARN event=journal_unavailable err="no journald at /run/systemd/journal/socket: [^"]+" logging_to=stderr\n$`).MatchString(notice) {
			t.Errorf("level %v: notice %q: want one line event=journal_unavailable with the error, logging_to=stderr", level, notice)
		}
		stderr.Reset()
		l := slog.New(h).With("service", "hello")
		l.Info("exit", "pid", 1)
		l.Error("fail")
		want := `time=\S+ level=ERROR service=hello event=fail\n$`
		if level <= slog.LevelInfo {
			want = `^time=\S+ level=INFO service=hello event=exit pid=1\n` + want
		} else {
			want = "^" + want
		}
		if !regexp.MustCompile(want).MatchString(stderr.String()) {
			t.Errorf("level %v: stderr %q, want match for %q", level, stderr.String(), want)
		}
		if f.calls != 0 {
			t.Errorf("level %v: %d sends to journald, want none", level, f.calls)
		}
	}
}

// TestJournalSendFailure checks that records journald refuses go to stderr,
// that the first refusal is announced once, and that superd keeps sending.
func TestJournalSendFailure(t *testing.T) {
	errRefused := errors.New("sendmsg: connection refused")
	var stderr bytes.Buffer
	l, f := newFakeJournal(t, slog.LevelInfo, &stderr)
	f.fail = func(n int) error {
		if n == 2 || n == 3 || n == 5 {
			return errRefused
		}
		return nil
	}
	svc := l.With("service", "hello")
	for i := 1; i <= 6; i++ {
		svc.Info("tick", "n", i)
	}
	if err := svc.Handler().Handle(context.Background(), slog.NewRecord(time.Now(), slog.LevelInfo, "direct", 0)); err != nil {
		t.Errorf("Handle after recovery: %v", err)
	}
	f.fail = func(int) error { return errRefused }
	err := svc.Handler().Handle(context.Background(), slog.NewRecord(time.Now(), slog.LevelInfo, "direct", 0))
	if !errors.Is(err, errRefused) || !strings.Contains(err.Error(), "journal") {
		t.Errorf("Handle: got %v, want an error wrapping %v that mentions the journal", err, errRefused)
	}

	var sent []string
	for _, e := range f.take() {
		sent = append(sent, e.fields["SUPERD_N"]+e.fields["SUPERD_EVENT"])
	}
	if want := []string{"1tick", "4tick", "6tick", "direct"}; !slices.Equal(sent, want) {
		t.Errorf("sent %q, want %q", sent, want)
	}
	lines := strings.Split(strings.TrimSuffix(stderr.String(), "\n"), "\n")
	want := []string{
		`^time=\S+ level=WARN event=journal_send_failed err="logging: journal: send to /run/systemd/journal/socket: sendmsg: connection refused" logging_to=stderr note="[^"]+"$`,
		`^time=\S+ level=INFO service=hello event=tick n=2$`,
		`^time=\S+ level=INFO service=hello event=tick n=3$`,
		`^time=\S+ level=INFO service=hello event=tick n=5$`,
		`^time=\S+ level=INFO service=hello event=direct$`,
	}
	if len(lines) != len(want) {
		t.Fatalf("stderr: got %d lines\n%s\nwant %d", len(lines), stderr.String(), len(want))
	}
	for i := range want {
		if !regexp.MustCompile(want[i]).MatchString(lines[i]) {
			t.Errorf("stderr line %d: got %q, want match for %q", i, lines[i], want[i])
		}
	}
}

// TestJournalConcurrent logs from many goroutines through loggers derived
// from one parent; run with -race. Every entry must arrive whole, with the
// fields of its own logger.
func TestJournalConcurrent(t *testing.T) {
	const goroutines, each = 8, 100
	var stderr bytes.Buffer
	l, f := newFakeJournal(t, slog.LevelInfo, &stderr)
	// Fail some sends, so that the stderr fallback runs concurrently too.
	f.fail = func(n int) error {
		if n%10 == 0 {
			return errors.New("boom")
		}
		return nil
	}
	parent := l.With("a", 1)
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			svc := parent.With("service", fmt.Sprintf("s%d", g))
			for n := range each {
				svc.Info("tick", "n", n, "g", g)
			}
		})
	}
	wg.Wait()
	entries := f.take()
	want := regexp.MustCompile(`^a=1 service=s(\d) event=tick n=(\d+) g=(\d)$`)
	for _, e := range entries {
		m := want.FindStringSubmatch(e.message)
		if m == nil || m[1] != m[3] || e.fields["SUPERD_SERVICE"] != "s"+m[1] || e.fields["SUPERD_N"] != m[2] || e.fields["SUPERD_A"] != "1" {
			t.Errorf("malformed entry %q %v", e.message, e.fields)
		}
	}
	lines := strings.Split(strings.TrimSuffix(stderr.String(), "\n"), "\n")
	if got, want := len(entries)+len(lines)-1, goroutines*each; got != want {
		t.Errorf("got %d entries and %d stderr lines besides the notice, want %d records in all", len(entries), len(lines)-1, want)
	}
}

func TestFacilityNumber(t *testing.T) {
	number := map[string]int{
		"kern": 0, "user": 1, "mail": 2, "daemon": 3, "auth": 4, "syslog": 5, "lpr": 6, "news": 7,
		"uucp": 8, "cron": 9, "authpriv": 10, "ftp": 11,
		"local0": 16, "local1": 17, "local2": 18, "local3": 19, "local4": 20, "local5": 21, "local6": 22, "local7": 23,
	}
	for _, name := range Facilities() {
		if got, ok := facilityNumber(name); !ok || got != number[name] {
			t.Errorf("facilityNumber(%q) = %d, %v; want %d, true", name, got, ok, number[name])
		}
	}
	if got, ok := facilityNumber("LOCAL7"); !ok || got != 23 {
		t.Errorf("facilityNumber(LOCAL7) = %d, %v; want 23, true", got, ok)
	}
	if _, ok := facilityNumber("local8"); ok {
		t.Errorf("facilityNumber(local8) is ok")
	}
	// The defaults, as the journal sees them.
	var stderr bytes.Buffer
	f := &fakeJournal{}
	h, _, err := openJournalWith(Options{Target: TargetJournal}, &stderr, f.api())
	if err != nil {
		t.Fatal(err)
	}
	slog.New(h).Info("x")
	e := f.take()
	if len(e) != 1 || e[0].fields["SYSLOG_IDENTIFIER"] != "superd" || e[0].fields["SYSLOG_FACILITY"] != "3" {
		t.Errorf("defaults: got %+v, want SYSLOG_IDENTIFIER=superd SYSLOG_FACILITY=3", e)
	}
}

// nsChildEnv, set to the mount namespace TestJournalNative started in, tells
// the test binary that it is the copy running in a private mount namespace.
const nsChildEnv = "SUPERD_TEST_JOURNAL_PARENT_NS"

// TestJournalNative checks the sink end to end through go-systemd's
// journal.Send, which always sends to /run/systemd/journal/socket: the test
// binary runs itself again in a private mount namespace, with a tmpfs on
// /run/systemd that only it sees, and plays journald there on a datagram
// socket of its own, parsing journald's native protocol.
func TestJournalNative(t *testing.T) {
	parentNS := os.Getenv(nsChildEnv)
	if parentNS == "" {
		if os.Geteuid() != 0 {
			t.Skip("needs root (CI runs as root): mounts a tmpfs on /run/systemd in a private mount namespace")
		}
		ns, err := os.Readlink("/proc/self/ns/mnt")
		if err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(os.Args[0], "-test.run=^TestJournalNative$", "-test.count=1", "-test.v")
		cmd.Env = append(os.Environ(), nsChildEnv+"="+ns)
		cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNS}
		out, err := cmd.CombinedOutput()
		if err != nil || !strings.Contains(string(out), "--- PASS: TestJournalNative") {
			t.Fatalf("in a private mount namespace: %v\n%s", err, out)
		}
		// go-systemd prints to the process's stderr when given a field
		// name journald would drop.
		if strings.Contains(string(out), "variable name") {
			t.Errorf("go-systemd complained about a field name:\n%s", out)
		}
		return
	}

	// Never mount over the host's /run/systemd: make sure this is another
	// mount namespace, and that mounts here do not propagate back.
	if ns, err := os.Readlink("/proc/self/ns/mnt"); err != nil || ns == parentNS {
		t.Fatalf("mount namespace %q (%v): want one other than the parent's %q", ns, err, parentNS)
	}
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		t.Fatalf("make / private: %v", err)
	}
	if err := unix.Mount("tmpfs", "/run/systemd", "tmpfs", 0, "mode=0755"); err != nil {
		t.Fatalf("mount a tmpfs on /run/systemd: %v", err)
	}

	// No journald yet: one notice, then stderr.
	var stderr bytes.Buffer
	l, closeLog, err := New(Options{Target: TargetJournal}, &stderr)
	if err != nil {
		t.Fatal(err)
	}
	l.Info("exit", "pid", 1)
	if err := closeLog(); err != nil {
		t.Errorf("close: %v", err)
	}
	if want := regexp.MustCompile(`^time=\S+ level=WARN event=journal_unavailable err="no journald at /run/systemd/journal/socket: [^"]*no such file or directory" logging_to=stderr\ntime=\S+ level=INFO event=exit pid=1\n$`); !want.MatchString(stderr.String()) {
		t.Errorf("without journald: stderr %q, want match for %q", stderr.String(), want)
	}

	if err := os.Mkdir("/run/systemd/journal", 0o755); err != nil {
		t.Fatal(err)
	}
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: journalSocket, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	stderr.Reset()
	l, closeLog, err = New(Options{Target: TargetJournal, Facility: "local3", Tag: "superd-native", Level: slog.LevelInfo}, &stderr)
	if err != nil {
		t.Fatal(err)
	}
	svc := l.With("service", "hello")
	svc.Debug("accept") // below Level: not sent
	svc.Info("exit", "pid", 123, "remote", "127.0.0.1:5555", "status", "0", "duration", 1500*time.Microsecond)
	svc.Info("stderr", "pid", 123, "line", "two\nlines")
	svc.Error("odd-key", "bad-key=", "x\ny")
	want := []map[string]string{
		{"PRIORITY": "6", "SYSLOG_IDENTIFIER": "superd-native", "SYSLOG_FACILITY": "19",
			"MESSAGE":      "service=hello event=exit pid=123 remote=127.0.0.1:5555 status=0 duration=1.5ms",
			"SUPERD_EVENT": "exit", "SUPERD_SERVICE": "hello", "SUPERD_HANDLER_PID": "123", "SUPERD_REMOTE": "127.0.0.1:5555",
			"SUPERD_EXIT_STATUS": "0", "SUPERD_DURATION_USEC": "1500"},
		{"PRIORITY": "6", "SYSLOG_IDENTIFIER": "superd-native", "SYSLOG_FACILITY": "19",
			"MESSAGE": "two\nlines", "SUPERD_EVENT": "stderr", "SUPERD_SERVICE": "hello", "SUPERD_HANDLER_PID": "123"},
		{"PRIORITY": "3", "SYSLOG_IDENTIFIER": "superd-native", "SYSLOG_FACILITY": "19",
			"MESSAGE": `service=hello event=odd-key "bad-key="="x\ny"`, "SUPERD_EVENT": "odd-key", "SUPERD_SERVICE": "hello", "SUPERD_BAD_KEY_": "x\ny"},
	}
	for i, w := range want {
		if err := c.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 64<<10)
		n, err := c.Read(buf)
		if err != nil {
			t.Fatalf("entry %d: read: %v", i, err)
		}
		got, err := parseNative(buf[:n])
		if err != nil {
			t.Fatalf("entry %d: %v in %q", i, err, buf[:n])
		}
		if !maps.Equal(got, w) {
			t.Errorf("entry %d: got\n\t%q\nwant\n\t%q", i, got, w)
		}
	}
	if err := closeLog(); err != nil {
		t.Errorf("close: %v", err)
	}
	if stderr.Len() != 0 {
		t.Errorf("stderr: got %q, want nothing", stderr.String())
	}
}

// parseNative parses one datagram of journald's native protocol: fields
// "NAME=value\n", or "NAME\n", a 64-bit little-endian length, the value and
// "\n" for values with a newline.
func parseNative(b []byte) (map[string]string, error) {
	m := map[string]string{}
	for len(b) > 0 {
		line, rest, ok := bytes.Cut(b, []byte("\n"))
		if !ok {
			return nil, fmt.Errorf("unterminated field %q", b)
		}
		name, value, ok := bytes.Cut(line, []byte("="))
		if !ok {
			if len(rest) < 8 {
				return nil, fmt.Errorf("field %s: no length", line)
			}
			n := binary.LittleEndian.Uint64(rest)
			rest = rest[8:]
			if uint64(len(rest)) < n+1 || rest[n] != '\n' {
				return nil, fmt.Errorf("field %s: length %d, then no value and newline", line, n)
			}
			value, rest = rest[:n], rest[n+1:]
		}
		if _, dup := m[string(name)]; dup {
			return nil, fmt.Errorf("field %s twice", name)
		}
		m[string(name)] = string(value)
		b = rest
	}
	return m, nil
}
