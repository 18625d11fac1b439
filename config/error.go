package config

import (
	"fmt"
	"strings"
)

// Error is one problem found while loading a configuration. Load joins
// every Error it finds with errors.Join, so that `superd check` can show
// them all at once; errors.As finds the first.
//
// Error formats as
//
//	services.toml:12: service "hello": key "port": port 70000 out of range 1..65535
//
// leaving out the parts that are empty.
type Error struct {
	// File is the file the problem is in, as given to Load or as an
	// include glob matched it; empty when the problem is in no file.
	File string
	// Service is the NAME of [services.NAME]; empty for [superd] and
	// [defaults] settings.
	Service string
	// Key is the key inside the service's table ("port", "limits.nofile"),
	// or the dotted key outside one ("superd.log", "defaults.user"). A
	// service key that starts with "defaults." was inherited from
	// [defaults]. Empty when the problem is not one key's.
	Key string
	// Line is the line number, starting at 1; zero when unknown.
	Line int
	// Err is the problem itself.
	Err error
}

// Error formats the location, then the problem.
func (e *Error) Error() string {
	var b strings.Builder
	switch {
	case e.File != "" && e.Line > 0:
		fmt.Fprintf(&b, "%s:%d: ", e.File, e.Line)
	case e.File != "":
		fmt.Fprintf(&b, "%s: ", e.File)
	case e.Line > 0:
		fmt.Fprintf(&b, "line %d: ", e.Line)
	}
	if e.Service != "" {
		fmt.Fprintf(&b, "service %q: ", e.Service)
	}
	if e.Key != "" {
		fmt.Fprintf(&b, "key %q: ", e.Key)
	}
	b.WriteString(e.errText())
	return b.String()
}

// errText guards against a nil Err, which would otherwise panic in a
// caller's log line.
func (e *Error) errText() string {
	if e.Err == nil {
		return "invalid"
	}
	return e.Err.Error()
}

// Unwrap returns Err.
func (e *Error) Unwrap() error { return e.Err }
