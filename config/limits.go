package config

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// limitKind says which forms a limit's value takes besides an integer
// and "unlimited".
type limitKind int

const (
	countLimit   limitKind = iota // a plain count
	sizeLimit                     // bytes: also "512M"
	secondsLimit                  // cpu seconds: also "60s"
)

// rlimitKey is what a limits key sets: its RLIMIT_* resource and the
// forms its value takes.
type rlimitKey struct {
	resource int
	kind     limitKind
}

// limitKeys is the table of the keys of the limits table, in the order
// error messages list them.
func limitKeys() []named[rlimitKey] {
	return []named[rlimitKey]{
		{"as", rlimitKey{unix.RLIMIT_AS, sizeLimit}},
		{"core", rlimitKey{unix.RLIMIT_CORE, sizeLimit}},
		{"cpu", rlimitKey{unix.RLIMIT_CPU, secondsLimit}},
		{"data", rlimitKey{unix.RLIMIT_DATA, sizeLimit}},
		{"fsize", rlimitKey{unix.RLIMIT_FSIZE, sizeLimit}},
		{"locks", rlimitKey{unix.RLIMIT_LOCKS, countLimit}},
		{"memlock", rlimitKey{unix.RLIMIT_MEMLOCK, sizeLimit}},
		{"msgqueue", rlimitKey{unix.RLIMIT_MSGQUEUE, sizeLimit}},
		{"nofile", rlimitKey{unix.RLIMIT_NOFILE, countLimit}},
		{"nproc", rlimitKey{unix.RLIMIT_NPROC, countLimit}},
		{"rss", rlimitKey{unix.RLIMIT_RSS, sizeLimit}},
		{"rtprio", rlimitKey{unix.RLIMIT_RTPRIO, countLimit}},
		{"sigpending", rlimitKey{unix.RLIMIT_SIGPENDING, countLimit}},
		{"stack", rlimitKey{unix.RLIMIT_STACK, sizeLimit}},
	}
}

// parseLimits parses the limits table, sorted by name. Each bad limit is
// its own *Error, at its own line.
func parseLimits(s setting) ([]Rlimit, error) {
	keys, err := s.table(s.ekey + ".")
	if err != nil {
		return nil, err
	}
	out := []Rlimit{}
	var errs []error
	table := limitKeys()
	for _, k := range keys {
		r, err := parseLimit(k, table)
		if err != nil {
			errs = append(errs, k.err("", err))
			continue
		}
		out = append(out, r)
	}
	return out, errors.Join(errs...)
}

// parseLimit parses one limit, whose key is one of table (limitKeys).
func parseLimit(s setting, table []named[rlimitKey]) (Rlimit, error) {
	lim, err := findKey(table, s.name, "limit")
	if u, ok := err.(*unknownError); ok {
		u.listAs = "limits"
		return Rlimit{}, u
	}
	v, err := limitValue(s.val, lim.kind)
	if err != nil {
		return Rlimit{}, err
	}
	// The kernel caps nofile at fs.nr_open; setrlimit would fail at the
	// first connection instead of here.
	if s.name == "nofile" && v == RlimInfinity {
		return Rlimit{}, errors.New(`nofile cannot be "unlimited": give a number`)
	}
	return Rlimit{Name: s.name, Resource: lim.resource, Value: v}, nil
}

// limitValue parses an integer, "unlimited", or the kind's string form.
func limitValue(v any, kind limitKind) (uint64, error) {
	switch x := v.(type) {
	case int64:
		if x < 0 {
			return 0, fmt.Errorf("limit %d must not be negative", x)
		}
		return uint64(x), nil
	case string:
		switch {
		case x == "unlimited":
			return RlimInfinity, nil
		case kind == sizeLimit:
			return parseSize(x)
		case kind == secondsLimit:
			return parseSeconds(x)
		}
	}
	return 0, limitFormError(v, kind)
}

// limitFormError says which forms the limit takes.
func limitFormError(v any, kind limitKind) error {
	forms := `an integer or "unlimited"`
	switch kind {
	case sizeLimit:
		forms = `an integer (bytes), a size such as "512M" (K, M, G, T: powers of 1024) or "unlimited"`
	case secondsLimit:
		forms = `an integer (seconds), a duration such as "60s" or "2m", or "unlimited"`
	}
	if s, ok := v.(string); ok {
		return fmt.Errorf("%q is not %s", s, forms)
	}
	return fmt.Errorf("must be %s, not %s", forms, typeName(v))
}

// parseSize parses "512M": digits and an optional K, M, G or T suffix
// (either case), in powers of 1024.
func parseSize(s string) (uint64, error) {
	num, mult := s, uint64(1)
	if n := len(s); n > 0 {
		if i := strings.IndexByte("KMGTkmgt", s[n-1]); i >= 0 {
			num, mult = s[:n-1], 1<<(10*(i%4+1))
		}
	}
	n, err := strconv.ParseUint(num, 10, 64)
	if err != nil || !isDigits(num) {
		return 0, limitFormError(s, sizeLimit)
	}
	if n > math.MaxUint64/mult {
		return 0, fmt.Errorf("size %q is too large", s)
	}
	return n * mult, nil
}

// parseSeconds parses a duration into whole seconds, which is what
// RLIMIT_CPU counts.
func parseSeconds(s string) (uint64, error) {
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, limitFormError(s, secondsLimit)
	}
	if d < 0 || d%time.Second != 0 {
		return 0, fmt.Errorf("cpu limit %q must be a whole, non-negative number of seconds", s)
	}
	return uint64(d / time.Second), nil
}
