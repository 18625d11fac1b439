package legacy

import (
	"errors"
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"strings"
)

// xAttr is one attribute line of an xinetd entry.
type xAttr struct {
	name   string   // as written
	op     string   // "=", "+=" or "-="
	values []string // the words after the operator
	file   string
	line   int
	inDefs bool // written in the defaults entry
}

// source is "file:line".
func (a *xAttr) source() string { return fmt.Sprintf("%s:%d", a.file, a.line) }

// text is the attribute as a person would write it.
func (a *xAttr) text() string {
	t := strings.TrimSpace(a.name + " " + a.op + " " + strings.Join(a.values, " "))
	if a.inDefs {
		t += " (in defaults)"
	}
	return t
}

// slot is the attribute an xinetd attribute name sets: interface is bind.
func slot(name string) string {
	if name == "interface" {
		return "bind"
	}
	return name
}

// attrSpec says where an attribute may be written and how many values
// it takes, from the tables of xinetd's parse.c.
type attrSpec struct {
	n        int  // the number of values it takes; -1 for any
	service  bool // allowed in a service entry
	defaults bool // allowed in the defaults entry
	list     bool // a list that += and -= change (xinetd's "modifiable")
}

// xinetdAttrs is xinetd's table of attributes.
func xinetdAttrs() map[string]attrSpec {
	svc := func(n int) attrSpec { return attrSpec{n: n, service: true} }
	both := func(n int) attrSpec { return attrSpec{n: n, service: true, defaults: true} }
	list := attrSpec{n: -1, service: true, defaults: true, list: true}
	return map[string]attrSpec{
		"socket_type": svc(1), "protocol": svc(1), "wait": svc(1), "user": svc(1), "group": svc(1),
		"server": svc(1), "server_args": svc(-1), "instances": both(1),
		"log_on_success": list, "log_on_failure": list, "log_type": both(-1),
		"only_from": list, "no_access": list, "access_times": svc(-1), "type": svc(-1),
		"rpc_version": svc(1), "rpc_number": svc(1), "id": svc(1),
		"env": {n: -1, service: true, list: true}, "port": svc(1),
		"passenv": list, "flags": svc(-1), "nice": svc(1), "redirect": svc(2),
		"banner": both(1), "bind": both(1), "interface": both(1), "per_source": both(1),
		"groups": both(1), "banner_success": both(1), "banner_fail": both(1), "cps": both(2),
		"disable": svc(1), "max_load": both(1),
		"rlimit_as": svc(1), "rlimit_cpu": svc(1), "rlimit_data": svc(1), "rlimit_rss": svc(1), "rlimit_stack": svc(1),
		"v6only": both(1), "deny_time": svc(1), "umask": both(1), "mdns": both(1), "libwrap": svc(1),
		"disabled": {n: -1, defaults: true, list: true}, "enabled": {n: -1, defaults: true, list: true},
	}
}

// xList is a list attribute's value: set tells "only_from =" (an empty
// list, which means nobody) from no only_from at all.
type xList struct {
	set    bool
	values []xVal
	by     *xAttr // the line that changed it last
}

// xVal is one word of a list, with the line it comes from.
type xVal struct {
	v   string
	src *xAttr
}

// section is the attributes of one entry, or of defaults, as xinetd
// would hold them: the first setting of a plain attribute wins, lists
// grow and shrink with += and -=.
type section struct {
	scalars map[string]*xAttr // by slot
	lists   map[string]*xList
	notes   []NotConverted // settings xinetd ignores, for the service's comments
}

func newSection() *section {
	return &section{scalars: map[string]*xAttr{}, lists: map[string]*xList{}}
}

// xEntry is one service entry.
type xEntry struct {
	file, name string
	line       int
	sec        *section
	broken     *NotConverted // a line xinetd cannot read: it skips the entry
}

// xinetdState is what every xinetd file read so far adds up to.
type xinetdState struct {
	defs    *section
	entries []*xEntry
	general []NotConverted
	notes   []string // about defaults, for the top of the output
}

func newXinetdState() *xinetdState { return &xinetdState{defs: newSection()} }

// filled are the attributes a service starts with, copied from defaults
// as they stand when the service is read (xinetd's fill_attribute).
func filled() []string {
	return []string{"log_on_success", "log_on_failure", "only_from", "no_access", "passenv"}
}

// inherited are the plain attributes a service takes from defaults when
// it sets none (xinetd's service_fill, and fill_attribute for the
// banners and access_times).
func inherited() []string {
	return []string{"instances", "umask", "per_source", "groups", "cps", "max_load", "bind", "v6only",
		"log_type", "mdns", "banner", "banner_success", "banner_fail", "access_times"}
}

