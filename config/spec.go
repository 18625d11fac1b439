package config

import (
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"math"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// spec holds the parsed keys of [defaults] or of one service, before the
// checks that need several keys at once. Every value is only meaningful
// when its key is in given and not in bad.
type spec struct {
	// given holds every key set, from [defaults] or the service's table:
	// pointers into the keys of the svcDef or of [defaults], which keeps
	// small the map that each of thousands of services copies and fills.
	given map[string]*setting
	// bad marks keys whose value was rejected (already reported), so
	// later checks skip them instead of piling up follow-on errors.
	bad map[string]bool

	builtin, typ, protocol, address string
	port                            portValue
	socketMode                      os.FileMode
	wait, disabled                  bool

	user  *account
	group *groupID

	socketUser  *account
	socketGroup *groupID

	path, argv0, workingDir, stderr string
	args, env, passEnv              []string

	instances, perSource, backlog, umask, nice int
	rate                                       float64
	timeout                                    time.Duration
	onlyFrom, noAccess                         []netip.Prefix
	rlimits                                    []Rlimit

	proxyProtocol, reusePort bool
	proxyFrom                []netip.Prefix
	proxyTimeout             time.Duration
}

// portValue is a port as written: a number, or a name to resolve once
// the protocol is known (the same name can differ between tcp and udp).
type portValue struct {
	num  int
	name string
}

func newSpec() *spec {
	return &spec{given: map[string]*setting{}, bad: map[string]bool{}}
}

// clone copies sp. Parsed slices are shared: they are replaced, never
// modified, and build copies them into the Service.
func (sp *spec) clone() *spec {
	c := *sp
	c.given = maps.Clone(sp.given)
	c.bad = maps.Clone(sp.bad)
	return &c
}

// has reports whether key is set to an accepted value.
func (sp *spec) has(key string) bool {
	_, ok := sp.given[key]
	return ok && !sp.bad[key]
}

// own reports whether key is written in the service's own table rather
// than inherited from [defaults].
func (sp *spec) own(key string) bool {
	s, ok := sp.given[key]
	return ok && !s.fromDefaults
}

// keyIn is one service key being parsed: the setting as written, the
// spec its value goes into, and the user and group look-ups of this Load.
type keyIn struct {
	setting
	*spec
	names *lookups
}

// specKeys is the table of the keys of a service table (and of
// [defaults]); its order is the order of the "did you mean" candidates.
// A parser looks at its one value only: build does the checks that
// involve several keys.
func specKeys() []named[func(keyIn) error] {
	return []named[func(keyIn) error]{
		{"builtin", func(k keyIn) (err error) { k.builtin, err = asOneOf(k.val, "builtin", builtins()...); return }},
		{"port", func(k keyIn) (err error) { k.port, err = parsePort(k.val); return }},
		{"type", func(k keyIn) (err error) { k.typ, err = asOneOf(k.val, "type", "stream", "dgram"); return }},
		{"protocol", func(k keyIn) (err error) { k.protocol, err = asOneOf(k.val, "protocol", protocols()...); return }},
		{"address", func(k keyIn) (err error) { k.address, err = parseNonEmpty(k.val, "address"); return }},
		{"socket_mode", func(k keyIn) error { m, err := parseOctal(k.val); k.socketMode = os.FileMode(m); return err }},
		{"socket_user", func(k keyIn) (err error) { k.socketUser, err = k.account(); return }},
		{"socket_group", func(k keyIn) (err error) { k.socketGroup, err = k.groupID(); return }},
		{"wait", func(k keyIn) (err error) { k.wait, err = asBool(k.val); return }},
		{"disabled", func(k keyIn) (err error) { k.disabled, err = asBool(k.val); return }},
		{"user", func(k keyIn) (err error) { k.user, err = cachedLookup(&k.names.users, k.val, lookupAccount); return }},
		{"group", func(k keyIn) (err error) { k.group, err = cachedLookup(&k.names.groups, k.val, lookupGroup); return }},
		{"path", func(k keyIn) (err error) { k.path, err = parseHandlerPath(k.val, k.src.dir); return }},
		{"args", func(k keyIn) (err error) { k.args, err = asStrings(k.val); return }},
		{"argv0", func(k keyIn) (err error) { k.argv0, err = parseNonEmpty(k.val, "argv0"); return }},
		{"env", func(k keyIn) (err error) { k.env, err = parseEnv(k.val); return }},
		{"pass_env", func(k keyIn) (err error) { k.passEnv, err = parsePassEnv(k.val); return }},
		{"working_dir", func(k keyIn) (err error) { k.workingDir, err = parseWorkingDir(k.val); return }},
		{"stderr", func(k keyIn) (err error) { k.stderr, err = asOneOf(k.val, "stderr", "log", "socket", "null"); return }},
		{"instances", func(k keyIn) (err error) { k.instances, err = asIntIn(k.val, "instances", 1, math.MaxInt32); return }},
		{"per_source", func(k keyIn) (err error) { k.perSource, err = asIntIn(k.val, "per_source", 0, math.MaxInt32); return }},
		{"rate", func(k keyIn) (err error) { k.rate, err = parseRate(k.val); return }},
		{"only_from", func(k keyIn) (err error) { k.onlyFrom, err = parsePrefixes(k.val, true); return }},
		{"no_access", func(k keyIn) (err error) { k.noAccess, err = parsePrefixes(k.val, false); return }},
		{"timeout", func(k keyIn) (err error) { k.timeout, err = asDuration(k.val, "timeout", MaxTimeout); return }},
		{"backlog", func(k keyIn) (err error) { k.backlog, err = asIntIn(k.val, "backlog", 0, 65535); return }},
		{"umask", func(k keyIn) (err error) { k.umask, err = parseOctal(k.val); return }},
		{"nice", func(k keyIn) (err error) { k.nice, err = asIntIn(k.val, "nice", -20, 19); return }},
		{"limits", func(k keyIn) (err error) { k.rlimits, err = parseLimits(k.setting); return }},
		{"proxy_protocol", func(k keyIn) (err error) { k.proxyProtocol, err = asBool(k.val); return }},
		{"proxy_from", func(k keyIn) (err error) { k.proxyFrom, err = parseProxyFrom(k.val); return }},
		{"proxy_timeout", func(k keyIn) (err error) {
			k.proxyTimeout, err = asDuration(k.val, "proxy_timeout", MaxProxyTimeout)
			if err == nil && k.proxyTimeout == 0 {
				err = errors.New("proxy_timeout must be longer than zero: a proxy that never sends its header would hold an instances slot forever")
			}
			return
		}},
		{"reuse_port", func(k keyIn) (err error) { k.reusePort, err = asBool(k.val); return }},
	}
}

// account resolves the key's value as a user, once per Load.
func (k keyIn) account() (*account, error) { return cachedLookup(&k.names.users, k.val, lookupAccount) }

// groupID resolves the key's value as a group, once per Load.
func (k keyIn) groupID() (*groupID, error) { return cachedLookup(&k.names.groups, k.val, lookupGroup) }

// serviceKeys lists every key of a service table (and of [defaults]).
func serviceKeys() []string { return keyNames(specKeys()) }

// builtins lists the in-process services, in the order error messages
// list them. (services/builtin.Names holds the same names; a test keeps
// both lists equal.)
func builtins() []string { return []string{"echo", "discard", "daytime", "chargen", "time"} }

// protocols lists the values of the protocol key.
func protocols() []string { return []string{"tcp", "tcp4", "tcp6", "udp", "udp4", "udp6", "unix"} }

// apply parses sets into sp, over what sp already holds (the defaults),
// each with its row of l.specKeys.
func (l *loader) apply(sp *spec, sets []setting, service string) {
	for i := range sets {
		s := &sets[i]
		parse, err := findKey(l.specKeys, s.name, "key")
		if err != nil {
			// An unknown key stays out of sp: every service clones
			// the defaults, and a [defaults] of many unknown keys
			// would be copied once per service.
			l.report(*s, service, err)
			continue
		}
		sp.given[s.name] = s
		delete(sp.bad, s.name)
		if err := parse(keyIn{*s, sp, &l.names}); err != nil {
			sp.bad[s.name] = true
			l.report(*s, service, err)
		}
	}
}

// lookups remembers the user and group look-ups of one Load: thousands
// of services may run as the same few users, and each look-up reads the
// user and group databases. A result is shared by every service naming
// the same value, which is safe because nothing modifies one; its error
// is never an *Error, which report would modify.
type lookups struct {
	users  map[dbKey]lookup[*account]
	groups map[dbKey]lookup[*groupID]
}

// dbKey is a user or group value as written: 7 and "7" are different
// values, which lookupAccount and lookupGroup may treat differently.
type dbKey struct {
	name  string
	num   int64
	isNum bool
}

// lookup is one remembered answer.
type lookup[T any] struct {
	val T
	err error
}

// cachedLookup returns look(v), remembered in *m. A value of any type
// but string or integer is not remembered: it is a mistake, and not
// comparable.
func cachedLookup[T any](m *map[dbKey]lookup[T], v any, look func(any) (T, error)) (T, error) {
	var k dbKey
	switch x := v.(type) {
	case string:
		k = dbKey{name: x}
	case int64:
		k = dbKey{num: x, isNum: true}
	default:
		return look(v)
	}
	if r, ok := (*m)[k]; ok {
		return r.val, r.err
	}
	if *m == nil {
		*m = map[dbKey]lookup[T]{}
	}
	val, err := look(v)
	(*m)[k] = lookup[T]{val, err}
	return val, err
}

// parsePort accepts 1..65535 or a name to look up later. A string of
// digits is looked up too: net.LookupPort parses numbers.
func parsePort(v any) (portValue, error) {
	switch x := v.(type) {
	case int64:
		if x < 1 || x > 65535 {
			return portValue{}, fmt.Errorf("port %d out of range 1..65535", x)
		}
		return portValue{num: int(x)}, nil
	case string:
		s, err := parseNonEmpty(x, "port")
		return portValue{name: s}, err
	}
	return portValue{}, fmt.Errorf("must be a number 1..65535 or a name from /etc/services, not %s", typeName(v))
}

// parseNonEmpty accepts any string but "".
func parseNonEmpty(v any, what string) (string, error) {
	s, err := asString(v)
	if err == nil && s == "" {
		err = fmt.Errorf("%s must not be empty", what)
	}
	return s, err
}

// parseOctal accepts a mode written as an octal string ("0660", "022").
// A TOML integer is refused on purpose: 660 would silently mean 01224.
func parseOctal(v any) (int, error) {
	s, ok := v.(string)
	if !ok {
		return 0, fmt.Errorf("must be an octal string such as \"0660\", not %s", typeName(v))
	}
	n, err := strconv.ParseUint(s, 8, 32)
	if err != nil || n > 0o777 {
		return 0, fmt.Errorf("%q is not an octal mode between \"000\" and \"0777\"", s)
	}
	return int(n), nil
}

// parseHandlerPath resolves a relative path against dir (the folder of
// the file that sets it) and checks that the handler can be run.
func parseHandlerPath(v any, dir string) (string, error) {
	p, err := parseNonEmpty(v, "path")
	if err != nil {
		return "", err
	}
	if !filepath.IsAbs(p) {
		p = filepath.Join(dir, p)
	}
	p = filepath.Clean(p)
	fi, err := os.Stat(p)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return "", fmt.Errorf("handler %s does not exist", p)
	case err != nil:
		return "", fmt.Errorf("handler %s: %w", p, unwrapPath(err))
	case !fi.Mode().IsRegular():
		return "", fmt.Errorf("handler %s is not a regular file", p)
	case fi.Mode().Perm()&0o111 == 0:
		return "", fmt.Errorf("handler %s is not executable (mode %04o)", p, fi.Mode().Perm())
	}
	return p, nil
}

