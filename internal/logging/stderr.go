package logging

import (
	"context"
	"fmt"
	"io"
	"log/slog"
)

// openStderr is the stderr sink's open func: it holds nothing to close.
func openStderr(o Options, stderr io.Writer) (slog.Handler, func() error, error) {
	return newStderrHandler(stderr, o.Level), nil, nil
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
		return fmt.Errorf("logging: stderr: %w", err)
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