// xinetdFile reads one xinetd file, and what it includes, into c.x.
// xinetd's grammar (parse.c, parsesup.c): lines whose first non-blank
// character is '#' are comments, and blank lines are skipped; an entry
// is "service NAME" or "defaults", then a line holding only "{", then
// attribute lines "name op value...", then a line holding only "}";
// "include FILE" and "includedir DIR" stand alone. Words are separated
// by spaces and tabs; '#' inside a line is an ordinary character.
func (c *converter) xinetdFile(file string, data []byte) error {
	lines := strings.Split(string(data), "\n")
	for i := 0; i < len(lines); i++ {
		n, line := i+1, strings.TrimSuffix(lines[i], "\r")
		if skipLine(line) {
			continue
		}
		f := words(line)
		perr := func(format string, args ...any) error {
			return &ParseError{File: file, Line: n, Err: fmt.Errorf(format, args...)}
		}
		switch f[0] {
		case "include", "includedir":
			if len(f) < 2 {
				return perr("%s needs a path", f[0])
			}
			if err := c.xinetdInclude(f[0], f[1], file, n); err != nil {
				return err
			}
			continue
		case "service":
			if len(f) < 2 {
				return perr("service needs a name")
			}
		case "defaults":
		default:
			return perr("expected service, defaults, include or includedir, not %q", f[0])
		}
		// The opening brace, alone on the next line that counts.
		for i++; i < len(lines) && skipLine(lines[i]); i++ {
		}
		if i >= len(lines) || !onlyChar(lines[i], '{') {
			return perr("%s: '{' must follow, alone on a line", strings.Join(f[:min(2, len(f))], " "))
		}
		e := &xEntry{file: file, line: n, sec: newSection()}
		if f[0] == "defaults" {
			e.sec = c.x.defs // every defaults entry adds to the same defaults
		} else {
			e.name = f[1]
			for _, k := range filled() {
				if l, ok := c.x.defs.lists[k]; ok {
					e.sec.lists[k] = &xList{set: l.set, values: slices.Clone(l.values)}
				}
			}
		}
		closed := false
		for i++; i < len(lines); i++ {
			line := strings.TrimSuffix(lines[i], "\r")
			if skipLine(line) {
				continue
			}
			if onlyChar(line, '}') {
				closed = true
				break
			}
			if e.broken != nil {
				continue // xinetd skips to the closing brace
			}
			a, err := parseAttr(line)
			if err != nil {
				e.broken = &NotConverted{Source: fmt.Sprintf("%s:%d", file, i+1), Original: strings.TrimSpace(line),
					Why: err.Error() + ": xinetd skips the whole entry"}
				continue
			}
			a.file, a.line, a.inDefs = file, i+1, f[0] == "defaults"
			e.sec.apply(a, f[0] == "defaults")
		}
		if !closed {
			return perr("%s is not closed by a line holding only '}'", strings.Join(f[:min(2, len(f))], " "))
		}
		if f[0] == "defaults" {
			if e.broken != nil {
				c.x.general = append(c.x.general, *e.broken)
			}
			continue
		}
		c.x.entries = append(c.x.entries, e)
	}
	return nil
}

// skipLine reports a blank or comment line.
func skipLine(line string) bool {
	t := strings.TrimLeft(line, " \t\r\v\f")
	return t == "" || t[0] == '#'
}

// onlyChar reports whether line holds ch and white space alone.
func onlyChar(line string, ch byte) bool {
	return strings.Trim(line, " \t\r\v\f") == string(ch)
}

// parseAttr reads "name op value...": the name ends at white space,
// which must come before the operator, as xinetd requires.
func parseAttr(line string) (*xAttr, error) {
	t := strings.TrimLeft(line, " \t")
	end := strings.IndexAny(t, " \t=")
	switch {
	case end < 0:
		return nil, fmt.Errorf("nothing after attribute %s", t)
	case t[end] == '=':
		return nil, fmt.Errorf("attribute %s needs a space before its operator", t[:end])
	}
	name := t[:end]
	rest := strings.TrimLeft(t[end:], " \t")
	var op string
	switch {
	case strings.HasPrefix(rest, "+="), strings.HasPrefix(rest, "-="):
		op = rest[:2]
	case strings.HasPrefix(rest, "="):
		op = "="
	case rest == "":
		return nil, fmt.Errorf("nothing after attribute %s", name)
	default:
		return nil, fmt.Errorf("bad operator for attribute %s", name)
	}
	return &xAttr{name: name, op: op, values: words(rest[len(op):])}, nil
}

