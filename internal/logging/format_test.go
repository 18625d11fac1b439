package logging

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"math"
	"testing"
	"time"
)

// The tests here hold the fast path (format.go) to the promise in its
// doc: every sink writes exactly the bytes it wrote when every record went
// through slog.TextHandler. The reference is that code, written out here
// so that it does not share a line with what it checks.

// slogStderrLine is what the stderr sink wrote before the fast path, for r
// through a handler with scope s.
func slogStderrLine(t testing.TB, s scope, r slog.Record) string {
	t.Helper()
	var buf bytes.Buffer
	th := slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug, ReplaceAttr: dropEmptyMessage})
	if err := th.Handle(context.Background(), s.record(r, r.Time)); err != nil {
		t.Fatalf("slog.TextHandler: %v", err)
	}
	return buf.String()
}

// slogText is what the syslog sink sent, and the journal's MESSAGE, before
// the fast path.
func slogText(t testing.TB, s scope, r slog.Record) string {
	t.Helper()
	var buf bytes.Buffer
	th := slog.NewTextHandler(&buf, &slog.HandlerOptions{ReplaceAttr: replaceHeaderBuiltins})
	if err := th.Handle(context.Background(), s.record(r, time.Time{})); err != nil {
		t.Fatalf("slog.TextHandler: %v", err)
	}
	return string(bytes.TrimSuffix(buf.Bytes(), []byte("\n")))
}

// formatCase is one record logged through handlers derived with With
// attrs with and, if group is not "", WithGroup(group).
type formatCase struct {
	with  []slog.Attr
	group string
	r     slog.Record
}

// checkFormat logs c through the stderr, syslog and journal sinks and
// compares each result with the slog.TextHandler reference, byte for
// byte. It reports whether the fast path rendered the record.
func checkFormat(t testing.TB, c formatCase) (fast bool) {
	t.Helper()
	derive := func(h slog.Handler) slog.Handler {
		h = h.WithAttrs(c.with)
		if c.group != "" {
			h = h.WithGroup(c.group)
		}
		return h
	}
	ctx := context.Background()

	var stderr bytes.Buffer
	sh := derive(newStderrHandler(&stderr, slog.LevelDebug)).(*stderrHandler)
	if err := sh.Handle(ctx, c.r); err != nil {
		t.Fatalf("stderr: %v", err)
	}
	if got, want := stderr.String(), slogStderrLine(t, sh.scope, c.r); got != want {
		t.Errorf("stderr: got\n\t%q\nwant (slog.TextHandler)\n\t%q", got, want)
	}
	wantText := slogText(t, sh.scope, c.r)

	fake := &fakeSyslog{}
	if err := derive(newSyslogHandler(fake, slog.LevelDebug)).Handle(ctx, c.r); err != nil {
		t.Fatalf("syslog: %v", err)
	}
	if msgs := fake.take(); len(msgs) != 1 || msgs[0].text != wantText {
		t.Errorf("syslog: got %+v, want one message (slog.TextHandler)\n\t%q", msgs, wantText)
	}

	jf := &fakeJournal{}
	jh, _, err := openJournalWith(Options{Target: TargetJournal, Level: slog.LevelDebug}, io.Discard, jf.api())
	if err != nil {
		t.Fatal(err)
	}
	if err := derive(jh).Handle(ctx, c.r); err != nil {
		t.Fatalf("journal: %v", err)
	}
	wantMessage := wantText
	if _, line, isLine := journalFields(sh.scope, c.r); isLine {
		wantMessage = line
	}
	if entries := jf.take(); len(entries) != 1 || entries[0].message != wantMessage {
		t.Errorf("journal: got %+v, want one entry with MESSAGE (slog.TextHandler)\n\t%q", entries, wantMessage)
	}

	// Into a buffer that already holds something, as a reused one does.
	prefix := []byte("old line\n")
	_, fast = sh.scope.appendFast(prefix, c.r, true)
	if line, ok := sh.scope.appendFast(prefix, c.r, false); ok != fast || ok && string(line) != string(prefix)+wantText {
		t.Errorf("appendFast after %q: got %q, %v; want %q, %v", prefix, line, ok, string(prefix)+wantText, fast)
	}
	return fast
}

// textError is an error that is also a TextMarshaler, whose text slog
// prefers to its Error.
type textError struct{}

func (textError) Error() string                { return "as error" }
func (textError) MarshalText() ([]byte, error) { return []byte("as text"), nil }

// countingValuer is a LogValuer that counts how often it is resolved.
type countingValuer struct{ n *int }

