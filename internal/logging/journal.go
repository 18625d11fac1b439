package logging

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/coreos/go-systemd/v22/journal"
)

// The journal sink sends each record to journald over its native protocol
// (go-systemd's journal.Send), as one entry with
//
//	MESSAGE            the key=value line the syslog sink sends
//	PRIORITY           from the level, as the syslog severity (journalPriority)
//	SYSLOG_IDENTIFIER  Options.Tag
//	SYSLOG_FACILITY    Options.Facility, as its number
//	SUPERD_EVENT       the record's message ("exit"), if not ""
//	SUPERD_*           one field per attribute (journalFields)
//
// so that "journalctl SUPERD_SERVICE=hello SUPERD_EVENT=exit" finds what
// grep finds in syslog. journald adds the time and superd's _PID itself.
// A handler's stderr line is an entry whose MESSAGE is the line as the
// handler wrote it (see journalHandler.Handle).

// journalSocket is where go-systemd's journal package sends, named here only
// to say where superd looked when journald is not reachable: the package
// does not let a caller choose another socket (Options.Socket is syslog's).
const journalSocket = "/run/systemd/journal/socket"

// Field names and values superd's own records have a meaning for; see
// journalFields.
const (
	journalFieldPrefix = "SUPERD_"
	journalEventField  = journalFieldPrefix + "EVENT"
	// journalFieldMax is the longest field name journald accepts; it
	// ignores longer ones.
	journalFieldMax = 64
	// stderrEvent and stderrLineKey are how package services logs one line
	// a handler wrote to its stderr: Info("stderr", "pid", pid, "line", text).
	stderrEvent   = "stderr"
	stderrLineKey = "line"
)

// journalRename returns the field name of a top-level attribute whose plain
// name would say too little next to journald's own fields (journald's _PID
// is superd's, and "status" alone could be anything), or "".
func journalRename(key string) string {
	switch key {
	case "pid":
		return journalFieldPrefix + "HANDLER_PID"
	case "status":
		return journalFieldPrefix + "EXIT_STATUS"
	}
	return ""
}

// journalAPI is what the journal sink uses of go-systemd's journal package,
// as functions so that tests can stand in for journald.
type journalAPI struct {
	// probe returns nil if journald is reachable, else why not.
	probe func() error
	// send is journal.Send.
	send func(message string, p journal.Priority, vars map[string]string) error
}

// openJournal is the journal sink's open func. It checks that journald is
// reachable, or, if not, returns a stderr handler after writing one line
// there saying so (see New). It holds nothing to close: go-systemd keeps
// its one unbound datagram socket for the life of the process.
func openJournal(o Options, stderr io.Writer) (slog.Handler, func() error, error) {
	return openJournalWith(o, stderr, journalAPI{probe: probeJournal, send: journal.Send})
}

// openJournalWith is openJournal talking to journald through api.
func openJournalWith(o Options, stderr io.Writer, api journalAPI) (slog.Handler, func() error, error) {
	facility := o.Facility
	if facility == "" {
		facility = DefaultFacility
	}
	number, ok := facilityNumber(facility)
	if !ok {
		return nil, nil, fmt.Errorf("logging: syslog facility %q: unknown", facility)
	}
	tag := o.Tag
	if tag == "" {
		tag = DefaultTag
	}
	if err := api.probe(); err != nil {
		h := newStderrHandler(stderr, o.Level)
		// Handled directly so that the notice is written whatever o.Level.
		r := slog.NewRecord(time.Now(), slog.LevelWarn, "journal_unavailable", 0)
		r.AddAttrs(slog.String("err", err.Error()), slog.String("logging_to", TargetStderr))
		_ = h.Handle(context.Background(), r) // nowhere left to report a failing stderr
		return h, nil, nil
	}
	return &journalHandler{
		j: &journalConn{
			send: api.send,
			common: map[string]string{
				"SYSLOG_IDENTIFIER": tag,
				"SYSLOG_FACILITY":   strconv.Itoa(number),
			},
			stderr: newStderrHandler(stderr, slog.LevelDebug),
		},
		level: o.Level,
	}, nil, nil
}

