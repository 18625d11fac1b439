// Package legacy converts the configuration of inetd and xinetd into
// superd services, written as services.toml text.
//
// It reads inetd.conf in the forms openbsd-inetd and inetutils-inetd
// accept (update-inetd's "#<off>#" entries included), and xinetd's
// xinetd.conf with its defaults, include and includedir, and the files
// of /etc/xinetd.d. Each entry becomes a Service: a [services.NAME] table
// whose keys mean what the entry meant, as far as superd can say it.
// What superd cannot say is never dropped: it becomes a NotConverted item
// at its service, written as a "# NOT CONVERTED: <original> — <why>"
// comment, and Result.Warnings lists every one for the caller to print.
// Where a setting that cannot be carried over would let more clients in
// than before (a bind to a host name, a no_access host name, an
// only_from made only of host names), the service is converted disabled.
//
// The package deliberately does not judge the result against the host:
// it resolves no user, group or host name and checks no handler, since
// config.Load (superd check) does that with superd's own rules. It reads
// only the files it is given and the files xinetd would include from
// them, and /etc/services through net.LookupPort to find two services
// that would take the same socket. It has no package-level state and
// starts no goroutine.
package legacy

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// Dialect is a legacy configuration format.
type Dialect int

const (
	// Detect is the zero Dialect: find the dialect from each file's
	// content (see DetectDialect).
	Detect Dialect = iota
	// Inetd is inetd.conf: one service per line.
	Inetd
	// Xinetd is xinetd.conf and the files of /etc/xinetd.d.
	Xinetd
)

// String returns "inetd", "xinetd", or "detect".
func (d Dialect) String() string {
	switch d {
	case Inetd:
		return "inetd"
	case Xinetd:
		return "xinetd"
	}
	return "detect"
}

// ParseDialect accepts "inetd" or "xinetd" (the --from values) and ""
// for Detect.
func ParseDialect(s string) (Dialect, error) {
	switch s {
	case "":
		return Detect, nil
	case "inetd":
		return Inetd, nil
	case "xinetd":
		return Xinetd, nil
	}
	return Detect, fmt.Errorf("legacy: unknown dialect %q: want inetd or xinetd", s)
}

// Options says how Convert reads its inputs. The zero value detects each
// file's dialect and reads the real file system.
type Options struct {
	// From forces the dialect of every file named on the command line;
	// Detect finds it from each file's content. Files that xinetd
	// includes are always xinetd's.
	From Dialect

	// ReadFile, ReadDir and LookupPort stand for the operating system;
	// nil means os.ReadFile, os.ReadDir and net.LookupPort. LookupPort
	// only serves to find services that would share a socket.
	ReadFile   func(path string) ([]byte, error)
	ReadDir    func(path string) ([]fs.DirEntry, error)
	LookupPort func(network, service string) (int, error)
}

// Result is a whole conversion.
type Result struct {
	// Inputs lists every file read, in the order read.
	Inputs []Input
	// Services holds every service found, in input order, converted
	// or not.
	Services []*Service
	// General holds what belongs to no one service (xinetd's defaults
	// entry) and could not be converted.
	General []NotConverted
	// Notes are comments about no one service.
	Notes []string
}

// Input is one file read and its dialect.
type Input struct {
	Path    string
	Dialect Dialect
}

// Service is one legacy entry: a [services.NAME] table, or, when Skipped,
// only comments saying why there is none.
type Service struct {
	// Name is the table name, unique within a Result and recognisable:
	// the inetd service name or the xinetd id, with a suffix
	// (-stream, -dgram, -tcp6, the address, -2...) only where two
	// services would otherwise share it.
	Name string
	// Source is where the entry starts, "file:line".
	Source string
	// Origin says what the entry was, for the comment above the table.
	Origin string
	// Skipped is true when nothing of the entry could be converted
	// (an RPC service, say); NotConverted then says why.
	Skipped bool
	// Keys are the superd keys, in the order they are written.
	Keys []Key
	// Notes are comments about settings that were carried over in a
	// different form, or that need no key in superd.
	Notes []string
	// NotConverted lists what could not be carried over.
	NotConverted []NotConverted

	raw    string    // the entry, for a NotConverted item about all of it
	base   string    // Name before making it unique
	suffix [3]string // socket type, protocol, address: suffixes that tell services apart
	listen *listenID // the socket, for finding collisions; nil if Skipped
}