func (v countingValuer) LogValue() slog.Value { *v.n++; return slog.StringValue("resolved value") }

// TestFormatDifferential logs records of every kind the fast path renders,
// and of kinds it leaves to slog, through every sink, and compares the
// bytes with slog.TextHandler's.
func TestFormatDifferential(t *testing.T) {
	when := time.Date(2025, 3, 4, 5, 6, 7, 891234567, time.UTC)
	rec := func(level slog.Level, msg string, as ...slog.Attr) slog.Record {
		r := slog.NewRecord(when, level, msg, 0)
		r.AddAttrs(as...)
		return r
	}
	svc := []slog.Attr{slog.String("service", "b")}
	resolved := 0
	// A lone non-string argument, which slog keys "!BADKEY"; a variable so
	// that vet's check of Add's arguments lets it through.
	badArgs := []any{5}
	tests := []struct {
		name string
		c    formatCase
		fast bool // whether the fast path renders it
	}{
		{"exit", formatCase{svc, "", rec(slog.LevelInfo, "exit", slog.Int("pid", 123), slog.String("remote", "127.0.0.1:4000"),
			slog.Int("status", 0), slog.Duration("duration", 1200*time.Microsecond))}, true},
		{"start", formatCase{svc, "", rec(slog.LevelInfo, "start", slog.Int("pid", 123), slog.String("remote", "[::1]:4000"))}, true},
		{"stderr line", formatCase{svc, "", rec(slog.LevelInfo, "stderr", slog.Int("pid", 1), slog.String("line", "warning: x=1 \"y\"\t\x00"))}, true},
		{"signal status", formatCase{svc, "", rec(slog.LevelWarn, "exit", slog.String("status", "signal TERM"))}, true},
		{"no attrs", formatCase{nil, "", rec(slog.LevelInfo, "")}, true},
		{"no time", formatCase{svc, "", func() slog.Record { r := rec(slog.LevelInfo, "x"); r.Time = time.Time{}; return r }()}, true},
		{"odd levels", formatCase{nil, "", rec(slog.LevelDebug-3, "x")}, true},
		{"level above error", formatCase{nil, "", rec(slog.LevelError+9, "x")}, true},
		{"negative level", formatCase{nil, "", rec(-100, "x")}, true},
		{"strings", formatCase{nil, "", rec(slog.LevelInfo, "m", slog.String("empty", ""), slog.String("space", "a b"),
			slog.String("eq", "a=b"), slog.String("quote", `"`), slog.String("backslash", `a\b`), slog.String("nl", "a\nb"),
			slog.String("del", "\x7f"), slog.String("bad utf8", "\xff\xfe"), slog.String("unicode", "héllo→世界"),
			slog.String("nbsp", "a\u00a0b"), slog.String("nonprint", "\u200b"), slog.String("emoji", "🙂"))}, true},
		{"message needs quoting", formatCase{nil, "", rec(slog.LevelInfo, "rate limited")}, true},
		{"numbers", formatCase{nil, "", rec(slog.LevelInfo, "n", slog.Int64("min", math.MinInt64), slog.Uint64("max", math.MaxUint64),
			slog.Float64("f", 1.5), slog.Float64("big", 1e21), slog.Float64("nan", math.NaN()), slog.Float64("inf", math.Inf(-1)),
			slog.Float64("negzero", math.Copysign(0, -1)), slog.Bool("t", true), slog.Bool("f", false))}, true},
		{"durations", formatCase{nil, "", rec(slog.LevelInfo, "d", slog.Duration("zero", 0), slog.Duration("ns", 7),
			slog.Duration("us", 1500), slog.Duration("ms", 12*time.Millisecond), slog.Duration("s", 90*time.Second+1),
			slog.Duration("h", 1000*time.Hour), slog.Duration("neg", -1500), slog.Duration("min", math.MinInt64),
			slog.Duration("max", math.MaxInt64))}, true},
		{"times", formatCase{nil, "", rec(slog.LevelInfo, "t", slog.Time("utc", when), slog.Time("zero", time.Time{}),
			slog.Time("zone", when.In(time.FixedZone("X", -(3*3600+1800)))), slog.Time("far", time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC)),
			slog.Time("old", time.Date(1200, 1, 1, 0, 0, 0, 0, time.UTC)))}, true},
		{"keys need quoting", formatCase{[]slog.Attr{slog.String("a b", "1")}, "", rec(slog.LevelInfo, "k", slog.Int("x=y", 1), slog.Int("\n", 2))}, true},
		{"top-level msg and level", formatCase{[]slog.Attr{slog.String("msg", "")}, "", rec(slog.LevelInfo, "k", slog.String("msg", ""),
			slog.String("msg", "kept"), slog.String("level", "kept"), slog.String("time", "kept"), slog.String("event", "dup"))}, true},
		{"bad key from Logger args", formatCase{nil, "", func() slog.Record { r := rec(slog.LevelInfo, "k"); r.Add(badArgs...); return r }()}, true},

		// Left to slog.TextHandler.
		{"empty key", formatCase{nil, "", rec(slog.LevelInfo, "k", slog.String("", "v"), slog.Int("", 0))}, false},
		{"error", formatCase{nil, "", rec(slog.LevelError, "spawn", slog.Any("err", errors.New("exec: no such file")))}, false},
		{"text marshaler", formatCase{nil, "", rec(slog.LevelError, "spawn", slog.Any("err", textError{}))}, false},
		{"level value", formatCase{nil, "", rec(slog.LevelInfo, "k", slog.Any("level", slog.LevelWarn))}, false},
		{"bytes", formatCase{nil, "", rec(slog.LevelInfo, "k", slog.Any("b", []byte("a b")))}, false},
		{"nil", formatCase{nil, "", rec(slog.LevelInfo, "k", slog.Any("n", nil))}, false},
		{"group attr", formatCase{nil, "", rec(slog.LevelInfo, "k", slog.Group("g", slog.Int("a", 1)))}, false},
		{"inline group", formatCase{nil, "", rec(slog.LevelInfo, "k", slog.Group("", slog.Int("a", 1)))}, false},
		{"with group", formatCase{svc, "req", rec(slog.LevelInfo, "done", slog.Int("bytes", 10))}, false},
		{"with group, no attrs", formatCase{svc, "req", rec(slog.LevelInfo, "done")}, false},
		{"log valuer", formatCase{svc, "", rec(slog.LevelInfo, "k", slog.Any("v", countingValuer{&resolved}))}, false},
		{"with attr of another kind", formatCase{[]slog.Attr{slog.Any("err", io.EOF)}, "", rec(slog.LevelInfo, "k", slog.Int("a", 1))}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := checkFormat(t, tt.c); got != tt.fast {
				t.Errorf("fast path: got %v, want %v", got, tt.fast)
			}
		})
	}
	// The fast path gives up on a LogValuer without resolving it: slog
	// resolves it next, and LogValue may have side effects.
	resolved = 0
	r := rec(slog.LevelInfo, "k", slog.Int("a", 1), slog.Any("v", countingValuer{&resolved}))
	for _, header := range []bool{true, false} {
		if _, ok := (scope{}).appendFast(nil, r, header); ok || resolved != 0 {
			t.Errorf("appendFast(header %v) of a LogValuer: got ok %v after %d LogValue calls, want false after 0", header, ok, resolved)
		}
	}
}