// probeJournal reports whether journald takes messages at journalSocket, the
// way journal.Enabled decides it, but with the reason when it does not.
func probeJournal() error {
	if journal.Enabled() {
		return nil
	}
	c, err := net.Dial("unixgram", journalSocket)
	if err != nil {
		return fmt.Errorf("no journald at %s: %w", journalSocket, err)
	}
	c.Close()
	// journald answered this time, but go-systemd could not open its own
	// socket; Send would fail the same way.
	return fmt.Errorf("journald at %s: the journal package cannot open a socket to send from", journalSocket)
}

// facilityNumber returns the number RFC 5424 gives a name in Facilities.
func facilityNumber(name string) (int, bool) {
	i := slices.Index(Facilities(), strings.ToLower(name))
	switch {
	case i < 0:
		return 0, false
	case i < 12: // kern (0) to ftp (11) are numbered in order
		return i, true
	default: // numbers 12 to 15 are not in Facilities; local0 is 16
		return i + 4, true
	}
}

// journalPriority maps a slog level to a journal priority, as syslogPriority
// maps it to a syslog severity (the journal's priorities are syslog's).
func journalPriority(l slog.Level) journal.Priority {
	return journal.Priority(syslogPriority(l))
}

// journalConn is what all handlers derived by With* from one journalHandler
// share.
type journalConn struct {
	send   func(message string, p journal.Priority, vars map[string]string) error
	common map[string]string // fields of every entry; never modified
	// stderr writes, with time and level, the records journald did not
	// take. It holds no With state and serializes its writes.
	stderr *stderrHandler
	// lines holds the buffers MESSAGE is rendered into.
	lines linePool
	// refused is set by the first record journald did not take, which is
	// announced on stderr; later ones are not.
	refused atomic.Bool
}

// journalHandler is a slog.Handler sending each record as one journal
// entry (see the top of this file).
//
// A record journald does not take (journal.Send fails: journald stopped
// and its socket is gone or refuses, or /dev/shm is missing for an entry
// too large for one datagram) is written to stderr instead, as the stderr
// sink writes it, so that nothing is lost silently; the first such failure
// is announced there once with event=journal_send_failed. superd keeps
// trying journald for every later record, and Handle returns the send
// error. A journald that is alive but behind makes Send wait for room in
// its socket's queue, as the syslog sink waits for its daemon.
//
// It is safe for concurrent use: Handle builds its fields in a map of its
// own, go-systemd's Send writes one datagram per call, and the stderr
// handler serializes its writes.
type journalHandler struct {
	j     *journalConn
	level slog.Level
	scope scope
}

var _ slog.Handler = (*journalHandler)(nil)

// Enabled reports whether l is at or above the handler's level.
func (h *journalHandler) Enabled(_ context.Context, l slog.Level) bool {
	return l >= h.level
}

// Handle sends r as one journal entry.
//
// A handler's stderr line (event "stderr" with a top-level string "line")
// is the exception to "MESSAGE is the key=value line": its MESSAGE is the
// line itself, as journald stores what a service writes to its own stderr,
// so that journalctl shows the handler's words unquoted; SUPERD_EVENT=stderr,
// SUPERD_SERVICE and SUPERD_HANDLER_PID say whose they are.
func (h *journalHandler) Handle(ctx context.Context, r slog.Record) error {
	fields, message, isLine := journalFields(h.scope, r)
	if !isLine {
		buf := h.j.lines.get()
		text, err := h.scope.appendText(ctx, *buf, r)
		if err == nil {
			message = string(text) // journal.Send takes a string: a copy
		}
		*buf = text
		h.j.lines.put(buf)
		if err != nil {
			return fmt.Errorf("logging: journal: render record: %w", err)
		}
	}
	maps.Copy(fields, h.j.common)
	err := h.j.send(message, journalPriority(r.Level), fields)
	if err == nil {
		return nil
	}
	err = fmt.Errorf("logging: journal: send to %s: %w", journalSocket, err)
	if h.j.refused.CompareAndSwap(false, true) {
		n := slog.NewRecord(time.Now(), slog.LevelWarn, "journal_send_failed", 0)
		n.AddAttrs(slog.String("err", err.Error()), slog.String("logging_to", TargetStderr),
			slog.String("note", "records journald does not take are written here; later failures are not announced"))
		_ = h.j.stderr.Handle(ctx, n) // nowhere left to report a failing stderr
	}
	_ = (&stderrHandler{out: h.j.stderr.out, level: h.j.stderr.level, scope: h.scope}).Handle(ctx, r)
	return err
}

