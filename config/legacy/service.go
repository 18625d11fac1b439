package legacy

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
)

// keyOrder is the order keys are written in: what the service is first,
// then who runs it, then its limits.
func keyOrder() []string {
	return []string{
		"disabled", "builtin", "path", "argv0", "args", "port", "protocol", "type", "address",
		"wait", "user", "group", "env", "pass_env", "umask", "nice",
		"instances", "per_source", "rate", "only_from", "no_access", "limits",
	}
}

// set gives key its value, replacing an earlier one.
func (s *Service) set(key string, v any) {
	for i := range s.Keys {
		if s.Keys[i].Name == key {
			s.Keys[i].Value = v
			return
		}
	}
	s.Keys = append(s.Keys, Key{Name: key, Value: v})
	order := keyOrder()
	slices.SortStableFunc(s.Keys, func(a, b Key) int {
		return slices.Index(order, a.Name) - slices.Index(order, b.Name)
	})
}

// get returns key's value, nil when unset.
func (s *Service) get(key string) any {
	for _, k := range s.Keys {
		if k.Name == key {
			return k.Value
		}
	}
	return nil
}

// note adds a comment about a setting carried over in another form.
func (s *Service) note(format string, args ...any) {
	s.Notes = append(s.Notes, fmt.Sprintf(format, args...))
}

// lose records a setting that cannot be carried over.
func (s *Service) lose(source, original, why string) {
	s.NotConverted = append(s.NotConverted, NotConverted{Source: source, Original: original, Why: why})
}

// skip marks the whole entry as not converted.
func (s *Service) skip(source, original, why string) {
	s.Skipped = true
	s.Keys = nil
	s.lose(source, original, why)
}

// disable converts the service disabled, saying why in the last
// NotConverted item, since a setting that could not be carried over
// would otherwise let more clients in.
func (s *Service) disable(why string) {
	if d, _ := s.get("disabled").(bool); d {
		return
	}
	s.set("disabled", true)
	if n := len(s.NotConverted); n > 0 {
		s.NotConverted[n-1].Why += "; " + why
	}
}

// disabled reports whether the service is converted disabled.
func (s *Service) disabled() bool {
	d, _ := s.get("disabled").(bool)
	return d
}

// listenID is the socket a service would take, for finding two enabled
// services that cannot both bind.
type listenID struct {
	transport string // tcp, udp or unix
	family    string // "" for both IPv4 and IPv6, "4" or "6"
	addr      netip.Addr
	port      string // a number, or a name from /etc/services
	path      string // unix sockets
}

// span says which addresses the socket takes: every IPv4 and IPv6
// address, or one.
func (l *listenID) wild4() bool { return !l.addr.IsValid() && l.family != "6" }
func (l *listenID) wild6() bool { return !l.addr.IsValid() && l.family != "4" }

// overlaps reports whether a and b cannot both be bound, as superd
// check decides: the same transport and port, and addresses that meet.
func (c *converter) overlaps(a, b *listenID) bool {
	if a.transport != b.transport {
		return false
	}
	if a.transport == "unix" {
		return a.path == b.path
	}
	if c.portNumber(a) != c.portNumber(b) {
		return false
	}
	switch {
	case a.addr.IsValid() && b.addr.IsValid():
		return a.addr == b.addr
	case a.addr.IsValid():
		return (a.addr.Is4() && b.wild4()) || (a.addr.Is6() && b.wild6())
	case b.addr.IsValid():
		return (b.addr.Is4() && a.wild4()) || (b.addr.Is6() && a.wild6())
	}
	return (a.wild4() && b.wild4()) || (a.wild6() && b.wild6())
}

// portNumber resolves a port name for the comparison, once per name and
// transport; a name that does not resolve stands for itself.
func (c *converter) portNumber(l *listenID) string {
	if _, err := strconv.Atoi(l.port); err == nil {
		return l.port
	}
	k := l.transport + "/" + l.port
	if p, ok := c.ports[k]; ok {
		return p
	}
	p := l.port
	if n, err := c.lookupPort(l.transport, l.port); err == nil {
		p = strconv.Itoa(n)
	}
	c.ports[k] = p
	return p
}

// collisions disables each enabled service that would take the socket
// of an earlier enabled one: inetd and xinetd serve only one of them
// too, and superd check refuses the pair.
func (c *converter) collisions() {
	var enabled []*Service
	for _, s := range c.res.Services {
		if s.Skipped || s.listen == nil || s.disabled() {
			continue
		}
		if i := slices.IndexFunc(enabled, func(e *Service) bool { return c.overlaps(e.listen, s.listen) }); i >= 0 {
			s.lose(s.Source, s.raw,
				fmt.Sprintf("it takes the socket of service %q, and superd check refuses two enabled services on one socket (inetd and xinetd serve one of them too): this one is converted disabled", enabled[i].Name))
			s.set("disabled", true)
			continue
		}
		enabled = append(enabled, s)
	}
}

// uniqueNames gives every service a distinct table name: its base name
// where that is unique, otherwise the base with the suffixes that tell
// the services sharing it apart (socket type, then protocol, then
// address), and a counter as the last resort.
func uniqueNames(svcs []*Service) {
	for _, s := range svcs {
		s.Name = s.base
	}
	for level := range 3 {
		groups := map[string][]*Service{}
		for _, s := range svcs {
			groups[s.Name] = append(groups[s.Name], s)
		}
		for _, g := range groups {
			if len(g) < 2 || !differ(g, level) {
				continue
			}
			for _, s := range g {
				if sfx := s.suffix[level]; sfx != "" {
					s.Name += "-" + sfx
				}
			}
		}
	}
	taken := map[string]bool{}
	for _, s := range svcs {
		name := s.Name
		for n := 2; taken[name]; n++ {
			name = s.Name + "-" + strconv.Itoa(n)
		}
		s.Name = name
		taken[name] = true
	}
}

// differ reports whether the services of g have more than one suffix at
// level.
func differ(g []*Service, level int) bool {
	for _, s := range g[1:] {
		if s.suffix[level] != g[0].suffix[level] {
			return true
		}
	}
	return false
}

// serviceName turns a legacy name into a valid superd service name:
// ASCII letters, digits, '-', '_' and '.', anything else becoming '-'.
func serviceName(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch {
		case r < 0x80 && (r == '-' || r == '_' || r == '.' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9'):
			b.WriteRune(r)
		default:
			b.WriteByte('-')
		}
	}
	n := strings.Trim(b.String(), "-")
	if n == "" {
		return "service"
	}
	return n
}

// builtins lists the services superd serves itself, as inetd and xinetd
// do.
func builtins() []string { return []string{"echo", "discard", "daytime", "chargen", "time"} }

// envName reports whether name is a variable name superd accepts:
// letters, digits and '_', not starting with a digit.
func envName(name string) bool {
	if name == "" {
		return false
	}
	for i, r := range name {
		letter := r == '_' || (r >= 'A' && r <= 'Z') || (r >= 'a' && r <= 'z')
		if !letter && (i == 0 || r < '0' || r > '9') {
			return false
		}
	}
	return true
}