// apply adds one attribute to the section as xinetd's
// identify_attribute does; what xinetd ignores becomes a note.
func (s *section) apply(a *xAttr, defaults bool) {
	spec, ok := xinetdAttrs()[a.name]
	ignored := func(why string) {
		s.notes = append(s.notes, NotConverted{Source: a.source(), Original: a.text(), Why: why})
	}
	switch {
	case !ok:
		ignored("xinetd does not know this attribute either, and ignores it")
		return
	case defaults && !spec.defaults:
		ignored("xinetd does not take it in defaults, and ignores it")
		return
	case !defaults && !spec.service:
		ignored("xinetd takes it only in defaults, and ignores it here")
		return
	}
	if !spec.list {
		k := slot(a.name)
		switch {
		case s.scalars[k] != nil:
			ignored("set before: xinetd keeps the first setting")
		case a.op != "=":
			ignored(fmt.Sprintf("xinetd does not take %s for it, and ignores the line", a.op))
		case spec.n > 0 && len(a.values) != spec.n:
			ignored(fmt.Sprintf("it takes %d value(s): xinetd ignores the line", spec.n))
		default:
			s.scalars[k] = a
		}
		return
	}
	l := s.lists[a.name]
	if l == nil {
		l = &xList{}
		s.lists[a.name] = l
	}
	l.by = a
	op := a.op
	if defaults && op == "=" {
		op = "+=" // in defaults, = adds, as xinetd has it
	}
	switch op {
	case "=":
		l.values = nil
		fallthrough
	case "+=":
		l.set = true
		for _, v := range a.values {
			if !slices.ContainsFunc(l.values, func(x xVal) bool { return x.v == v }) || a.name == "env" {
				l.values = append(l.values, xVal{v, a})
			}
		}
	case "-=":
		l.set = true
		l.values = slices.DeleteFunc(l.values, func(x xVal) bool {
			return slices.ContainsFunc(a.values, func(v string) bool { return sameAddr(a.name, x.v, v) })
		})
	}
}

// sameAddr compares two list words: addresses by what they match, other
// words as written.
func sameAddr(attr, a, b string) bool {
	if a == b {
		return true
	}
	if attr != "only_from" && attr != "no_access" {
		return false
	}
	pa, okA := xinetdAddr(a)
	pb, okB := xinetdAddr(b)
	return okA && okB && slices.Equal(pa, pb)
}

// xinetdInclude reads an include or includedir line.
func (c *converter) xinetdInclude(kind, path, file string, line int) error {
	if kind == "include" {
		data, err := c.readFile(path)
		if err != nil {
			return &ParseError{File: file, Line: line, Err: fmt.Errorf("cannot read included file %s: %w", path, unwrapPath(err))}
		}
		return c.file(path, data, Xinetd)
	}
	entries, err := c.readDir(path)
	if err != nil {
		return &ParseError{File: file, Line: line, Err: fmt.Errorf("cannot read included folder %s: %w", path, unwrapPath(err))}
	}
	return c.folder(path, entries, Xinetd)
}

// services converts every service entry read, once all files are in:
// some defaults apply only then, as in xinetd.
func (x *xinetdState) services() []*Service {
	x.general = append(x.general, x.defaultsNotConverted()...)
	var out []*Service
	for _, e := range x.entries {
		out = append(out, x.service(e))
	}
	return out
}

// xinetdDefaultsNotes lists what defaults holds that no service can
// take: the settings that apply to every service are written at each
// service instead.
func (x *xinetdState) defaultsNotConverted() []NotConverted {
	for _, k := range []string{"log_on_success", "log_on_failure"} {
		if l := x.defs.lists[k]; l != nil && len(l.values) > 0 {
			var ws []string
			for _, v := range l.values {
				ws = append(ws, v.v)
			}
			x.notes = append(x.notes, fmt.Sprintf("%s %s (in defaults, %s): superd always logs each connection (client address and port, pid) and each exit (status, duration)", k, strings.Join(ws, " "), l.by.source()))
		}
	}
	out := slices.Clone(x.defs.notes)
	for _, k := range []string{"log_type", "mdns"} {
		if a := x.defs.scalars[k]; a != nil {
			out = append(out, NotConverted{Source: a.source(), Original: a.text(),
				Why: "superd logs to its own log ([superd] log and syslog_facility), for every service"})
		}
	}
	return out
}

// errDisabled marks a value xinetd cannot parse: it disables the
// service.
var errDisabled = errors.New("xinetd cannot parse this value, and disables the service")

// service converts one entry.
func (x *xinetdState) service(e *xEntry) *Service {
	sec := e.sec
	for _, k := range inherited() {
		if sec.scalars[k] == nil && x.defs.scalars[k] != nil {
			sec.scalars[k] = x.defs.scalars[k]
		}
	}
	id := e.name
	if a := sec.scalars["id"]; a != nil {
		id = a.values[0]
	}
	s := &Service{Source: fmt.Sprintf("%s:%d", e.file, e.line), base: serviceName(id), raw: "service " + e.name}
	s.Origin = "xinetd service " + e.name
	if id != e.name {
		s.Origin += " (id " + id + ")"
	}
	b := &xBuild{s: s, sec: sec, e: e, id: id, defs: x.defs}
	b.build()
	for _, n := range sec.notes {
		s.note("%s: ignored, as xinetd ignores it (%s)", n.Original, n.Why)
	}
	// In file order: what defaults (another file) gave first, then the
	// entry's own lines.
	slices.SortStableFunc(s.NotConverted, func(a, b NotConverted) int {
		fa, la := splitSource(a.Source)
		fb, lb := splitSource(b.Source)
		if (fa == e.file) != (fb == e.file) {
			if fa == e.file {
				return 1
			}
			return -1
		}
		return la - lb
	})
	return s
}

