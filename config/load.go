package config

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"unicode"
	"unicode/utf8"

	"github.com/BurntSushi/toml"
)

// Options says what Load needs to know about the process that will run
// the configuration. The zero value describes superd running as root.
type Options struct {
	// Euid is the effective uid superd runs as. When it is 0 every
	// handler must name its user and the files are checked for safe
	// ownership (see Perms); otherwise a handler may only run as Euid,
	// since superd could not switch to anyone else.
	Euid int
	// Perms selects the ownership and mode checks of the config files and
	// the handlers; the zero value checks when Euid is 0.
	Perms PermCheck
	// Host answers what Load asks the running system about a superd
	// that is not root (the ports it may bind, the groups it may give a
	// socket to and executes handlers with); the zero value asks the
	// real system.
	Host Host
}

// Load reads the configuration at path, and the files it includes, for
// the running process: Options{Euid: os.Geteuid()}.Load(path).
func Load(path string) (*Config, error) {
	return Options{Euid: os.Geteuid()}.Load(path)
}

// Load reads and validates the configuration at path and the files it
// includes. On success the *Config is complete: defaults applied, names
// resolved, services sorted by name. Otherwise the error joins (with
// errors.Join) one *Error per problem, in every file, in file and line
// order, and the *Config is nil.
//
// Policy worth knowing:
//   - [defaults] accepts every service key. A key from [defaults] that
//     does not apply to a service (socket_mode on tcp, port on unix, args
//     on a builtin, wait on a builtin) is ignored there, while the same
//     key in the service's own table is an error. Whether a service runs
//     path or builtin is decided by its own table when it sets either.
//   - include globs are read in the order written, each glob's matches
//     in lexical order; a glob matching nothing is fine; a file matched
//     twice, or the main file itself, is read once. Included files hold
//     only [services.*] tables and include nothing further.
//   - A script handler's #! lines are followed as the kernel follows
//     them, and an interpreter that cannot run is an error at path (see
//     shebang.go); a relative interpreter is found from working_dir. An
//     "env prog" whose prog is not on the handler's PATH is a warning.
//   - When Euid is not 0, an enabled tcp or udp service on a port below
//     net.ipv4.ip_unprivileged_port_start is an error unless superd has
//     CAP_NET_BIND_SERVICE, and socket_user and socket_group may only
//     name superd's own uid and groups unless it has CAP_CHOWN: `run`
//     could not bind or chown. These ask the process Load runs in (see
//     Host): `superd check` run by hand as that user, without the
//     capabilities its service manager grants, may refuse what `run`
//     would bind.
func (o Options) Load(path string) (*Config, error) {
	l := &loader{opts: o, rank: map[string]int{}, specKeys: specKeys(), host: o.Host.facts()}
	cfg := l.load(path)
	if len(l.errs) > 0 {
		errs := l.sorted(l.errs)
		if len(errs) > maxErrors {
			errs = append(errs[:maxErrors:maxErrors], moreErrors(len(errs)-maxErrors))
		}
		joined := make([]error, len(errs))
		for i, e := range errs {
			joined[i] = e
		}
		return nil, errors.Join(joined...)
	}
	cfg.Warnings = l.sorted(l.warns)
	return cfg, nil
}

// maxErrors is how many errors Load returns, the first in file and line
// order, before one that counts the rest. A configuration that has more
// is not one that a person is editing: it is a log file or a generated
// file gone wrong, and a hundred thousand messages would only bury the
// first ones (and make every reload log a line of megabytes).
const maxErrors = 100

// MoreErrors is the error that stands, last, for the errors Load left
// out: N of them.
type MoreErrors struct{ N int }

// Error says how many were left out.
func (e *MoreErrors) Error() string {
	if e.N == 1 {
		return "... and 1 more error"
	}
	return fmt.Sprintf("... and %d more errors", e.N)
}

// moreErrors is the last error when n errors are left out.
func moreErrors(n int) *Error { return &Error{Err: &MoreErrors{N: n}} }

