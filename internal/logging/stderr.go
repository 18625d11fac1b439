package logging

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync"
)

// openStderr is the stderr sink's open func: it holds nothing to close.
func openStderr(o Options, stderr io.Writer) (slog.Handler, func() error, error) {
	return newStderrHandler(stderr, o.Level), nil, nil
}

// stderrOut is what all handlers derived by With* from one stderrHandler
// share: the writer, the mutex serializing writes to it, and the buffers
// lines are rendered into.
type stderrOut struct {
	w     io.Writer // not closed here: New's caller owns it
	mu    sync.Mutex
	lines linePool
}

// stderrHandler is a slog.Handler writing the same key=value lines as
// syslogHandler to a writer, prefixed with time= and level=, which a plain
// stream does not otherwise carry: the bytes slog.TextHandler would write.
//
// It is safe for concurrent use: each Handle renders into a buffer of its
// own and writes the whole line with one Write under out.mu, which all
// handlers derived by With* share, so lines never interleave.
type stderrHandler struct {
	out   *stderrOut
	level slog.Level
	scope scope
}

var _ slog.Handler = (*stderrHandler)(nil)

// newStderrHandler returns a handler writing records at level or above to w.
func newStderrHandler(w io.Writer, level slog.Level) *stderrHandler {
	return &stderrHandler{out: &stderrOut{w: w}, level: level}
}

// Enabled reports whether l is at or above the handler's level.
func (h *stderrHandler) Enabled(_ context.Context, l slog.Level) bool {
	return l >= h.level
}

// Handle writes r as one line.
func (h *stderrHandler) Handle(ctx context.Context, r slog.Record) error {
	buf := h.out.lines.get()
	defer h.out.lines.put(buf)
	line, ok := h.scope.appendFast(*buf, r, true)
	if !ok {
		var err error
		if line, err = h.scope.appendSlogLine(ctx, *buf, r); err != nil {
			return fmt.Errorf("logging: stderr: render record: %w", err)
		}
	}
	*buf = line // keep the grown buffer for the next line
	h.out.mu.Lock()
	_, err := h.out.w.Write(line)
	h.out.mu.Unlock()
	if err != nil {
		return fmt.Errorf("logging: stderr: %w", err)
	}
	return nil
}

// WithAttrs returns a handler that renders as before event.
func (h *stderrHandler) WithAttrs(as []slog.Attr) slog.Handler {
	if len(as) == 0 {
		return h
	}
	return &stderrHandler{out: h.out, level: h.level, scope: h.scope.withAttrs(as)}
}

// WithGroup returns a handler that qualifies later attributes with name.
func (h *stderrHandler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	return &stderrHandler{out: h.out, level: h.level, scope: h.scope.withGroup(name)}
}