// splitSource splits "file:line".
func splitSource(src string) (file string, line int) {
	i := strings.LastIndexByte(src, ':')
	if i < 0 {
		return src, 0
	}
	n, err := atoiStrict(src[i+1:])
	if err != nil {
		return src, 0
	}
	return src[:i], n
}

// xBuild holds one service's conversion.
type xBuild struct {
	s    *Service
	sec  *section
	e    *xEntry
	id   string
	defs *section

	types, flags map[string]bool
	builtin      bool
	unneeded     []string // settings a built-in does not need, for its note
}

// attr returns a plain attribute, nil when unset.
func (b *xBuild) attr(name string) *xAttr { return b.sec.scalars[name] }

// value returns the first value of a plain attribute.
func (b *xBuild) value(name string) (string, *xAttr) {
	a := b.attr(name)
	if a == nil || len(a.values) == 0 {
		return "", a
	}
	return a.values[0], a
}

// bad reports a value xinetd cannot parse: xinetd disables the service.
func (b *xBuild) bad(a *xAttr, why string) {
	b.s.lose(a.source(), a.text(), why+": "+errDisabled.Error())
	b.s.set("disabled", true)
}

// skip marks the whole service not converted.
func (b *xBuild) skip(a *xAttr, why string) {
	src, orig := b.s.Source, "service "+b.e.name
	if a != nil {
		src, orig = a.source(), a.text()+" (service "+b.e.name+")"
	}
	b.s.skip(src, orig, why)
}

// build converts the service's attributes, in the order that lets the
// ones that decide everything (type, flags, socket) go first.
func (b *xBuild) build() {
	s := b.s
	if b.e.broken != nil {
		s.skip(b.e.broken.Source, b.e.broken.Original, b.e.broken.Why)
		return
	}
	if !b.kinds() || !b.socket() {
		return
	}
	b.disabled()
	if b.builtin {
		s.set("builtin", b.e.name)
	} else if !b.handler() {
		return
	}
	b.limits()
	b.access()
	b.environment()
	b.process()
	b.logging()
	b.rest()
	if b.builtin && len(b.unneeded) > 0 {
		s.note("%s: not needed, superd serves the built-in itself, with no process or user of its own", strings.Join(b.unneeded, ", "))
	}
}

// kinds reads type and flags; false when the service cannot be
// converted.
func (b *xBuild) kinds() bool {
	b.types, b.flags = map[string]bool{}, map[string]bool{}
	known := map[string][]string{
		"type":  {"RPC", "INTERNAL", "UNLISTED", "SPECIAL", "TCPMUX", "TCPMUXPLUS"},
		"flags": {"REUSE", "INTERCEPT", "NORETRY", "IDONLY", "NAMEINARGS", "NODELAY", "KEEPALIVE", "NOLIBWRAP", "SENSOR", "IPv4", "IPv6", "LABELED"},
	}
	for _, k := range []string{"type", "flags"} {
		a := b.attr(k)
		if a == nil {
			continue
		}
		set := b.types
		if k == "flags" {
			set = b.flags
		}
		for _, v := range a.values {
			if !slices.Contains(known[k], v) {
				b.bad(a, fmt.Sprintf("%q is not a %s xinetd knows", v, k))
				continue
			}
			set[v] = true
		}
	}
	t, f := b.attr("type"), b.attr("flags")
	switch {
	case b.types["RPC"]:
		b.skip(t, "superd does not serve Sun RPC (portmapper) services")
	case b.types["TCPMUX"] || b.types["TCPMUXPLUS"]:
		b.skip(t, "superd has no TCPMUX (RFC 1078) service: give the program a port of its own")
	case b.types["SPECIAL"]:
		b.skip(t, "xinetd's special services report on xinetd itself; superd has none (superd check lists the configuration)")
	case b.flags["SENSOR"]:
		b.skip(f, "superd has no sensor that adds clients to a global no_access list")
	case b.attr("redirect") != nil:
		b.skip(b.attr("redirect"), "superd does not forward connections to another host")
	case b.flags["IPv4"] && b.flags["IPv6"]:
		b.skip(f, "xinetd refuses a service that is both IPv4 and IPv6")
	case b.types["INTERNAL"] && (b.e.name == "servers" || b.e.name == "services" || b.e.name == "xadmin"):
		b.skip(t, fmt.Sprintf("xinetd's internal %s reports on xinetd itself; superd has no such service (superd check lists the configuration)", b.e.name))
	case b.types["INTERNAL"] && !slices.Contains(builtins(), b.e.name):
		b.skip(t, fmt.Sprintf("superd has no built-in %q: its built-ins are %s", b.e.name, strings.Join(builtins(), ", ")))
	default:
		b.builtin = b.types["INTERNAL"]
		return true
	}
	return false
}

