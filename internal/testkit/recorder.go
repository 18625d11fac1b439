package testkit

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// Entry is one recorded event: a log record, or anything else a test
// adds with Recorder.Add (an sd_notify state, say).
type Entry struct {
	Level slog.Level
	Msg   string
	// Attrs holds the record's attributes and the logger's (With),
	// their values as strings (slog.Value.String). Members of a group
	// are flattened to "group.key". A record's attribute wins over a
	// logger's of the same key. Never nil for a log record.
	Attrs map[string]string
}

// String renders e for failure messages: level, quoted message, and the
// attributes sorted by key.
func (e Entry) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %q", e.Level, e.Msg)
	keys := make([]string, 0, len(e.Attrs))
	for k := range e.Attrs {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		fmt.Fprintf(&b, " %s=%s", k, e.Attrs[k])
	}
	return b.String()
}

// Matcher selects entries, for Recorder's waits and counts.
type Matcher func(Entry) bool

// Match selects the entries with message msg and, for each key, value
// pair in kv, that attribute with that value.
func Match(msg string, kv ...string) Matcher {
	if len(kv)%2 != 0 {
		panic(fmt.Sprintf("testkit.Match(%q, %q): odd number of key, value arguments", msg, kv))
	}
	return func(e Entry) bool {
		if e.Msg != msg {
			return false
		}
		for i := 0; i < len(kv); i += 2 {
			if v, ok := e.Attrs[kv[i]]; !ok || v != kv[i+1] {
				return false
			}
		}
		return true
	}
}

// Prefix selects the entries whose message starts with p.
func Prefix(p string) Matcher {
	return func(e Entry) bool { return strings.HasPrefix(e.Msg, p) }
}

// Recorder keeps entries in the order they arrived and lets tests wait
// for them. It is safe for concurrent use: handlers log from their own
// goroutines while the test waits. The zero value is not usable; call
// NewRecorder.
type Recorder struct {
	mu      sync.Mutex
	entries []Entry
	changed chan struct{} // closed and replaced on every new entry
}

// NewRecorder returns an empty Recorder. When t fails, its entries are
// logged at cleanup, so a failure shows what happened before it.
func NewRecorder(t testing.TB) *Recorder {
	r := &Recorder{changed: make(chan struct{})}
	t.Cleanup(func() {
		if t.Failed() {
			for _, e := range r.All() {
				t.Logf("recorded: %s", e)
			}
		}
	})
	return r
}

// Handler returns a slog.Handler that records into r. It is enabled for
// every level.
func (r *Recorder) Handler() slog.Handler { return &recHandler{r: r} }

// Logger returns a logger that records into r.
func (r *Recorder) Logger() *slog.Logger { return slog.New(r.Handler()) }

// Add records e as it is; for events that are not log records.
func (r *Recorder) Add(e Entry) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.entries = append(r.entries, e)
	close(r.changed)
	r.changed = make(chan struct{})
}

// All returns a copy of every entry so far, oldest first.
func (r *Recorder) All() []Entry {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.entries)
}

// Filter returns the entries so far that m selects, oldest first.
func (r *Recorder) Filter(m Matcher) []Entry {
	var out []Entry
	for _, e := range r.All() {
		if m(e) {
			out = append(out, e)
		}
	}
	return out
}

// Count returns how many entries so far m selects.
func (r *Recorder) Count(m Matcher) int { return len(r.Filter(m)) }

// Index returns the position (in All) of the first entry m selects, or
// -1: for tests that check the order of two events.
func (r *Recorder) Index(m Matcher) int {
	return slices.IndexFunc(r.All(), func(e Entry) bool { return m(e) })
}

// WaitN waits until m selects at least n entries and returns those
// selected at that moment (n or more, oldest first). It fails the test
// after Timeout. Call it from the test's goroutine (it may call
// t.Fatalf).
func (r *Recorder) WaitN(t testing.TB, n int, m Matcher) []Entry {
	t.Helper()
	deadline := time.NewTimer(Timeout)
	defer deadline.Stop()
	for {
		// Take the channel before looking, so that an entry added
		// between the look and the select still wakes us.
		r.mu.Lock()
		ch := r.changed
		r.mu.Unlock()
		if got := r.Filter(m); len(got) >= n {
			return got
		}
		select {
		case <-ch:
		case <-deadline.C:
			t.Fatalf("%d matching entries recorded after %v, want %d", r.Count(m), Timeout, n)
		}
	}
}

// Wait waits for the first entry m selects and returns it. It fails
// the test after Timeout.
func (r *Recorder) Wait(t testing.TB, m Matcher) Entry {
	t.Helper()
	return r.WaitN(t, 1, m)[0]
}

// recHandler is the slog.Handler of a Recorder: attrs are the logger's
// (With) attributes already flattened, prefix the open groups.
type recHandler struct {
	r      *Recorder
	prefix string // "" or the open groups, "a.b."
	attrs  []flatAttr
}

// flatAttr is an attribute with its group path in the key and its value
// as a string.
type flatAttr struct{ key, val string }

func (h *recHandler) Enabled(context.Context, slog.Level) bool { return true }

func (h *recHandler) Handle(_ context.Context, rec slog.Record) error {
	e := Entry{Level: rec.Level, Msg: rec.Message, Attrs: make(map[string]string, len(h.attrs)+rec.NumAttrs())}
	for _, a := range h.attrs {
		e.Attrs[a.key] = a.val
	}
	var own []flatAttr
	rec.Attrs(func(a slog.Attr) bool {
		own = flatten(own, h.prefix, a)
		return true
	})
	for _, a := range own {
		e.Attrs[a.key] = a.val
	}
	h.r.Add(e)
	return nil
}

func (h *recHandler) WithAttrs(as []slog.Attr) slog.Handler {
	n := &recHandler{r: h.r, prefix: h.prefix, attrs: slices.Clip(h.attrs)}
	for _, a := range as {
		n.attrs = flatten(n.attrs, h.prefix, a)
	}
	return n
}

func (h *recHandler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h // slog: an empty group name changes nothing
	}
	return &recHandler{r: h.r, prefix: h.prefix + name + ".", attrs: h.attrs}
}

// flatten appends a to dst under prefix, following slog's rules: a group
// contributes its members ("key." added to the prefix, nothing for an
// empty key), an empty group nothing, and an empty Attr nothing.
func flatten(dst []flatAttr, prefix string, a slog.Attr) []flatAttr {
	v := a.Value.Resolve()
	if v.Kind() == slog.KindGroup {
		p := prefix
		if a.Key != "" {
			p += a.Key + "."
		}
		for _, m := range v.Group() {
			dst = flatten(dst, p, m)
		}
		return dst
	}
	if a.Key == "" && v.Any() == nil {
		return dst
	}
	return append(dst, flatAttr{prefix + a.Key, v.String()})
}
