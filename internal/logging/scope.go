package logging

import (
	"log/slog"
	"slices"
	"time"
)

// This file holds what every sink shares: the line layout described in the
// package doc, built by scope.record for a slog.TextHandler without With
// state.

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