// parseWorkingDir accepts an absolute path to an existing directory.
func parseWorkingDir(v any) (string, error) {
	p, err := parseNonEmpty(v, "working_dir")
	if err != nil {
		return "", err
	}
	if !filepath.IsAbs(p) {
		return "", fmt.Errorf("working_dir %q must be an absolute path", p)
	}
	fi, err := os.Stat(p)
	if err != nil {
		return "", fmt.Errorf("working_dir %s: %w", p, unwrapPath(err))
	}
	if !fi.IsDir() {
		return "", fmt.Errorf("working_dir %s is not a directory", p)
	}
	return filepath.Clean(p), nil
}

// parseEnv turns the env table into sorted "KEY=value" entries.
func parseEnv(v any) ([]string, error) {
	m, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("must be a table such as { LANG = \"C.UTF-8\" }, not %s", typeName(v))
	}
	var out []string
	var errs []error
	for _, k := range slices.Sorted(maps.Keys(m)) {
		val, err := asString(m[k])
		if err == nil {
			err = checkEnvName(k)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("variable %s: %w", k, err))
			continue
		}
		out = append(out, k+"="+val)
	}
	return out, errors.Join(errs...)
}

// parsePassEnv accepts variable names, dropping repeats.
func parsePassEnv(v any) ([]string, error) {
	names, err := asStrings(v)
	if err != nil {
		return nil, err
	}
	var errs []error
	for _, n := range names {
		if err := checkEnvName(n); err != nil {
			errs = append(errs, err)
		}
	}
	out := []string{}
	for _, n := range names {
		if !slices.Contains(out, n) {
			out = append(out, n)
		}
	}
	return out, errors.Join(errs...)
}