// disabled reads disable and defaults' disabled and enabled lists.
func (b *xBuild) disabled() {
	s := b.s
	if v, a := b.value("disable"); a != nil {
		switch v {
		case "yes":
			s.set("disabled", true)
		case "no":
		default:
			b.bad(a, fmt.Sprintf("%q is neither yes nor no", v))
		}
	}
	if l := b.defs.lists["disabled"]; l != nil {
		if i := slices.IndexFunc(l.values, func(x xVal) bool { return x.v == b.id }); i >= 0 {
			s.set("disabled", true)
			s.note("disabled: defaults lists it in disabled (%s)", l.values[i].src.source())
		}
	}
	if l := b.defs.lists["enabled"]; l != nil && l.set {
		if !slices.ContainsFunc(l.values, func(x xVal) bool { return x.v == b.id }) {
			s.set("disabled", true)
			s.note("disabled: defaults has an enabled list without %s", b.id)
		}
	}
}

// socket reads socket_type, protocol, wait, port, flags, bind and
// v6only; false when the service cannot be converted.
func (b *xBuild) socket() bool {
	s := b.s
	st, sta := b.value("socket_type")
	proto, pa := b.value("protocol")
	switch {
	case sta != nil && st != "stream" && st != "dgram":
		b.skip(sta, "superd serves stream and dgram sockets only")
		return false
	case pa != nil && proto != "tcp" && proto != "udp":
		b.skip(pa, "superd serves tcp and udp only")
		return false
	case sta == nil && pa == nil:
		b.skip(nil, "it has neither socket_type nor protocol: xinetd refuses it")
		return false
	case sta == nil:
		st = map[string]string{"tcp": "stream", "udp": "dgram"}[proto]
	case pa == nil:
		proto = map[string]string{"stream": "tcp", "dgram": "udp"}[st]
	case (st == "stream") != (proto == "tcp"):
		b.skip(sta, fmt.Sprintf("socket type %s does not go with protocol %s", st, proto))
		return false
	}
	s.suffix[0] = st
	wait, wa := b.value("wait")
	switch {
	case wa == nil:
		b.skip(nil, "it has no wait: xinetd refuses it")
		return false
	case wait != "yes" && wait != "no":
		b.skip(wa, fmt.Sprintf("%q is neither yes nor no: xinetd refuses the service", wait))
		return false
	case b.builtin:
		b.unneeded = append(b.unneeded, wa.text())
	case wait == "yes":
		s.set("wait", true)
	case st == "dgram":
		s.set("wait", true)
		s.lose(wa.source(), wa.text(), "superd serves datagram sockets in wait mode only: the handler gets the socket, and superd waits for it to exit before it watches the socket again")
	}
	if !b.port(proto) {
		return false
	}
	return b.family(proto)
}

// port sets port: the port attribute, or the service name, which
// xinetd looks up in /etc/services (as superd does).
func (b *xBuild) port(proto string) bool {
	v, a := b.value("port")
	port := any(b.e.name)
	switch {
	case a != nil:
		n, err := atoiStrict(v)
		if err != nil || n < 1 || n > 65535 {
			b.skip(a, "not a port number 1..65535")
			return false
		}
		port = n
	case b.types["UNLISTED"]:
		b.skip(b.attr("type"), "an UNLISTED service needs a port: xinetd refuses it")
		return false
	}
	b.s.set("port", port)
	b.s.listen = &listenID{transport: proto, port: fmt.Sprint(port)}
	return true
}

// family sets protocol and address from flags, bind and v6only.
// xinetd listens on IPv4 alone unless flags say IPv6 or bind is an IPv6
// address; an IPv6 socket takes IPv4 too unless v6only = yes.
func (b *xBuild) family(proto string) bool {
	s := b.s
	host, ba := b.value("bind")
	v6only, va := b.value("v6only")
	if va != nil && v6only != "yes" && v6only != "no" {
		b.bad(va, fmt.Sprintf("%q is neither yes nor no", v6only))
	}
	fam := ""
	switch {
	case b.flags["IPv6"]:
		fam = "6"
	case b.flags["IPv4"]:
		fam = "4"
	}
	addr, hostOK := parseHost(host, fam)
	switch {
	case ba == nil:
	case !hostOK:
		s.lose(ba.source(), ba.text(), "superd binds IP addresses, not host names: set address to the address the name stands for")
		s.disable("the service is converted disabled, since it would listen on every address")
	case fam == "" && addr.Is6():
		fam = "6"
	case fam == "6" && addr.Is4(), fam == "4" && addr.Is6():
		b.skip(ba, fmt.Sprintf("address %s does not go with flags IPv%s", host, fam))
		return false
	}
	if ba != nil && host == "localhost" && hostOK {
		s.note("bind = localhost is taken as %s: superd binds IP addresses, not names", addr)
	}
	if fam == "" {
		fam = "4"
	}
	id := s.listen
	switch {
	case hostOK && ba != nil && !addr.IsUnspecified():
		s.set("address", addr.String())
		s.set("protocol", proto+fam)
		id.addr, id.family = addr, fam
		s.suffix[2] = serviceName(addr.String())
	case fam == "6" && v6only != "yes":
		s.set("protocol", proto) // one socket for IPv6 and IPv4
	default:
		s.set("protocol", proto+fam)
		id.family = fam
	}
	s.suffix[1] = fmt.Sprint(s.get("protocol"))
	return true
}

