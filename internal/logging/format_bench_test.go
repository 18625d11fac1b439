package logging

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"maps"
	"testing"
	"time"

	"github.com/coreos/go-systemd/v22/journal"
	gsyslog "github.com/hashicorp/go-syslog"
)

// exitRecord is the record package services logs when a handler exits,
// the hottest line superd writes.
func exitRecord() slog.Record {
	r := slog.NewRecord(time.Date(2025, 3, 4, 5, 6, 7, 891234567, time.UTC), slog.LevelInfo, "exit", 0)
	r.AddAttrs(slog.Int("pid", 12345), slog.String("remote", "127.0.0.1:40000"),
		slog.Int("status", 0), slog.Duration("duration", 1234*time.Microsecond))
	return r
}

// discardSyslog is a gsyslog.Syslogger that drops every message.
type discardSyslog struct{}

func (discardSyslog) WriteLevel(gsyslog.Priority, []byte) error { return nil }
func (discardSyslog) Write(b []byte) (int, error)               { return len(b), nil }
func (discardSyslog) Close() error                              { return nil }

// benchHandle hands the exit record of service "b" to h b.N times.
func benchHandle(b *testing.B, h slog.Handler) {
	h = h.WithAttrs([]slog.Attr{slog.String("service", "b")})
	r := exitRecord()
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if err := h.Handle(ctx, r); err != nil {
			b.Fatal(err)
		}
	}
}

// benchScope is the scope of a handler derived by With("service", "b").
func benchScope() scope {
	return scope{}.withAttrs([]slog.Attr{slog.String("service", "b")})
}

// oldText is scope.text as it was before the fast path: every record
// through a new slog.TextHandler.
func oldText(ctx context.Context, s scope, r slog.Record) ([]byte, error) {
	var buf bytes.Buffer
	th := slog.NewTextHandler(&buf, &slog.HandlerOptions{ReplaceAttr: replaceHeaderBuiltins})
	if err := th.Handle(ctx, s.record(r, time.Time{})); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// BenchmarkStderrExit renders the exit record through the stderr sink to
// io.Discard: "slog" the way the sink did before the fast path, "fast" the
// sink as it is.
func BenchmarkStderrExit(b *testing.B) {
	b.Run("slog", func(b *testing.B) {
		th := slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelInfo, ReplaceAttr: dropEmptyMessage})
		s, r, ctx := benchScope(), exitRecord(), context.Background()
		b.ReportAllocs()
		for b.Loop() {
			if err := th.Handle(ctx, s.record(r, r.Time)); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("fast", func(b *testing.B) {
		benchHandle(b, newStderrHandler(io.Discard, slog.LevelInfo))
	})
}

// BenchmarkSyslogExit renders the exit record through the syslog sink's
// text path (the daemon itself is left out), before and after as
// BenchmarkStderrExit.
func BenchmarkSyslogExit(b *testing.B) {
	b.Run("slog", func(b *testing.B) {
		var w gsyslog.Syslogger = discardSyslog{}
		s, r, ctx := benchScope(), exitRecord(), context.Background()
		b.ReportAllocs()
		for b.Loop() {
			line, err := oldText(ctx, s, r)
			if err != nil {
				b.Fatal(err)
			}
			if err := w.WriteLevel(syslogPriority(r.Level), line); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("fast", func(b *testing.B) {
		benchHandle(b, newSyslogHandler(discardSyslog{}, slog.LevelInfo))
	})
}

// BenchmarkJournalExit renders the exit record through the journal sink,
// its MESSAGE and fields (journald itself is left out), before and after
// as BenchmarkStderrExit.
func BenchmarkJournalExit(b *testing.B) {
	api := journalAPI{
		probe: func() error { return nil },
		send:  func(string, journal.Priority, map[string]string) error { return nil },
	}
	b.Run("slog", func(b *testing.B) {
		common := map[string]string{"SYSLOG_IDENTIFIER": DefaultTag, "SYSLOG_FACILITY": "3"}
		s, r, ctx := benchScope(), exitRecord(), context.Background()
		b.ReportAllocs()
		for b.Loop() {
			fields, _, _ := journalFields(s, r)
			text, err := oldText(ctx, s, r)
			if err != nil {
				b.Fatal(err)
			}
			maps.Copy(fields, common)
			if err := api.send(string(text), journalPriority(r.Level), fields); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("fast", func(b *testing.B) {
		h, _, err := openJournalWith(Options{Target: TargetJournal}, io.Discard, api)
		if err != nil {
			b.Fatal(err)
		}
		benchHandle(b, h)
	})
}

// BenchmarkLoggerStderrExit is BenchmarkStderrExit/fast through
// slog.Logger, as package services calls it (the Logger adds its own
// record building and a runtime.Callers).
func BenchmarkLoggerStderrExit(b *testing.B) {
	l := slog.New(newStderrHandler(io.Discard, slog.LevelInfo)).With("service", "b")
	b.ReportAllocs()
	for b.Loop() {
		l.Info("exit", "pid", 12345, "remote", "127.0.0.1:40000", "status", 0, "duration", 1234*time.Microsecond)
	}
}