// checkEnvName accepts the portable names of POSIX: letters, digits and
// '_', not starting with a digit.
func checkEnvName(name string) error {
	ok := name != ""
	for i, r := range name {
		letter := r == '_' || (r >= 'A' && r <= 'Z') || (r >= 'a' && r <= 'z')
		if !letter && (i == 0 || r < '0' || r > '9') {
			ok = false
		}
	}
	if !ok {
		return fmt.Errorf("%q is not a valid variable name (letters, digits and _, not starting with a digit)", name)
	}
	return nil
}

// parseRate accepts a number of connections per second; 0 means no limit.
// maxRate bounds rate: far beyond what a host can fork, and small enough
// that the token bucket's burst (= rate) fits an int.
const maxRate = 1_000_000

func parseRate(v any) (float64, error) {
	var r float64
	switch x := v.(type) {
	case int64:
		r = float64(x)
	case float64:
		r = x
	default:
		return 0, fmt.Errorf("must be a number of connections per second, not %s", typeName(v))
	}
	if math.IsNaN(r) || math.IsInf(r, 0) || r < 0 || r > maxRate {
		return 0, fmt.Errorf("rate %v must be a number from 0 (no limit) to %d", r, maxRate)
	}
	return r, nil
}

// parsePrefixes reads an address list. An empty only_from is refused:
// it reads like "nobody" but would mean "everybody".
func parsePrefixes(v any, onlyFrom bool) ([]netip.Prefix, error) {
	list, err := asStrings(v)
	if err != nil {
		return nil, err
	}
	if onlyFrom && len(list) == 0 {
		return nil, errors.New(`an empty only_from would allow every address: list addresses, use ["0.0.0.0/0", "::/0"] for all, or disabled = true for none`)
	}
	out := make([]netip.Prefix, 0, len(list))
	var errs []error
	for _, s := range list {
		p, err := parsePrefix(s)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		out = append(out, p)
	}
	return out, errors.Join(errs...)
}

// parseProxyFrom reads proxy_from, the load balancers trusted to send a
// PROXY header. An empty list is refused: it would trust nobody, and
// every connection would be refused.
func parseProxyFrom(v any) ([]netip.Prefix, error) {
	list, err := asStrings(v)
	if err != nil {
		return nil, err
	}
	if len(list) == 0 {
		return nil, errors.New(`an empty proxy_from would refuse every connection: list the addresses of the load balancers that send the PROXY header`)
	}
	return parsePrefixes(v, false)
}

// parsePrefix accepts "192.0.2.0/24", "2001:db8::/32" or a plain address
// (a /32 or /128). IPv4-mapped IPv6 is turned into IPv4, as Access.Allowed
// does with the peer address, so that both meet.
func parsePrefix(s string) (netip.Prefix, error) {
	bad := fmt.Errorf("%q is not an IP address or a CIDR prefix such as \"192.0.2.0/24\"", s)
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, bad
		}
		if a := p.Addr(); a.Is4In6() && p.Bits() >= 96 {
			p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" {
		return netip.Prefix{}, bad
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}