// handler reads user, group, server, server_args and NAMEINARGS; false
// when the service cannot be converted.
func (b *xBuild) handler() bool {
	s := b.s
	server, sa := b.value("server")
	user, ua := b.value("user")
	switch {
	case sa == nil:
		b.skip(nil, "it has no server: xinetd refuses it")
		return false
	case ua == nil:
		b.skip(nil, "it has no user: xinetd refuses it")
		return false
	case !filepath.IsAbs(server):
		b.skip(sa, "the server must be an absolute path")
		return false
	}
	s.set("path", server)
	s.set("user", user)
	if g, ga := b.value("group"); ga != nil {
		s.set("group", g)
	}
	args := []string(nil)
	if a := b.attr("server_args"); a != nil {
		args = a.values
	}
	if b.flags["NAMEINARGS"] {
		if len(args) == 0 {
			b.skip(b.attr("flags"), "NAMEINARGS needs server_args: xinetd refuses it")
			return false
		}
		if args[0] != filepath.Base(server) {
			s.set("argv0", args[0])
		}
		args = args[1:]
		if filepath.Base(server) == "tcpd" {
			s.note("tcpd runs %s and checks /etc/hosts.allow and /etc/hosts.deny first; superd's only_from and no_access can do the address checks instead", s.get("argv0"))
		}
	}
	if len(args) > 0 {
		s.set("args", slices.Clone(args))
	}
	if !validUTF8(append([]string{server, user}, args...)...) {
		b.skip(sa, "it holds bytes that are not UTF-8, which a TOML file cannot hold")
		return false
	}
	return true
}

// limits reads instances, per_source and cps.
func (b *xBuild) limits() {
	s := b.s
	if v, a := b.value("instances"); a != nil {
		n, err := atoiStrict(v)
		switch {
		case v == "UNLIMITED":
			s.note("%s: superd's default, instances = 256, applies; set instances if the service needs more at once", a.text())
		case err != nil || n < 0:
			b.bad(a, "not a number or UNLIMITED")
		case n == 0:
			s.lose(a.source(), a.text(), "xinetd starts no handler at all; superd needs at least 1")
			s.disable("the service is converted disabled")
		default:
			s.set("instances", n)
		}
	}
	if v, a := b.value("per_source"); a != nil {
		n, err := atoiStrict(v)
		switch {
		case v == "UNLIMITED":
		case err != nil || n < 0:
			b.bad(a, "not a number or UNLIMITED")
		case n == 0:
			s.lose(a.source(), a.text(), "xinetd serves no client at all; superd's per_source = 0 means no limit")
			s.disable("the service is converted disabled")
		default:
			s.set("per_source", n)
		}
	}
	if a := b.attr("cps"); a != nil {
		n, err1 := atoiStrict(a.values[0])
		w, err2 := atoiStrict(a.values[1])
		switch {
		case err1 != nil || err2 != nil || n < 0 || w < 0:
			b.bad(a, "cps takes two numbers")
		case n == 0:
			s.note("%s: no rate, as in xinetd", a.text())
		default:
			s.set("rate", float64(n))
			s.note("%s: rate = %d; past it xinetd turns the service off for %d seconds, superd makes clients wait in the listen backlog instead", a.text(), n, w)
		}
	}
}

