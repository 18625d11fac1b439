package logging

import (
	"bytes"
	"context"
	"log/slog"
	"slices"
	"time"
)

// This file holds what every sink shares: the line layout described in the
// package doc, built by scope.record for a slog.TextHandler without With
// state, and rendered by the fast path in format.go where it can be.

// eventKey is the key under which a record's message is rendered.
const eventKey = "event"

// scope is what WithAttrs and WithGroup have accumulated for a handler. The
// handlers keep it themselves, instead of delegating to slog.TextHandler's
// WithAttrs, because TextHandler always puts the message before With
// attributes and superd wants "service=hello event=exit".
//
// A scope is never modified: the with methods return a copy whose slices
// share no spare capacity with the original, so loggers derived from a
// common parent cannot overwrite each other's attributes.
type scope struct {
	attrs  []slog.Attr // from WithAttrs before any WithGroup; rendered before event
	groups []openGroup // from WithGroup, outermost first
}

// openGroup is one WithGroup call and the WithAttrs that followed it.
type openGroup struct {
	name  string
	attrs []slog.Attr
}

// withAttrs returns s with as added to the innermost open group, or to the
// top level if no group is open.
func (s scope) withAttrs(as []slog.Attr) scope {
	if len(s.groups) == 0 {
		s.attrs = append(slices.Clip(s.attrs), as...)
		return s
	}
	s.groups = slices.Clone(s.groups)
	g := &s.groups[len(s.groups)-1]
	g.attrs = append(slices.Clip(g.attrs), as...)
	return s
}

// withGroup returns s with group name opened inside the current innermost one.
func (s scope) withGroup(name string) scope {
	s.groups = append(slices.Clip(s.groups), openGroup{name: name})
	return s
}

// record returns the record to hand to a slog.TextHandler that has no With
// state: time t, r's level and PC, an empty message, and attributes
//
//	s.attrs, event=r.Message (if not ""), G1{G1 attrs, G2{…, r's attrs}}
//
// Groups that end up empty are left out by slog itself (GroupValue and
// TextHandler drop empty groups), as slog.Handler requires.
func (s scope) record(r slog.Record, t time.Time) slog.Record {
	out := slog.NewRecord(t, r.Level, "", r.PC)
	out.AddAttrs(s.attrs...)
	if r.Message != "" {
		out.AddAttrs(slog.String(eventKey, r.Message))
	}
	tail := make([]slog.Attr, 0, r.NumAttrs())
	r.Attrs(func(a slog.Attr) bool {
		tail = append(tail, a)
		return true
	})
	for i := len(s.groups) - 1; i >= 0; i-- {
		g := s.groups[i]
		members := append(slices.Clip(g.attrs), tail...)
		tail = []slog.Attr{{Key: g.name, Value: slog.GroupValue(members...)}}
	}
	out.AddAttrs(tail...)
	return out
}

// dropEmptyMessage is a slog.HandlerOptions.ReplaceAttr that drops the
// built-in "msg" attribute, which scope.record has moved to eventKey and
// left empty (and, unavoidably, a caller's own top-level msg="").
func dropEmptyMessage(groups []string, a slog.Attr) slog.Attr {
	if len(groups) == 0 && a.Key == slog.MessageKey && a.Value.Kind() == slog.KindString && a.Value.String() == "" {
		return slog.Attr{}
	}
	return a
}

// appendText appends to dst the line of r, logged through a handler with
// scope s, without time and level, that the syslog and journal sinks send:
// both carry the time and the level (as a severity) outside the text. The
// line has no trailing newline: gsyslog adds its own only when missing, but
// other Syslogger implementations may not, and a journal MESSAGE has none.
//
// Records the fast path renders (format.go) never reach slog; the rest go
// through appendSlogText, which gives the same bytes.
func (s scope) appendText(ctx context.Context, dst []byte, r slog.Record) ([]byte, error) {
	if line, ok := s.appendFast(dst, r, false); ok {
		return line, nil
	}
	return s.appendSlogText(ctx, dst, r)
}

// appendSlogText is appendText through slog.TextHandler, for any record.
func (s scope) appendSlogText(ctx context.Context, dst []byte, r slog.Record) ([]byte, error) {
	w := appendWriter{b: dst}
	// A TextHandler per call: it only holds &w, and it gives us slog's
	// quoting rules, so values with spaces, '=', quotes or newlines are
	// quoted and a record can never span two lines or two messages.
	// (TextHandler.Handle does not consult its own Level; the sink's
	// Enabled has already decided.)
	th := slog.NewTextHandler(&w, &slog.HandlerOptions{ReplaceAttr: replaceHeaderBuiltins})
	// A zero time makes TextHandler omit it.
	if err := th.Handle(ctx, s.record(r, time.Time{})); err != nil {
		return dst, err
	}
	// TextHandler ends the line with exactly one '\n'.
	return bytes.TrimSuffix(w.b, []byte("\n")), nil
}

// appendSlogLine appends the stderr sink's line for r, logged through a
// handler with scope s (time, level, the attributes, '\n'), through
// slog.TextHandler, for any record.
func (s scope) appendSlogLine(ctx context.Context, dst []byte, r slog.Record) ([]byte, error) {
	w := appendWriter{b: dst}
	th := slog.NewTextHandler(&w, &slog.HandlerOptions{ReplaceAttr: dropEmptyMessage})
	if err := th.Handle(ctx, s.record(r, r.Time)); err != nil {
		return dst, err
	}
	return w.b, nil
}

// appendWriter is an io.Writer appending to b, so that slog.TextHandler
// renders into a caller's buffer. It never fails.
type appendWriter struct{ b []byte }

// Write appends p to w.b.
func (w *appendWriter) Write(p []byte) (int, error) {
	w.b = append(w.b, p...)
	return len(p), nil
}

// replaceHeaderBuiltins drops the built-in level, which the syslog severity
// or journal PRIORITY already carries, and the built-in message, which
// scope.record has moved to eventKey and left empty. It cannot tell
// built-ins from a caller's own top-level "level" attribute holding a
// slog.Level or "msg" attribute holding "", so those are dropped too.
func replaceHeaderBuiltins(groups []string, a slog.Attr) slog.Attr {
	if len(groups) > 0 {
		return a
	}
	switch a.Key {
	case slog.LevelKey:
		if _, ok := a.Value.Any().(slog.Level); ok {
			return slog.Attr{}
		}
	case slog.MessageKey:
		return dropEmptyMessage(groups, a)
	}
	return a
}