// TestFormatNoAllocs checks that the per-connection lines cost no
// allocation in the stderr and syslog sinks once their buffers exist.
func TestFormatNoAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("sync.Pool drops buffers at random under the race detector")
	}
	r := exitRecord()
	ctx := context.Background()
	for _, s := range []struct {
		name string
		h    slog.Handler
	}{
		{"stderr", newStderrHandler(io.Discard, slog.LevelInfo)},
		{"syslog", newSyslogHandler(discardSyslog{}, slog.LevelInfo)},
	} {
		h := s.h.WithAttrs([]slog.Attr{slog.String("service", "b")})
		// AllocsPerRun divides and rounds down, so a buffer the GC takes
		// from the pool now and then does not count.
		if n := testing.AllocsPerRun(1000, func() { _ = h.Handle(ctx, r) }); n != 0 {
			t.Errorf("%s: %v allocations per exit line, want 0", s.name, n)
		}
	}
}

// fuzzReader turns fuzz bytes into the parts of a record; past the end it
// yields zeros.
type fuzzReader struct{ b []byte }

func (f *fuzzReader) byte() byte {
	if len(f.b) == 0 {
		return 0
	}
	c := f.b[0]
	f.b = f.b[1:]
	return c
}

func (f *fuzzReader) str() string {
	n := min(int(f.byte()), len(f.b))
	s := string(f.b[:n])
	f.b = f.b[n:]
	return s
}

func (f *fuzzReader) u64() uint64 {
	var b [8]byte
	n := copy(b[:], f.b)
	f.b = f.b[n:]
	return binary.LittleEndian.Uint64(b[:])
}