// access reads only_from and no_access.
func (b *xBuild) access() {
	s := b.s
	var lists [2][]string
	var prefixes [2][]prefixOf
	for i, k := range []string{"only_from", "no_access"} {
		l := b.sec.lists[k]
		if l == nil || !l.set {
			continue
		}
		lost := false
		for _, v := range l.values {
			ps, ok := xinetdAddr(v.v)
			if !ok {
				s.lose(v.src.source(), k+" "+v.v, "superd matches IP addresses and CIDR prefixes, not host names, domains or network names")
				lost = true
				continue
			}
			for _, p := range ps {
				if !slices.Contains(lists[i], p) {
					lists[i] = append(lists[i], p)
					prefixes[i] = append(prefixes[i], prefixOf{p, v.src})
				}
			}
		}
		switch {
		case k == "only_from" && len(lists[i]) == 0 && !lost:
			s.lose(l.by.source(), l.by.text(), "an empty only_from lets nobody in; superd has no such list")
			s.disable("the service is converted disabled")
		case k == "only_from" && len(lists[i]) == 0:
			s.disable("the service is converted disabled, since without these entries only_from would let everyone in")
		case k == "no_access" && lost:
			s.disable("the service is converted disabled, since the clients this no_access kept out would get in")
		}
		if len(lists[i]) > 0 {
			s.set(k, lists[i])
		}
	}
	for _, o := range prefixes[0] {
		for _, n := range prefixes[1] {
			if morespecific(o.p, n.p) {
				s.lose(o.src.source(), "only_from "+o.p+" inside no_access "+n.p,
					"xinetd lets the more specific only_from entry win and serves "+o.p+"; superd's no_access always wins, so "+o.p+" is refused")
			}
		}
	}
}

// prefixOf is a converted address and the line it comes from.
type prefixOf struct {
	p   string
	src *xAttr
}

// environment reads env and passenv.
func (b *xBuild) environment() {
	s := b.s
	if l := b.sec.lists["env"]; l != nil {
		var env []Pair
		for _, v := range l.values {
			name, val, ok := strings.Cut(v.v, "=")
			switch {
			case b.builtin:
				b.unneeded = append(b.unneeded, "env "+v.v)
				continue
			case !ok:
				b.bad(v.src, fmt.Sprintf("%q has no '='", v.v))
				continue
			case !envName(name) || !validUTF8(val):
				s.lose(v.src.source(), "env "+v.v, "superd takes variable names of letters, digits and '_', not starting with a digit, and UTF-8 values")
				continue
			}
			env = slices.DeleteFunc(env, func(p Pair) bool { return p.Name == name })
			env = append(env, Pair{name, val})
		}
		if len(env) > 0 {
			s.set("env", env)
		}
	}
	if l := b.sec.lists["passenv"]; l != nil {
		var names []string
		for _, v := range l.values {
			switch {
			case b.builtin:
				b.unneeded = append(b.unneeded, "passenv "+v.v)
			case !envName(v.v):
				s.lose(v.src.source(), "passenv "+v.v, "superd takes variable names of letters, digits and '_', not starting with a digit")
			default:
				names = append(names, v.v)
			}
		}
		if len(names) > 0 {
			s.set("pass_env", names)
		}
	}
}

// process reads nice, umask, groups and the rlimit attributes.
func (b *xBuild) process() {
	s := b.s
	if b.builtin {
		for _, k := range []string{"user", "group", "server", "server_args", "nice", "umask", "groups", "rlimit_as", "rlimit_cpu", "rlimit_data", "rlimit_rss", "rlimit_stack"} {
			if a := b.attr(k); a != nil && !a.inDefs {
				b.unneeded = append(b.unneeded, a.text())
			}
		}
		return
	}
	if v, a := b.value("nice"); a != nil {
		n, err := atoiStrict(v)
		switch {
		case err != nil:
			b.bad(a, "not a number")
		case n < -20 || n > 19:
			s.lose(a.source(), a.text(), "superd takes a niceness from -20 to 19")
		default:
			s.set("nice", n)
		}
	}
	if v, a := b.value("umask"); a != nil {
		var n int
		if _, err := fmt.Sscanf(v, "%o", &n); err != nil || n < 0 || n > 0o777 || !isOctal(v) {
			b.bad(a, "not an octal umask")
		} else {
			s.set("umask", fmt.Sprintf("%03o", n))
		}
	}
	if v, a := b.value("groups"); a != nil {
		switch v {
		case "yes":
			s.note("%s: superd always gives the handler its user's supplementary groups", a.text())
		case "no":
			s.lose(a.source(), a.text(), "superd always gives the handler its user's supplementary groups (from the group database, as initgroups does); xinetd gave none")
		default:
			b.bad(a, fmt.Sprintf("%q is neither yes nor no", v))
		}
	}
	var limits []Pair
	for _, k := range []string{"rlimit_as", "rlimit_cpu", "rlimit_data", "rlimit_rss", "rlimit_stack"} {
		v, a := b.value(k)
		if a == nil {
			continue
		}
		lim, ok := rlimitValue(v, k == "rlimit_cpu")
		if !ok {
			b.bad(a, "not a limit")
			continue
		}
		limits = append(limits, Pair{strings.TrimPrefix(k, "rlimit_"), lim})
	}
	if len(limits) > 0 {
		s.set("limits", limits)
	}
}