// WithAttrs returns a handler that adds as to every entry.
func (h *journalHandler) WithAttrs(as []slog.Attr) slog.Handler {
	if len(as) == 0 {
		return h
	}
	return &journalHandler{j: h.j, level: h.level, scope: h.scope.withAttrs(as)}
}

// WithGroup returns a handler that qualifies later attributes with name.
func (h *journalHandler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	return &journalHandler{j: h.j, level: h.level, scope: h.scope.withGroup(name)}
}

// journalFields returns the SUPERD_* fields of record r logged through a
// handler with scope s. If r is a handler's stderr line (see Handle), isLine
// is true and line is the text, which is then not a field of its own.
//
// Every attribute, With ones first, becomes one field:
//
//	attribute                          field
//	event (the record's message)       SUPERD_EVENT (left out if "")
//	pid, status (top level)            SUPERD_HANDLER_PID, SUPERD_EXIT_STATUS
//	k with a time.Duration value        SUPERD_K_USEC, integer microseconds
//	                                     (duration → SUPERD_DURATION_USEC)
//	k in groups g1, g2                 SUPERD_G1_G2_K
//	anything else, e.g. service        SUPERD_SERVICE
//
// Names are upper-cased and every byte that is not A-Z, 0-9 or '_' becomes
// '_' ("retry-in" → SUPERD_RETRY_IN), then cut to the 64 bytes journald
// accepts. Values are as slog prints them, except times (RFC 3339 with
// nanoseconds) and durations. When two attributes end up with the same
// field name the later one wins, and the record's message wins over an
// attribute called event: the journal keeps one value per field here, and
// MESSAGE still holds them all. Groups and attributes that are empty are
// left out, as slog.Handler requires.
func journalFields(s scope, r slog.Record) (fields map[string]string, line string, isLine bool) {
	fields = make(map[string]string, len(s.attrs)+r.NumAttrs()+1)
	for _, a := range s.attrs {
		addJournalField(fields, nil, a)
	}
	var path []string
	for _, g := range s.groups {
		path = append(path, g.name)
		for _, a := range g.attrs {
			addJournalField(fields, path, a)
		}
	}
	r.Attrs(func(a slog.Attr) bool {
		if !isLine && len(path) == 0 && r.Message == stderrEvent && a.Key == stderrLineKey {
			if v := a.Value.Resolve(); v.Kind() == slog.KindString {
				line, isLine = v.String(), true
				return true
			}
		}
		addJournalField(fields, path, a)
		return true
	})
	if r.Message != "" {
		fields[journalEventField] = r.Message
	}
	return fields, line, isLine
}

// addJournalField adds a, inside groups path, to fields (see journalFields).
func addJournalField(fields map[string]string, path []string, a slog.Attr) {
	a.Value = a.Value.Resolve()
	if a.Equal(slog.Attr{}) {
		return
	}
	if a.Value.Kind() == slog.KindGroup {
		if a.Key != "" { // a group without a key is inlined
			path = append(slices.Clip(path), a.Key)
		}
		for _, m := range a.Value.Group() {
			addJournalField(fields, path, m)
		}
		return
	}
	var name, value string
	switch v := a.Value; {
	case len(path) == 0 && journalRename(a.Key) != "":
		name, value = journalRename(a.Key), v.String()
	case v.Kind() == slog.KindDuration:
		name, value = journalFieldName(path, a.Key+"_usec"), strconv.FormatInt(v.Duration().Microseconds(), 10)
	case v.Kind() == slog.KindTime:
		name, value = journalFieldName(path, a.Key), v.Time().Format(time.RFC3339Nano)
	default:
		name, value = journalFieldName(path, a.Key), v.String()
	}
	fields[name] = value
}

// journalFieldName returns SUPERD_ followed by the groups in path and key,
// joined by '_', in the characters journald allows (see journalFields).
func journalFieldName(path []string, key string) string {
	var b strings.Builder
	b.WriteString(journalFieldPrefix)
	for _, p := range append(slices.Clip(path), key) {
		if b.Len() > len(journalFieldPrefix) {
			b.WriteByte('_')
		}
		for i := 0; i < len(p); i++ {
			switch c := p[i]; {
			case 'a' <= c && c <= 'z':
				b.WriteByte(c - 'a' + 'A')
			case 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '_':
				b.WriteByte(c)
			default:
				b.WriteByte('_')
			}
		}
	}
	name := b.String()
	if len(name) > journalFieldMax {
		name = name[:journalFieldMax]
	}
	return name
}
