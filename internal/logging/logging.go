// Package logging builds superd's *slog.Logger for one log target (a
// "sink": stderr, syslog or the systemd journal) and holds the one list of
// names and defaults that superd's configuration accepts for it: the
// targets, the syslog facilities, the default facility and tag.
//
// Every sink renders a record as one line of key=value pairs in
// slog.TextHandler syntax, in this order:
//
//	[time=… level=…] <With attrs> event=<message> <record attrs>
//
// so that callers writing
//
//	log.With("service", "hello").Info("exit", "pid", 123, "status", 0)
//
// get "service=hello event=exit pid=123 status=0" in syslog and as the
// journal's MESSAGE, and the same text after "time=… level=INFO " on
// stderr. The journal gets each attribute as a field of its own too
// (SUPERD_SERVICE=hello; see journal.go). The message is called "event"
// because superd logs short event names ("exit", "spawn", "reload"), not
// sentences, and "event=exit" is what an operator greps for.
//
// Each sink is one file (stderr.go, syslog.go, journal.go) defining its
// handler and an open function, plus one line in sinks. All of them render
// lines with format.go, a formatter writing exactly the bytes
// slog.TextHandler would, without its per-record cost, for the attribute
// kinds superd logs per connection; anything else (groups, LogValuers, Any
// values) still goes through slog.TextHandler.
//
// Deliberately not done here: parsing or validating the configuration file
// (package config does that, using Targets, Facilities and the defaults
// from here), log rotation, log levels per service, starting goroutines,
// and falling back to stderr when syslog goes away after startup (gsyslog
// redials once per failed write; if that fails too, Handle returns the
// error, which slog.Logger discards); the journal sink, though, writes a
// record journald refuses to stderr instead (see journal.go). Nor does
// superd switch to the journal by itself when its stderr is a journal
// stream (JOURNAL_STREAM): the configuration says where it logs. The
// package has no mutable state: all of it lives in the logger New returns.
package logging

import (
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
)

// Log targets accepted in Options.Target.
const (
	TargetSyslog  = "syslog"  // the local syslog daemon, through its unix datagram socket
	TargetJournal = "journal" // the systemd journal, through journald's native socket
	TargetStderr  = "stderr"  // the stderr writer given to New
)

// Defaults superd uses when its configuration leaves a setting out.
const (
	// DefaultTarget is the target of a configuration that names none.
	// (The zero Options.Target means TargetStderr instead, so that a
	// program that fills in no Options logs where it can be seen.)
	DefaultTarget = TargetSyslog
	// DefaultFacility is the syslog facility used when none is given;
	// it is also what the zero Options.Facility means.
	DefaultFacility = "daemon"
	// DefaultTag is the syslog tag used when none is given; it is also
	// what the zero Options.Tag means.
	DefaultTag = "superd"
)

// Facilities returns the syslog facility names superd accepts, the ones
// every syslog daemon knows, in lower case. The slice is new on every
// call; the caller may keep or modify it.
func Facilities() []string {
	return []string{"kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news", "uucp", "cron",
		"authpriv", "ftp", "local0", "local1", "local2", "local3", "local4", "local5", "local6", "local7"}
}

// IsFacility reports whether name, in any case, is one of Facilities.
func IsFacility(name string) bool {
	return slices.Contains(Facilities(), strings.ToLower(name))
}

// Targets returns the names Options.Target accepts besides "", in the order
// error messages list them. The slice is new on every call.
func Targets() []string {
	ss := sinks()
	names := make([]string, len(ss))
	for i, s := range ss {
		names[i] = s.name
	}
	return names
}

// Options says where superd logs. The zero value logs at Info to stderr.
type Options struct {
	Target   string     // TargetSyslog, TargetJournal or TargetStderr; "" means TargetStderr
	Facility string     // syslog facility (journal: SYSLOG_FACILITY), one of Facilities; "" means DefaultFacility
	Tag      string     // syslog tag (journal: SYSLOG_IDENTIFIER); "" means DefaultTag
	Socket   string     // syslog daemon's unix datagram socket path; "" = system default (/dev/log ...); the journal ignores it
	Level    slog.Level // least severe level logged; the zero value is slog.LevelInfo
}

// sink is one log target: its name in Options.Target and how to open it.
//
// open returns the handler, and a func releasing what the handler holds
// (nil if it holds nothing). Its error is for options that can never work
// (a typo in the configuration); a destination that is merely unreachable
// right now should fall back to stderr and say so there, because superd
// must run without it.
type sink struct {
	name string
	open func(o Options, stderr io.Writer) (slog.Handler, func() error, error)
}

// sinks lists every target New accepts. A new sink is a file of its own
// with its open func, and one line here.
func sinks() []sink {
	return []sink{
		{TargetSyslog, openSyslog},
		{TargetStderr, openStderr},
		{TargetJournal, openJournal},
	}
}

// New builds the logger described by o. stderr is where the stderr sink
// writes and where other sinks report that they fell back to it; New does
// not close it.
//
//	o.Target        logs to                         close releases
//	"", "stderr"    stderr                          nothing
//	"syslog"        the syslog daemon (see below)   the syslog connection
//	"syslog", but   stderr, after one line there    nothing
//	 no daemon       saying so (whatever o.Level)
//	"journal"       journald (see journal.go)       nothing
//	"journal", but  stderr, after one line there    nothing
//	 no journald     saying so (whatever o.Level)
//	anything else   error
//
// For Target "syslog" New connects to the syslog daemon with gsyslog: the
// system default socket when o.Socket is "", else the unix datagram socket
// at o.Socket. For Target "journal" it checks that journald answers at
// /run/systemd/journal/socket (go-systemd's journal package, which knows no
// other place). If neither is reachable that is not an error: superd must
// still run on a box without syslog or journald.
//
// The returned close func is never nil on success and may be called more
// than once. Call it last: gsyslog redials on the next write, so logging
// after close reopens the connection.
//
// The error is non-nil only for a bad o.Target or o.Facility; then the
// logger and close func are nil and nothing was written to stderr.
func New(o Options, stderr io.Writer) (*slog.Logger, func() error, error) {
	target := o.Target
	if target == "" {
		target = TargetStderr
	}
	i := slices.IndexFunc(sinks(), func(s sink) bool { return s.name == target })
	if i < 0 {
		return nil, nil, fmt.Errorf("logging: log target %q: want %s", o.Target, quoteOr(Targets()))
	}
	h, closeSink, err := sinks()[i].open(o, stderr)
	if err != nil {
		return nil, nil, err
	}
	if closeSink == nil {
		closeSink = func() error { return nil }
	}
	return slog.New(h), closeSink, nil
}

// quoteOr formats names as `"a", "b" or "c"`.
func quoteOr(names []string) string {
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = fmt.Sprintf("%q", n)
	}
	if len(q) < 2 {
		return strings.Join(q, "")
	}
	return strings.Join(q[:len(q)-1], ", ") + " or " + q[len(q)-1]
}