// Key is one key of a service table. Value is a bool, int, float64,
// string, []string, or []Pair (an inline table such as env or limits).
type Key struct {
	Name  string
	Value any
}

// Pair is one entry of an inline table.
type Pair struct {
	Name  string
	Value any
}

// NotConverted is a setting that superd cannot carry over.
type NotConverted struct {
	// Source is "file:line" of the setting.
	Source string
	// Original is the setting as written (the line, or the attribute).
	Original string
	// Why says what superd does instead, or why nothing can be done.
	Why string
}

// Warning is one NotConverted item with the service it belongs to (empty
// for General items), as Result.Warnings lists them.
type Warning struct {
	Service string
	NotConverted
}

// String formats the warning for a person:
//
//	/etc/xinetd.d/ftp:12: service "ftp": NOT CONVERTED: banner = /etc/issue — superd sends no banner
func (w Warning) String() string {
	var b strings.Builder
	if w.Source != "" {
		b.WriteString(w.Source + ": ")
	}
	if w.Service != "" {
		fmt.Fprintf(&b, "service %q: ", w.Service)
	}
	fmt.Fprintf(&b, "NOT CONVERTED: %s — %s", w.Original, w.Why)
	return b.String()
}

// Warnings lists every NotConverted item, General ones first, then each
// service's in service order.
func (r *Result) Warnings() []Warning {
	var out []Warning
	for _, n := range r.General {
		out = append(out, Warning{NotConverted: n})
	}
	for _, s := range r.Services {
		for _, n := range s.NotConverted {
			out = append(out, Warning{Service: s.Name, NotConverted: n})
		}
	}
	return out
}

// ParseError is an input that cannot be parsed: a file that is neither
// dialect, or xinetd text whose braces do not enclose entries.
type ParseError struct {
	File string
	Line int // zero when the problem is the whole file
	Err  error
}

// Error formats "file:line: problem".
func (e *ParseError) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("%s:%d: %v", e.File, e.Line, e.Err)
	}
	return fmt.Sprintf("%s: %v", e.File, e.Err)
}

// Unwrap returns Err.
func (e *ParseError) Unwrap() error { return e.Err }

// ErrUnknownDialect is the error of a ParseError for a file that is
// recognisably neither inetd.conf nor xinetd configuration.
var ErrUnknownDialect = errors.New("neither inetd.conf nor xinetd configuration (give --from inetd or --from xinetd if it is one of them)")

