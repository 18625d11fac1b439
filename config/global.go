package config

import (
	"errors"
	"fmt"
	"path/filepath"
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
	table := globalKeys()
	for _, k := range keys {
		parse, err := findKey(table, k.name, "key")
		if err == nil {
			err = parse(globalIn{k, g, &globs})
		}
		if err != nil {
			l.report(k, "", err)
		}
	}
	return globs
}

// parseFacility accepts the facilities of package logging.
func parseFacility(v any) (string, error) {
	return asOneOf(v, "syslog facility", logging.Facilities()...)
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
