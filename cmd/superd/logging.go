package main

// This file builds superd's *slog.Logger. Both sinks render a record as one
// line of key=value pairs in slog.TextHandler syntax, in this order:
//
//	[time=… level=…] <With attrs> event=<message> <record attrs>
//
// so that callers writing
//
//	log.With("service", "hello").Info("exit", "pid", 123, "status", 0)
//
// get "service=hello event=exit pid=123 status=0" in syslog, and the same
// text after "time=… level=INFO " on stderr. The message is called "event"
// because superd logs short event names ("exit", "spawn", "reload"), not
// sentences, and "event=exit" is what an operator greps for.
//
// Deliberately not done here: log rotation, journald (see design.md), and
// falling back to stderr when syslog goes away after startup (gsyslog redials
// once per failed write; if that fails too, Handle returns the error, which
// slog.Logger discards).

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"time"

	gsyslog "github.com/hashicorp/go-syslog"
)

// Log targets accepted in logOptions.Target.
const (
	logTargetSyslog = "syslog"
	logTargetStderr = "stderr"
)

// eventKey is the key under which a record's message is rendered.
const eventKey = "event"

// Defaults for the zero values of logOptions fields.
const (
	defaultSyslogFacility = "daemon"
	defaultSyslogTag      = "superd"
)

// logOptions says where superd logs.
type logOptions struct {
	Target   string     // "syslog" or "stderr"; "" means "stderr"
	Facility string     // syslog facility name, e.g. "daemon"; "" means "daemon"
	Tag      string     // syslog tag, e.g. "superd"; "" means "superd"
	Socket   string     // syslog daemon's unix datagram socket path; "" = system default (/dev/log ...)
	Level    slog.Level // least severe level logged; the zero value is slog.LevelInfo
}

// newLogger builds the logger described by o.
//
// For Target "syslog" it connects to the syslog daemon with gsyslog: the
// system default socket when o.Socket is "", else the unix datagram socket
// at o.Socket. If no syslog daemon is reachable that is not an error: superd
// must still run on a box without syslog, so newLogger writes one line to
// stderr saying so (with the reason, regardless of o.Level) and logs to
// stderr instead.
//
// The returned close func releases the syslog connection; it does not close
// stderr, which newLogger does not own. Call it last: gsyslog redials on the
// next write, so logging after close reopens the connection.
//
// The error is non-nil only for a bad o.Target or o.Facility.
func newLogger(o logOptions, stderr io.Writer) (*slog.Logger, func() error, error) {
	noClose := func() error { return nil }
	switch o.Target {
	case "", logTargetStderr:
		return slog.New(newStderrHandler(stderr, o.Level)), noClose, nil
	case logTargetSyslog:
	default:
		return nil, nil, fmt.Errorf("superd: log target %q: want %q or %q", o.Target, logTargetSyslog, logTargetStderr)
	}

	facility := o.Facility
	if facility == "" {
		facility = defaultSyslogFacility
	}
	// Checked here, not left to gsyslog, so that a typo in the config is an
	// error instead of being mistaken for "no syslog daemon" below.
	if !isSyslogFacility(facility) {
		return nil, nil, fmt.Errorf("superd: syslog facility %q: unknown", facility)
	}
	tag := o.Tag
	if tag == "" {
		tag = defaultSyslogTag
	}

	// The priority given to gsyslog is only the default for Write; superd
	// always uses WriteLevel, so it matters only for the facility bits.
	var (
		w   gsyslog.Syslogger
		err error
	)
	if o.Socket == "" {
		w, err = gsyslog.NewLogger(gsyslog.LOG_INFO, facility, tag)
		if err != nil {
			// gsyslog's own error ("Unix syslog delivery error") does not say where it looked.
			err = fmt.Errorf("no syslog daemon at /dev/log, /var/run/syslog or /var/run/log: %w", err)
		}
	} else {
		w, err = gsyslog.DialLogger("unixgram", o.Socket, gsyslog.LOG_INFO, facility, tag)
	}
	if err != nil {
		h := newStderrHandler(stderr, o.Level)
		// Handled directly rather than through Logger.Warn so that the notice
		// is written even when o.Level is above Warn.
		r := slog.NewRecord(time.Now(), slog.LevelWarn, "syslog_unavailable", 0)
		r.AddAttrs(slog.String("err", err.Error()), slog.String("logging_to", "stderr"))
		_ = h.Handle(context.Background(), r) // nowhere left to report a failing stderr
		return slog.New(h), noClose, nil
	}
	return slog.New(newSyslogHandler(w, o.Level)), w.Close, nil
}

// isSyslogFacility reports whether name (any case) is a facility gsyslog knows.
func isSyslogFacility(name string) bool {
	switch strings.ToLower(name) {
	case "kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news", "uucp", "cron", "authpriv", "ftp",
		"local0", "local1", "local2", "local3", "local4", "local5", "local6", "local7":
		return true
	}
	return false
}

// syslogPriority maps a slog level to a syslog severity. Levels between the
// four named ones round down (Info+2 is LOG_INFO), and anything below Info is
// LOG_DEBUG.
//
//	level < Info          LOG_DEBUG
//	Info  <= level < Warn  LOG_INFO
//	Warn  <= level < Error LOG_WARNING
//	Error <= level         LOG_ERR
func syslogPriority(l slog.Level) gsyslog.Priority {
	switch {
	case l >= slog.LevelError:
		return gsyslog.LOG_ERR
	case l >= slog.LevelWarn:
		return gsyslog.LOG_WARNING
	case l >= slog.LevelInfo:
		return gsyslog.LOG_INFO
	default:
		return gsyslog.LOG_DEBUG
	}
}