// rlimitValue converts an xinetd limit: a number, with K or M (powers of
// 1024) for sizes, or UNLIMITED.
func rlimitValue(v string, seconds bool) (any, bool) {
	if v == "UNLIMITED" {
		return "unlimited", true
	}
	num, unit := v, ""
	if n := len(v); n > 1 && !seconds && strings.ContainsRune("kKmM", rune(v[n-1])) {
		num, unit = v[:n-1], strings.ToUpper(v[n-1:])
	}
	n, err := atoiStrict(num)
	if err != nil || n < 0 {
		return nil, false
	}
	if unit != "" {
		return fmt.Sprintf("%d%s", n, unit), true
	}
	return n, true
}

// logging reads log_type, log_on_success and log_on_failure.
func (b *xBuild) logging() {
	s := b.s
	if a := b.attr("log_type"); a != nil && !a.inDefs {
		if len(a.values) > 0 && a.values[0] == "FILE" {
			s.lose(a.source(), a.text(), "superd writes no log file of its own per service: every connection and exit goes to superd's log")
		} else {
			s.note("%s: superd logs every service to its own log ([superd] log and syslog_facility)", a.text())
		}
	}
	for _, k := range []string{"log_on_success", "log_on_failure"} {
		l := b.sec.lists[k]
		if l == nil || !l.set {
			continue
		}
		var words []string
		for _, v := range l.values {
			if v.src.inDefs && v.v != "USERID" && v.v != "TRAFFIC" {
				continue // said once, at the top
			}
			switch v.v {
			case "USERID":
				s.lose(v.src.source(), k+" USERID", "superd does not ask the client's ident server (RFC 1413)")
			case "TRAFFIC":
				s.lose(v.src.source(), k+" TRAFFIC", "superd does not count the bytes of a connection it hands to a handler")
			default:
				words = append(words, v.v)
			}
		}
		if len(words) > 0 {
			s.note("%s %s: superd always logs each connection (client address and port, pid) and each exit (status, duration)", k, strings.Join(words, " "))
		}
	}
}

// rest reads the attributes superd has no key for.
func (b *xBuild) rest() {
	s := b.s
	lost := map[string]string{
		"access_times":   "superd serves at any time of day",
		"banner":         "superd sends no banner",
		"banner_success": "superd sends no banner",
		"banner_fail":    "superd sends no banner",
		"max_load":       "superd does not refuse clients by load average",
		"deny_time":      "superd has no sensor, whose deny time this is",
		"libwrap":        "superd does not read /etc/hosts.allow and /etc/hosts.deny: use only_from and no_access",
	}
	for _, k := range slices.Sorted(maps.Keys(lost)) {
		if a := b.attr(k); a != nil {
			s.lose(a.source(), a.text(), lost[k])
		}
	}
	for _, k := range []string{"rpc_version", "rpc_number"} {
		if a := b.attr(k); a != nil {
			s.note("%s: ignored, as xinetd ignores it without type = RPC", a.text())
		}
	}
	if a := b.attr("mdns"); a != nil && !a.inDefs {
		s.note("%s: superd announces nothing over mDNS", a.text())
	}
	f := b.attr("flags")
	flagWhy := map[string]string{
		"INTERCEPT": "superd does not check the clients of a wait service",
		"NORETRY":   "superd retries a failed start on the next connection, as it always does",
		"IDONLY":    "superd does not ask the client's ident server (RFC 1413)",
		"NODELAY":   "superd does not set TCP_NODELAY on the connection: the handler can",
		"KEEPALIVE": "superd does not set SO_KEEPALIVE on the connection: the handler can",
		"LABELED":   "superd has no SELinux labeled networking",
	}
	for _, fl := range []string{"INTERCEPT", "NORETRY", "IDONLY", "NODELAY", "KEEPALIVE", "LABELED"} {
		if b.flags[fl] {
			s.lose(f.source(), "flags "+fl, flagWhy[fl])
			if fl == "IDONLY" {
				s.disable("the service is converted disabled, since clients without an ident server would get in")
			}
		}
	}
	for _, fl := range []string{"REUSE", "NOLIBWRAP"} {
		if b.flags[fl] {
			s.note("flags %s: superd always does that", fl)
		}
	}
}

// atoiStrict parses a decimal integer, refusing signs other than '-',
// spaces and overflow.
func atoiStrict(s string) (int, error) {
	if s == "" {
		return 0, errors.New("empty")
	}
	n, neg := 0, false
	for i, r := range s {
		switch {
		case i == 0 && r == '-' && len(s) > 1:
			neg = true
		case r >= '0' && r <= '9':
			if n > (1<<31)/10 {
				return 0, errors.New("too large")
			}
			n = n*10 + int(r-'0')
		default:
			return 0, fmt.Errorf("%q is not a number", s)
		}
	}
	if neg {
		n = -n
	}
	return n, nil
}

// isOctal reports whether s is made of octal digits.
func isOctal(s string) bool {
	for _, r := range s {
		if r < '0' || r > '7' {
			return false
		}
	}
	return s != ""
}
