package logging

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"time"

	gsyslog "github.com/hashicorp/go-syslog"
)

// openSyslog is the syslog sink's open func. It connects to the syslog
// daemon, or, if none is reachable, returns a stderr handler after writing
// one line there saying so (see New).
func openSyslog(o Options, stderr io.Writer) (slog.Handler, func() error, error) {
	facility := o.Facility
	if facility == "" {
		facility = DefaultFacility
	}
	// Checked here, not left to gsyslog, so that a typo in the config is an
	// error instead of being mistaken for "no syslog daemon" below.
	if !IsFacility(facility) {
		return nil, nil, fmt.Errorf("logging: syslog facility %q: unknown", facility)
	}
	tag := o.Tag
	if tag == "" {
		tag = DefaultTag
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
		r.AddAttrs(slog.String("err", err.Error()), slog.String("logging_to", TargetStderr))
		_ = h.Handle(context.Background(), r) // nowhere left to report a failing stderr
		return h, nil, nil
	}
	return newSyslogHandler(w, o.Level), w.Close, nil
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
	w     gsyslog.Syslogger // shared by all handlers derived by With*; closed by New's caller
	level slog.Level
	scope scope
	// lines holds the buffers Handle renders into, shared by all handlers
	// derived by With*. A buffer is reused once WriteLevel returns, which
	// is safe because a Syslogger, like an io.Writer, does not keep the
	// bytes it is given (gsyslog copies them into a string).
	lines *linePool
}

var _ slog.Handler = (*syslogHandler)(nil)

// newSyslogHandler returns a handler writing records at level or above to w.
func newSyslogHandler(w gsyslog.Syslogger, level slog.Level) *syslogHandler {
	return &syslogHandler{w: w, level: level, lines: &linePool{}}
}

// Enabled reports whether l is at or above the handler's level.
func (h *syslogHandler) Enabled(_ context.Context, l slog.Level) bool {
	return l >= h.level
}

// Handle sends r as one syslog message at the severity mapped from r.Level.
func (h *syslogHandler) Handle(ctx context.Context, r slog.Record) error {
	buf := h.lines.get()
	defer h.lines.put(buf)
	line, err := h.scope.appendText(ctx, *buf, r)
	if err != nil {
		return fmt.Errorf("logging: syslog: render record: %w", err)
	}
	*buf = line // keep the grown buffer for the next message
	if err := h.w.WriteLevel(syslogPriority(r.Level), line); err != nil {
		return fmt.Errorf("logging: syslog write: %w", err)
	}
	return nil
}

// WithAttrs returns a handler that renders as before event.
func (h *syslogHandler) WithAttrs(as []slog.Attr) slog.Handler {
	if len(as) == 0 {
		return h
	}
	return &syslogHandler{w: h.w, level: h.level, scope: h.scope.withAttrs(as), lines: h.lines}
}

// WithGroup returns a handler that qualifies later attributes with name.
func (h *syslogHandler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	return &syslogHandler{w: h.w, level: h.level, scope: h.scope.withGroup(name), lines: h.lines}
}