// time returns a time in one of three zones, or the zero time.
func (f *fuzzReader) time() time.Time {
	ns := int64(f.u64())
	switch f.byte() % 4 {
	case 0:
		return time.Time{}
	case 1:
		return time.Unix(0, ns).UTC()
	case 2:
		return time.Unix(0, ns).In(time.FixedZone("Z", int(int16(ns>>48))*60))
	default:
		// Seconds instead of nanoseconds: times far outside UnixNano's range.
		return time.Unix(ns, 0).UTC()
	}
}

// attr returns an attribute of a kind chosen by the input: three in four
// of a kind the fast path renders, the others of a kind it leaves to slog.
func (f *fuzzReader) attr() slog.Attr {
	kind, key := f.byte(), f.str()
	if kind%4 == 3 {
		switch kind / 4 % 6 {
		case 0:
			return slog.Any(key, errors.New(f.str()))
		case 1:
			return slog.Any(key, slog.Level(int8(f.byte())))
		case 2:
			return slog.Group(key, slog.String(f.str(), f.str()))
		case 3:
			n := 0
			return slog.Any(key, countingValuer{&n})
		case 4:
			return slog.Any(key, []byte(f.str()))
		default:
			return slog.Any(key, nil)
		}
	}
	switch kind / 4 % 8 {
	case 0, 1:
		return slog.String(key, f.str())
	case 2:
		return slog.Int64(key, int64(f.u64()))
	case 3:
		return slog.Uint64(key, f.u64())
	case 4:
		return slog.Float64(key, math.Float64frombits(f.u64()))
	case 5:
		return slog.Bool(key, f.byte()%2 == 1)
	case 6:
		return slog.Duration(key, time.Duration(f.u64()))
	default:
		return slog.Time(key, f.time())
	}
}

// fuzzCase decodes data into a formatCase: message, level, time, With
// attrs, maybe a group, then record attrs until the data runs out.
func fuzzCase(data []byte) formatCase {
	f := &fuzzReader{b: data}
	msg := f.str()
	level := slog.Level(int8(f.byte()))
	r := slog.NewRecord(f.time(), level, msg, 0)
	var c formatCase
	for n := f.byte() % 4; n > 0; n-- {
		c.with = append(c.with, f.attr())
	}
	if f.byte()%8 == 0 {
		c.group = f.str()
	}
	for i := 0; len(f.b) > 0 && i < 64; i++ {
		r.AddAttrs(f.attr())
	}
	c.r = r
	return c
}

// fuzzBytes builds fuzzCase's input for seeds; an attr is its kind byte
// (see fuzzReader.attr: 0 string, 8 int, 24 duration) and then key and
// value as fuzzReader reads them.
type fuzzBytes []byte

func (b fuzzBytes) str(s string) fuzzBytes { return append(append(b, byte(len(s))), s...) }
func (b fuzzBytes) u64(v uint64) fuzzBytes { return binary.LittleEndian.AppendUint64(b, v) }

// FuzzFormat renders random records through every sink and compares the
// bytes with slog.TextHandler's (see checkFormat).
func FuzzFormat(f *testing.F) {
	now := uint64(time.Date(2025, 3, 4, 5, 6, 7, 891234567, time.UTC).UnixNano())
	exit := fuzzBytes(nil).str("exit")
	exit = append(exit, 0) // level Info
	exit = exit.u64(now)   // time
	exit = append(exit, 1) // UTC
	exit = append(exit, 1) // one With attr
	exit = append(exit, 0) // string
	exit = exit.str("service").str("b")
	exit = append(exit, 1) // no group
	exit = append(exit, 8) // int
	exit = exit.str("pid").u64(123)
	exit = append(exit, 0)
	exit = exit.str("remote").str("127.0.0.1:4000")
	exit = append(exit, 8)
	exit = exit.str("status").u64(0)
	exit = append(exit, 24) // duration
	exit = exit.str("duration").u64(uint64(1200 * time.Microsecond))
	f.Add([]byte(exit))
	if !checkFormat(f, fuzzCase(exit)) {
		f.Fatal("the exit seed does not decode to a record the fast path renders")
	}
	for _, s := range []string{"", " ", "=", `"`, "a\nb", "\xff", "世界", "\x00\x1f\x7f", `\`, "\u00a0", "msg", "level", "event"} {
		b := fuzzBytes(nil).str(s)
		b = append(b, 0xfc) // level DEBUG-8
		b = b.u64(now)
		b = append(b, 2, 1, 4) // fixed zone, one With string
		b = b.str(s).str(s)
		b = append(b, 1, 0)
		b = b.str(s).str(s)
		f.Add([]byte(b))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		checkFormat(t, fuzzCase(data))
	})
}
