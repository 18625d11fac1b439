package main

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
)

// kind is what a generated service is.
type kind int

const (
	kindCat     kind = iota // nowait TCP, /bin/cat: echoes its input and exits at EOF
	kindBuiltin             // a TCP built-in (echo, discard, daytime, chargen, time)
	kindUDP                 // the UDP built-in echo
	kindWait                // wait-mode TCP: this program run with -serve-wait
)

// service is one generated [services.NAME] table.
type service struct {
	name    string
	kind    kind
	port    int
	builtin string   // kindBuiltin, kindUDP
	extra   []string // further key = value lines, written as they are
}

// mix returns n services on the ports base..base+n-1: 70% nowait
// /bin/cat handlers, 20% TCP built-ins and 10% UDP echo. The first cat
// and the first TCP echo are at indexes 0 and 7, which the rate and
// reload steps use.
func mix(n, base int) []service {
	builtinNames := []string{"echo", "discard", "daytime", "chargen", "time"}
	svcs := make([]service, n)
	built := 0
	for i := range svcs {
		s := service{port: base + i}
		switch i % 10 {
		case 7, 8:
			s.kind = kindBuiltin
			s.builtin = builtinNames[built%len(builtinNames)]
			built++
			s.name = fmt.Sprintf("%s-%04d", s.builtin, i)
		case 9:
			s.kind, s.builtin = kindUDP, "echo"
			s.name = fmt.Sprintf("udp-echo-%04d", i)
		default:
			s.kind = kindCat
			s.name = fmt.Sprintf("cat-%04d", i)
		}
		svcs[i] = s
	}
	return svcs
}

// configText is a superd configuration holding svcs, logging to stderr.
// Handlers run as uid (superd as root insists on a user per handler).
func configText(svcs []service, uid int, handler string) string {
	var b strings.Builder
	// A short shutdown_grace: stopping a daemon between steps must not
	// wait for the default 10 s if a handler lingers.
	b.WriteString("[superd]\nlog = \"stderr\"\nshutdown_grace = \"2s\"\n")
	for _, s := range svcs {
		fmt.Fprintf(&b, "\n[services.%s]\naddress = \"127.0.0.1\"\nport = %d\n", s.name, s.port)
		switch s.kind {
		case kindCat:
			fmt.Fprintf(&b, "path = \"/bin/cat\"\nuser = \"%d\"\n", uid)
		case kindBuiltin:
			fmt.Fprintf(&b, "builtin = %q\n", s.builtin)
		case kindUDP:
			fmt.Fprintf(&b, "protocol = \"udp\"\nbuiltin = %q\n", s.builtin)
		case kindWait:
			fmt.Fprintf(&b, "wait = true\npath = %q\nargs = [%q]\nuser = \"%d\"\n", handler, serveWaitArg, uid)
		}
		for _, l := range s.extra {
			b.WriteString(l + "\n")
		}
	}
	return b.String()
}

// writeFileAtomic replaces path with text through a rename, so that a
// reload never reads a half-written file.
func writeFileAtomic(path, text string) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(text), 0o644); err != nil {
		return fmt.Errorf("writing the configuration: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("writing the configuration: %w", err)
	}
	return nil
}

// portRange hands out blocks of ports free on 127.0.0.1, for TCP and
// UDP alike, below the ephemeral range so that no client connection can
// take one of them in the meantime.
type portRange struct {
	next, end int
}

// newPortRange returns the ports from first up to but excluding end.
func newPortRange(first, end int) *portRange { return &portRange{next: first, end: end} }

// block returns the first port of n consecutive ports that were free
// when probed. Another program may still bind one of them before superd
// does: superd then logs it as pending, and the steps check for that.
func (p *portRange) block(n int) (int, error) {
	start := p.next
	for port := start; port < p.end; port++ {
		if !portFree(port) {
			start = port + 1
			continue
		}
		if port-start+1 == n {
			p.next = port + 1
			return start, nil
		}
	}
	return 0, fmt.Errorf("no %d consecutive free ports on 127.0.0.1 below %d (start another time, or pass a larger -ports range)", n, p.end)
}

// portFree reports whether port can be bound on 127.0.0.1 for both TCP
// and UDP right now.
func portFree(port int) bool {
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return false
	}
	l.Close()
	c, err := net.ListenPacket("udp", addr)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// parsePorts reads -ports, "FIRST-END".
func parsePorts(s string) (*portRange, error) {
	a, b, ok := strings.Cut(s, "-")
	first, err1 := strconv.Atoi(a)
	end, err2 := strconv.Atoi(b)
	if !ok || err1 != nil || err2 != nil || first < 1024 || end > 65536 || first >= end {
		return nil, errors.New("-ports wants FIRST-END with 1024 <= FIRST < END <= 65536, e.g. 20000-32000")
	}
	return newPortRange(first, end), nil
}