// loader holds the state of one Load call.
type loader struct {
	opts  Options
	files []string
	// rank orders files for sorting errors: the order they were opened.
	rank  map[string]int
	errs  []*Error
	warns []*Error
	// names remembers user and group look-ups.
	names lookups
	// specKeys is the table of service keys, built once rather than
	// for each of thousands of keys.
	specKeys []named[func(keyIn) error]
	// handlers remembers what checkHandler found for each handler and
	// identity.
	handlers map[handlerKey][]error
	// scripts remembers what checkScript found for each handler, identity,
	// working folder and PATH.
	scripts map[scriptKey]scriptFindings
	// scriptMemo remembers what checkScript found about interpreters
	// and the programs env runs.
	scriptMemo *scriptMemo
	// host asks Options.Host each question once.
	host *hostFacts
}

// svcDef is one [services.NAME] table as written.
type svcDef struct {
	name string
	src  *source
	line int
	keys []setting
}

// load does the work of Load: every problem goes to l.errs, and the
// result only counts when there is none.
func (l *loader) load(path string) *Config {
	main, top := l.readFile(path)
	if main == nil {
		return nil
	}
	g := defaultGlobal()
	var incs []string
	defaults := newSpec()
	defs := map[string]*svcDef{}
	for _, s := range top {
		switch s.name {
		case "superd":
			incs = l.global(&g, s)
		case "defaults":
			l.defaults(defaults, s)
		default:
			l.topLevel(s, defs, true)
		}
	}
	l.includes(main, incs, defs)
	g.Files = slices.Clone(l.files)
	built := l.buildAll(defs, defaults)
	checkSockets(built)
	services := make([]*Service, len(built))
	for i, b := range built {
		services[i] = b.svc
	}
	return &Config{Global: g, Services: services}
}

// readFile reads and parses one file and returns its top-level keys; nil
// when the file cannot be read or parsed (the error is recorded).
func (l *loader) readFile(path string) (*source, []setting) {
	if _, ok := l.rank[path]; !ok {
		l.rank[path] = len(l.rank)
	}
	data, err := l.read(path)
	if err != nil {
		l.errs = append(l.errs, &Error{File: path, Err: err})
		return nil, nil
	}
	dir, err := filepath.Abs(filepath.Dir(path))
	if err != nil {
		l.errs = append(l.errs, &Error{File: path, Err: fmt.Errorf("cannot find its folder: %w", err)})
		return nil, nil
	}
	// The decoder's cost grows with the square of the nesting depth,
	// and with the number of keys: refuse what superd would refuse
	// anyway before it gets to work.
	lay := scanLayout(data)
	switch {
	case lay.deep > 0:
		l.errs = append(l.errs, &Error{File: path, Line: lay.deep, Err: errTooDeep})
		return nil, nil
	case lay.crowded > 0:
		l.errs = append(l.errs, &Error{File: path, Line: lay.crowded, Err: errTooMany})
		return nil, nil
	}
	// Decoded into an empty interface, the values are the decoder's own
	// maps and slices, taken as they are: the file is decoded once.
	var top map[string]any
	md, err := toml.Decode(string(data), &top)
	if err != nil {
		l.errs = append(l.errs, syntaxErr(path, err))
		return nil, nil
	}
	l.files = append(l.files, path)
	src := newSource(path, dir, &md, lay.lines)
	return src, src.settings(top)
}

// maxFileSize bounds a config file: anything bigger is a mistake (an
// include glob matching a log file, say), not a configuration. A file of
// maxNodes keys written one per line is about 2 MiB; this leaves room
// for comments.
const maxFileSize = 4 << 20

// read returns the contents of path. The ownership check is made on the
// open file, so the file checked is the file read.
func (l *loader) read(path string) ([]byte, error) {
	// A FIFO or a device matched by a glob could block or have effects
	// on open: look before opening, and open without blocking.
	if fi, err := os.Stat(path); err == nil && !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("not a regular file (%s)", fi.Mode().Type())
	}
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK|syscall.O_NOCTTY, 0)
	if err != nil {
		return nil, fmt.Errorf("cannot open: %w", unwrapPath(err))
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("cannot stat: %w", unwrapPath(err))
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("not a regular file (%s)", fi.Mode().Type())
	}
	if l.opts.checkPerms() {
		// The open file itself, then every folder and symlink on the
		// way to it (see unsafeConfig).
		for _, err := range unsafeConfig(path, f, fi) {
			l.errs = append(l.errs, &Error{File: path, Err: err})
		}
	}
	data, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("cannot read: %w", unwrapPath(err))
	}
	if len(data) > maxFileSize {
		return nil, fmt.Errorf("larger than %d MiB: not a configuration file", maxFileSize>>20)
	}
	return data, nil
}

