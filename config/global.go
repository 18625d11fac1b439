package config

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"time"
	"unicode"
)

// defaultGlobal is [superd] when the file leaves everything out.
func defaultGlobal() Global {
	return Global{
		Log:            "syslog",
		SyslogFacility: "daemon",
		SyslogTag:      "superd",
		ShutdownGrace:  10 * time.Second,
	}
}

// globalKeys lists the keys of [superd], for "did you mean".
func globalKeys() []string {
	return []string{"log", "syslog_facility", "syslog_tag", "syslog_socket", "shutdown_grace", "include"}
}

// facilities lists the syslog facility names superd accepts: the ones
// every syslog daemon knows.
func facilities() []string {
	return []string{"kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news", "uucp", "cron",
		"authpriv", "ftp", "local0", "local1", "local2", "local3", "local4", "local5", "local6", "local7"}
}

// global parses the [superd] table s into g and returns its include globs.
func (l *loader) global(g *Global, s setting) []string {
	keys, err := s.table("superd.")
	if err != nil {
		l.errs = append(l.errs, s.err("", err))
		return nil
	}
	var globs []string
	for _, k := range keys {
		if err := globalKey(g, &globs, k); err != nil {
			l.report(k, "", err)
		}
	}
	return globs
}

// globalKey parses one [superd] key.
func globalKey(g *Global, globs *[]string, s setting) error {
	var err error
	switch s.name {
	case "log":
		g.Log, err = asOneOf(s.val, "log", "syslog", "stderr")
	case "syslog_facility":
		g.SyslogFacility, err = asOneOf(s.val, "syslog facility", facilities()...)
	case "syslog_tag":
		g.SyslogTag, err = parseTag(s.val)
	case "syslog_socket":
		g.SyslogSocket, err = parseSyslogSocket(s.val)
	case "shutdown_grace":
		g.ShutdownGrace, err = asDuration(s.val, "shutdown_grace", MaxShutdownGrace)
	case "include":
		*globs, err = parseIncludes(s)
	default:
		err = fmt.Errorf("unknown key%s", suggest(s.name, globalKeys()))
	}
	return err
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