// Convert reads the files at paths (a folder stands for its files, read
// as xinetd reads an includedir) and converts every entry. It returns an
// error, with no Result, only when a file cannot be read or parsed: each
// such file's error, joined. Settings it cannot convert are in the
// Result, never an error.
func Convert(paths []string, opts Options) (*Result, error) {
	c := newConverter(opts)
	var errs []error
	for _, p := range paths {
		if err := c.input(p, opts.From); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return c.finish(), nil
}

// converter holds the state of one Convert call.
type converter struct {
	readFile   func(string) ([]byte, error)
	readDir    func(string) ([]fs.DirEntry, error)
	lookupPort func(string, string) (int, error)

	res   *Result
	seen  map[string]bool   // files read, by cleaned absolute path
	ports map[string]string // port names resolved, by "transport/name"
	x     *xinetdState      // xinetd's defaults and services, shared by every xinetd file
}

func newConverter(opts Options) *converter {
	c := &converter{readFile: opts.ReadFile, readDir: opts.ReadDir, lookupPort: opts.LookupPort,
		res: &Result{}, seen: map[string]bool{}, ports: map[string]string{}}
	if c.readFile == nil {
		c.readFile = os.ReadFile
	}
	if c.readDir == nil {
		c.readDir = os.ReadDir
	}
	if c.lookupPort == nil {
		c.lookupPort = net.LookupPort
	}
	c.x = newXinetdState()
	return c
}

// input converts one path named by the caller.
func (c *converter) input(path string, from Dialect) error {
	if entries, err := c.readDir(path); err == nil {
		return c.folder(path, entries, from)
	}
	data, err := c.readFile(path)
	if err != nil {
		return fmt.Errorf("cannot read %s: %w", path, unwrapPath(err))
	}
	return c.file(path, data, from)
}

// folder reads the files of a folder in name order, skipping the names
// xinetd's includedir skips: with a dot (editor and package manager
// leftovers such as .dpkg-old) or ending in '~'.
func (c *converter) folder(dir string, entries []fs.DirEntry, from Dialect) error {
	names := make([]string, 0, len(entries))
	for _, e := range entries {
		n := e.Name()
		if n == "" || strings.Contains(n, ".") || strings.HasSuffix(n, "~") || !e.Type().IsRegular() {
			continue
		}
		names = append(names, n)
	}
	slices.Sort(names)
	var errs []error
	for _, n := range names {
		p := filepath.Join(dir, n)
		data, err := c.readFile(p)
		if err != nil {
			errs = append(errs, fmt.Errorf("cannot read %s: %w", p, unwrapPath(err)))
			continue
		}
		if err := c.file(p, data, from); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// file converts one file's content, once: a file both named and
// included is read the first time only.
func (c *converter) file(path string, data []byte, from Dialect) error {
	key := path
	if abs, err := filepath.Abs(path); err == nil {
		key = abs
	}
	if c.seen[key] {
		return nil
	}
	c.seen[key] = true
	d := from
	if d == Detect {
		var ok bool
		if d, ok = DetectDialect(data); !ok {
			if hasContent(data) {
				return &ParseError{File: path, Err: ErrUnknownDialect}
			}
			d = dialectByName(path) // only comments: nothing to convert either way
		}
	}
	c.res.Inputs = append(c.res.Inputs, Input{Path: path, Dialect: d})
	if d == Xinetd {
		return c.xinetdFile(path, data)
	}
	c.res.Services = append(c.res.Services, parseInetd(path, data)...)
	return nil
}

// unwrapPath drops the *fs.PathError layer, whose path the caller's
// message already names.
func unwrapPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// finish makes names unique, settles services that would share a
// socket, and returns the Result.
func (c *converter) finish() *Result {
	c.res.Services = append(c.res.Services, c.x.services()...)
	c.res.General = append(c.res.General, c.x.general...)
	c.res.Notes = append(c.res.Notes, c.x.notes...)
	uniqueNames(c.res.Services)
	c.collisions()
	return c.res
}

// DetectDialect tells inetd.conf from xinetd configuration by content:
// xinetd's when a line starts with service, defaults, include or
// includedir, or is a lone brace; inetd's when a line (or an
// update-inetd "#<off>#" line) has a socket type in its second field,
// or is a "host:" line. ok is false when no line decides.
func DetectDialect(data []byte) (d Dialect, ok bool) {
	inetd := false
	for _, raw := range strings.Split(string(data), "\n") {
		line := strings.TrimSpace(raw)
		if rest, off := strings.CutPrefix(line, offPrefix); off {
			if looksInetd(strings.Fields(rest)) {
				inetd = true
			}
			continue
		}
		if line == "" || line[0] == '#' {
			continue
		}
		f := strings.Fields(line)
		switch {
		case line == "{" || line == "}":
			return Xinetd, true
		case f[0] == "defaults" && len(f) == 1, (f[0] == "service" || f[0] == "include" || f[0] == "includedir") && len(f) == 2:
			return Xinetd, true
		case looksInetd(f), len(f) == 1 && strings.HasSuffix(f[0], ":"):
			inetd = true
		}
	}
	return Inetd, inetd
}

// looksInetd reports whether fields have the shape of an inetd entry.
func looksInetd(f []string) bool {
	return len(f) >= 6 && slices.Contains([]string{"stream", "dgram", "raw", "rdm", "seqpacket"}, f[1])
}

// hasContent reports whether data has a line that is neither blank nor
// a comment.
func hasContent(data []byte) bool {
	for _, raw := range strings.Split(string(data), "\n") {
		if l := strings.TrimSpace(raw); l != "" && l[0] != '#' {
			return true
		}
	}
	return false
}

// dialectByName guesses from a path: xinetd for xinetd.conf and files
// under a folder named xinetd.d, inetd otherwise.
func dialectByName(path string) Dialect {
	if filepath.Base(path) == "xinetd.conf" || filepath.Base(filepath.Dir(path)) == "xinetd.d" {
		return Xinetd
	}
	return Inetd
}