// syslogHandler is a slog.Handler that sends each record as one syslog
// message through a gsyslog.Syslogger. The message text is the record's
// key=value line without time and level: the syslog header carries the
// timestamp, and the level becomes the message's severity (syslogPriority).
//
// It is safe for concurrent use: Handle renders into a buffer of its own,
// and gsyslog serializes writes on its connection with a mutex.
type syslogHandler struct {
	w     gsyslog.Syslogger // shared by all handlers derived by With*; closed by newLogger's caller
	level slog.Level
	scope scope
}

var _ slog.Handler = (*syslogHandler)(nil)

// newSyslogHandler returns a handler writing records at level or above to w.
func newSyslogHandler(w gsyslog.Syslogger, level slog.Level) *syslogHandler {
	return &syslogHandler{w: w, level: level}
}

// Enabled reports whether l is at or above the handler's level.
func (h *syslogHandler) Enabled(_ context.Context, l slog.Level) bool {
	return l >= h.level
}

// Handle sends r as one syslog message at the severity mapped from r.Level.
func (h *syslogHandler) Handle(ctx context.Context, r slog.Record) error {
	var buf bytes.Buffer
	// A TextHandler per call: it only holds &buf, and it gives us slog's
	// quoting rules, so values with spaces, '=', quotes or newlines are
	// quoted and a record can never span two lines or two messages.
	// (TextHandler.Handle does not consult its own Level; h.Enabled has
	// already decided.)
	th := slog.NewTextHandler(&buf, &slog.HandlerOptions{ReplaceAttr: replaceSyslogBuiltins})
	// A zero time makes TextHandler omit it; the syslog header has the time.
	if err := th.Handle(ctx, h.scope.record(r, time.Time{})); err != nil {
		return fmt.Errorf("superd: syslog: render record: %w", err)
	}
	// TextHandler ends the line with exactly one '\n'; gsyslog adds its own
	// only when missing, but other Syslogger implementations may not, so
	// hand over the bare text.
	line := bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
	if err := h.w.WriteLevel(syslogPriority(r.Level), line); err != nil {
		return fmt.Errorf("superd: syslog write: %w", err)
	}
	return nil
}

// WithAttrs returns a handler that renders as before event.
func (h *syslogHandler) WithAttrs(as []slog.Attr) slog.Handler {
	if len(as) == 0 {
		return h
	}
	return &syslogHandler{w: h.w, level: h.level, scope: h.scope.withAttrs(as)}
}

// WithGroup returns a handler that qualifies later attributes with name.
func (h *syslogHandler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	return &syslogHandler{w: h.w, level: h.level, scope: h.scope.withGroup(name)}
}

// replaceSyslogBuiltins drops the built-in level, which the syslog severity
// already carries, and the built-in message, which scope.record has moved to
// eventKey and left empty. It cannot tell built-ins from a caller's own
// top-level "level" attribute holding a slog.Level or "msg" attribute holding
// "", so those are dropped too.
func replaceSyslogBuiltins(groups []string, a slog.Attr) slog.Attr {
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

// dropEmptyMessage drops the built-in "msg" attribute, which scope.record
// has moved to eventKey and left empty (and, unavoidably, a caller's own
// top-level msg="").
func dropEmptyMessage(groups []string, a slog.Attr) slog.Attr {
	if len(groups) == 0 && a.Key == slog.MessageKey && a.Value.Kind() == slog.KindString && a.Value.String() == "" {
		return slog.Attr{}
	}
	return a
}

// stderrHandler is a slog.Handler writing the same key=value lines as
// syslogHandler to a writer, prefixed with time= and level=, which a plain
// stream does not otherwise carry.
//
// It is safe for concurrent use: th serializes its writes with a mutex that
// all handlers derived by With* share, so lines never interleave.
type stderrHandler struct {
	th    *slog.TextHandler // holds no With state; scope does
	scope scope
}

var _ slog.Handler = (*stderrHandler)(nil)

// newStderrHandler returns a handler writing records at level or above to w.
func newStderrHandler(w io.Writer, level slog.Level) *stderrHandler {
	return &stderrHandler{th: slog.NewTextHandler(w, &slog.HandlerOptions{
		Level:       level,
		ReplaceAttr: dropEmptyMessage,
	})}
}

// Enabled reports whether l is at or above the handler's level.
func (h *stderrHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return h.th.Enabled(ctx, l)
}

// Handle writes r as one line.
func (h *stderrHandler) Handle(ctx context.Context, r slog.Record) error {
	if err := h.th.Handle(ctx, h.scope.record(r, r.Time)); err != nil {
		return fmt.Errorf("superd: stderr log: %w", err)
	}
	return nil
}

// WithAttrs returns a handler that renders as before event.
func (h *stderrHandler) WithAttrs(as []slog.Attr) slog.Handler {
	if len(as) == 0 {
		return h
	}
	return &stderrHandler{th: h.th, scope: h.scope.withAttrs(as)}
}

// WithGroup returns a handler that qualifies later attributes with name.
func (h *stderrHandler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	return &stderrHandler{th: h.th, scope: h.scope.withGroup(name)}
}

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