// unwrapPath drops the *fs.PathError layer, whose path Error.File already
// shows.
func unwrapPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// syntaxError is a TOML syntax error; Error.Line already carries its line.
type syntaxError struct{ pe toml.ParseError }

// Error is the parser's message without its "toml: line N" prefix.
func (e *syntaxError) Error() string { return "toml syntax error: " + lowerFirst(e.pe.Message) }

// Unwrap gives errors.As access to the toml.ParseError.
func (e *syntaxError) Unwrap() error { return e.pe }

// syntaxErr places a toml.Decode error in path.
func syntaxErr(path string, err error) *Error {
	var pe toml.ParseError
	if errors.As(err, &pe) {
		return &Error{File: path, Line: pe.Position.Line, Err: &syntaxError{pe}}
	}
	return &Error{File: path, Err: fmt.Errorf("toml: %w", err)}
}

// lowerFirst lowercases "Key 'x' ..." so messages read alike; it leaves
// "TOML" and other all-caps words alone.
func lowerFirst(s string) string {
	r, n := utf8.DecodeRuneInString(s)
	next, _ := utf8.DecodeRuneInString(s[n:])
	if unicode.IsUpper(r) && !unicode.IsUpper(next) {
		return string(unicode.ToLower(r)) + s[n:]
	}
	return s
}

// settings turns the top-level keys of a file into settings, sorted by
// name.
func (src *source) settings(top map[string]any) []setting {
	out := make([]setting, 0, len(top))
	for _, name := range slices.Sorted(maps.Keys(top)) {
		out = append(out, setting{name: name, ekey: name, val: top[name], src: src})
	}
	return out
}

// topLevel handles a top-level key other than [superd] and [defaults]:
// [services] or a mistake.
func (l *loader) topLevel(s setting, defs map[string]*svcDef, main bool) {
	known := []string{"services"}
	if main {
		known = []string{"superd", "defaults", "services"}
	}
	switch {
	case s.name == "services":
		l.services(s, defs)
	case !main && (s.name == "superd" || s.name == "defaults"):
		l.errs = append(l.errs, s.errorf("", "[%s] belongs in the main file: included files hold only [services.NAME] tables", s.name))
	case isTable(s.val):
		l.errs = append(l.errs, s.err("", &unknownError{what: "table [" + s.name + "]", name: s.name, known: func() []string { return known }}))
	default:
		l.errs = append(l.errs, s.err("", &unknownError{what: "top-level key", name: s.name, known: func() []string { return known },
			rest: ": service keys go in a [services.NAME] table"}))
	}
}

// isTable reports whether a decoded TOML value is a table.
func isTable(v any) bool { _, ok := v.(map[string]any); return ok }

// services records the [services.NAME] tables of one file.
func (l *loader) services(s setting, defs map[string]*svcDef) {
	tables, err := s.table("services.")
	if err != nil {
		l.errs = append(l.errs, s.err("", err))
		return
	}
	for _, t := range tables {
		if def := l.serviceDef(t); def != nil {
			l.addDef(def, defs)
		}
	}
}

// serviceDef reads one [services.NAME] table; nil when it is unusable.
func (l *loader) serviceDef(t setting) *svcDef {
	fail := func(err error) *svcDef {
		l.errs = append(l.errs, &Error{File: t.src.path, Line: firstLine(t), Service: t.name, Err: err})
		return nil
	}
	if err := checkServiceName(t.name); err != nil {
		return fail(err)
	}
	keys, err := t.table("")
	if err != nil {
		return fail(fmt.Errorf("a service %w", err))
	}
	return &svcDef{name: t.name, src: t.src, line: firstLine(t), keys: keys}
}

// firstLine is the line of s's key, or, for an implicit table (the
// "services" of "[services.hello]"), the first line inside it.
func firstLine(s setting) int { return s.src.firstLine(s.key(), s.val) }

