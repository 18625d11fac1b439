package config

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/superd/superd/internal/logging"
)

// defaultGlobal is [superd] when the file leaves everything out.
func defaultGlobal() Global {
	return Global{
		Log:            logging.DefaultTarget,
		SyslogFacility: logging.DefaultFacility,
		SyslogTag:      logging.DefaultTag,
		ShutdownGrace:  10 * time.Second,
		UpgradeTimeout: 30 * time.Second,
	}
}

// globalIn is one [superd] key being parsed: the setting as written, the
// Global its value goes into, and the include globs.
type globalIn struct {
	setting
	*Global
	globs *[]string
}

// globalKeys is the table of the keys of [superd]; its order is the
// order of the "did you mean" candidates.
func globalKeys() []named[func(globalIn) error] {
	return []named[func(globalIn) error]{
		{"log", func(k globalIn) (err error) { k.Log, err = asOneOf(k.val, "log", logging.Targets()...); return }},
		{"syslog_facility", func(k globalIn) (err error) { k.SyslogFacility, err = parseFacility(k.val); return }},
		{"syslog_tag", func(k globalIn) (err error) { k.SyslogTag, err = parseTag(k.val); return }},
		{"syslog_socket", func(k globalIn) (err error) { k.SyslogSocket, err = parseSyslogSocket(k.val); return }},
		{"shutdown_grace", func(k globalIn) (err error) { k.ShutdownGrace, err = parseShutdownGrace(k.val); return }},
		{"upgrade_timeout", func(k globalIn) (err error) { k.UpgradeTimeout, err = parseUpgradeTimeout(k.val); return }},
		{"metrics", func(k globalIn) (err error) { k.Metrics, err = parseMetricsAddr(k.val); return }},
		{"metrics_allow_remote", func(k globalIn) (err error) { k.MetricsAllowRemote, err = asBool(k.val); return }},
		{"include", func(k globalIn) (err error) { *k.globs, err = parseIncludes(k.setting); return }},
	}
}

// global parses the [superd] table s into g and returns its include globs.
func (l *loader) global(g *Global, s setting) []string {
	keys, err := s.table("superd.")
	if err != nil {
		l.errs = append(l.errs, s.err("", err))
		return nil
	}
	var globs []string
	var metrics *setting // the metrics key, when accepted
	table := globalKeys()
	for _, k := range keys {
		parse, err := findKey(table, k.name, "key")
		if err == nil {
			err = parse(globalIn{k, g, &globs})
		}
		if err != nil {
			l.report(k, "", err)
		} else if k.name == "metrics" {
			metrics = &k
		}
	}
	if metrics != nil && g.Metrics != "" && !g.MetricsAllowRemote && !loopbackAddr(g.Metrics) {
		l.report(*metrics, "", fmt.Errorf("%s is not a loopback address: the metrics tell whoever can connect which services run and how busy they are; "+
			"set metrics_allow_remote = true in [superd] to serve them there, or use 127.0.0.1", g.Metrics))
	}
	return globs
}

// parseMetricsAddr accepts "" (no metrics) or host:port, the host an IP
// address (empty for every address) or localhost, the port a number. It
// returns the address with the IP in its canonical form, so that a
// reload compares addresses, not spellings.
func parseMetricsAddr(v any) (string, error) {
	s, err := asString(v)
	if err != nil || s == "" {
		return "", err
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return "", fmt.Errorf("metrics address %q must be host:port, e.g. \"127.0.0.1:9911\"", s)
	}
	n, err := strconv.ParseUint(port, 10, 16)
	if err != nil {
		return "", fmt.Errorf("metrics address %q: port %q must be a number from 0 to 65535", s, port)
	}
	port = strconv.FormatUint(n, 10)
	switch host {
	case "", "localhost":
		return net.JoinHostPort(host, port), nil
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return "", fmt.Errorf("metrics address %q: host %q must be an IP address or localhost (superd resolves no names for it)", s, host)
	}
	return net.JoinHostPort(ip.String(), port), nil
}

// loopbackAddr reports whether the metrics address addr, as
// parseMetricsAddr returns it, serves only this machine. The wildcard
// (an empty host, 0.0.0.0, ::) does not.
func loopbackAddr(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.Unmap().IsLoopback()
}

// parseFacility accepts the facilities of package logging.
func parseFacility(v any) (string, error) {
	return asOneOf(v, "syslog facility", logging.Facilities()...)
}

// parseUpgradeTimeout accepts a positive duration up to MaxUpgradeTimeout.
func parseUpgradeTimeout(v any) (time.Duration, error) {
	d, err := asDuration(v, "upgrade_timeout", MaxUpgradeTimeout)
	if err == nil && d <= 0 {
		err = fmt.Errorf("upgrade_timeout must be positive, not %v", v)
	}
	return d, err
}

// parseShutdownGrace accepts a duration up to MaxShutdownGrace.
func parseShutdownGrace(v any) (time.Duration, error) {
	return asDuration(v, "shutdown_grace", MaxShutdownGrace)
}

// parseTag accepts a non-empty tag without spaces or control characters,
// which would corrupt the syslog line.
func parseTag(v any) (string, error) {
	s, err := asString(v)
	if err != nil {
		return "", err
	}
	if s == "" || len(s) > 48 || strings.IndexFunc(s, func(r rune) bool { return unicode.IsSpace(r) || !unicode.IsPrint(r) }) >= 0 {
		return "", fmt.Errorf("syslog tag %q must be 1 to 48 printable characters without spaces", s)
	}
	return s, nil
}

// parseSyslogSocket accepts "" (the system default) or an absolute path.
func parseSyslogSocket(v any) (string, error) {
	s, err := asString(v)
	if err != nil || s == "" {
		return "", err
	}
	if !filepath.IsAbs(s) {
		return "", fmt.Errorf("syslog socket %q must be an absolute path", s)
	}
	return filepath.Clean(s), nil
}

// parseIncludes checks the glob syntax of every element now, so that a
// typo in a pattern is reported rather than matching nothing.
func parseIncludes(s setting) ([]string, error) {
	patterns, err := asStrings(s.val)
	if err != nil {
		return nil, err
	}
	var globs []string
	var errs []error
	for _, p := range patterns {
		if _, err := filepath.Match(p, ""); p == "" || err != nil {
			errs = append(errs, fmt.Errorf("%q is not a valid glob pattern", p))
			continue
		}
		globs = append(globs, p)
	}
	return globs, errors.Join(errs...)
}