// firstLine returns the line of key, whose decoded value is val, or the
// first line inside it when it is an implicit table. It walks the decoded
// value rather than decoding the table again: an error on each of a
// hundred thousand implicit tables must not cost a decode each.
func (src *source) firstLine(key toml.Key, val any) int {
	if n := src.line(key); n > 0 {
		return n
	}
	m, ok := val.(map[string]any)
	if !ok {
		return 0
	}
	first := 0
	for name, v := range m {
		if n := src.firstLine(addKey(key, name), v); n > 0 && (first == 0 || n < first) {
			first = n
		}
	}
	return first
}

// addDef adds def unless another file already defines the service.
func (l *loader) addDef(def *svcDef, defs map[string]*svcDef) {
	if prev, dup := defs[def.name]; dup {
		l.errs = append(l.errs, &Error{File: def.src.path, Line: def.line, Service: def.name,
			Err: fmt.Errorf("defined twice: in %s and in %s", prev.src.path, def.src.path)})
		return
	}
	defs[def.name] = def
}

// checkServiceName keeps names usable in key=value log lines and in the
// SUPERD_SERVICE variable.
func checkServiceName(name string) error {
	if name == "" {
		return errors.New("service name must not be empty")
	}
	for _, r := range name {
		if !(r < utf8.RuneSelf && (r == '-' || r == '_' || r == '.' || unicode.IsLetter(r) || unicode.IsDigit(r))) {
			return fmt.Errorf("service name %q may only use ASCII letters, digits, '-', '_' and '.'", name)
		}
	}
	return nil
}

// defaults parses [defaults] once; services start from a copy of it.
func (l *loader) defaults(sp *spec, s setting) {
	s.fromDefaults = true
	keys, err := s.table("defaults.")
	if err != nil {
		l.errs = append(l.errs, s.err("", err))
		return
	}
	l.apply(sp, keys, "")
}

// includes reads the files that superd.include matches and records their
// services.
func (l *loader) includes(main *source, globs []string, defs map[string]*svcDef) {
	seen := map[string]bool{filepath.Join(main.dir, filepath.Base(main.path)): true}
	for _, pattern := range globs {
		if !filepath.IsAbs(pattern) {
			pattern = filepath.Join(filepath.Dir(main.path), pattern)
		}
		// The only error is ErrBadPattern, which global already reported.
		matches, _ := filepath.Glob(pattern)
		for _, m := range matches {
			abs, err := filepath.Abs(m)
			if err != nil || seen[abs] {
				continue
			}
			seen[abs] = true
			l.include(m, defs)
		}
	}
}

// include reads one included file.
func (l *loader) include(path string, defs map[string]*svcDef) {
	_, top := l.readFile(path)
	for _, s := range top {
		l.topLevel(s, defs, false)
	}
}

// buildAll builds every service, sorted by name.
func (l *loader) buildAll(defs map[string]*svcDef, defaults *spec) []*builder {
	out := make([]*builder, 0, len(defs))
	for _, name := range slices.Sorted(maps.Keys(defs)) {
		out = append(out, l.build(defs[name], defaults))
	}
	return out
}

// sorted orders errors by file (in the order the files were opened), then
// line, keeping the order of discovery otherwise.
func (l *loader) sorted(errs []*Error) []*Error {
	// Each file's rank is looked up once per error, not once per
	// comparison.
	type ranked struct {
		rank int
		e    *Error
	}
	s := make([]ranked, len(errs))
	for i, e := range errs {
		r, ok := l.rank[e.File]
		if !ok {
			r = len(l.rank)
		}
		s[i] = ranked{r, e}
	}
	slices.SortStableFunc(s, func(a, b ranked) int {
		return cmp.Or(cmp.Compare(a.rank, b.rank), cmp.Compare(a.e.Line, b.e.Line))
	})
	out := make([]*Error, len(s))
	for i, r := range s {
		out[i] = r.e
	}
	return out
}

// report records err, found in setting s of service (empty outside one).
// It splits joined errors, and keeps an *Error that already knows where
// it is (a nested key such as limits.nofile).
func (l *loader) report(s setting, service string, err error) {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		for _, e := range j.Unwrap() {
			l.report(s, service, e)
		}
		return
	}
	if e, ok := err.(*Error); ok {
		e.Service = service
		l.errs = append(l.errs, e)
		return
	}
	l.errs = append(l.errs, s.err(service, err))
}
