package config

import (
	"encoding/binary"
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
)

// source is one parsed file.
type source struct {
	// path is the file as given to Load or as an include glob matched it;
	// errors name it this way.
	path string
	// dir is the absolute folder of path, the base of relative paths
	// written in the file.
	dir string
	// lines maps each key the file defines (toml.Key.String) to its
	// line; an implicit key (the "a" of "a.b = 1") is absent.
	lines map[string]int
}

// newSource describes the file at path in dir, decoded as md, whose keys
// scanLayout found at lines. When the scan and the decoder disagree
// about the keys, which a test makes sure never happens with a file the
// decoder accepts, errors go without their lines rather than on wrong
// ones.
func newSource(path, dir string, md *toml.MetaData, lines []int) *source {
	keys := md.Keys()
	src := &source{path: path, dir: dir, lines: make(map[string]int, len(keys))}
	if len(keys) != len(lines) {
		return src
	}
	// A key defined again (the same key in each [[array]] table) keeps
	// its last line, as the decoder does.
	for i, k := range keys {
		src.lines[keyID(k)] = lines[i]
	}
	return src
}

// keyID is a string that identifies key: each part after its length.
// It is made with one allocation, where toml.Key.String makes several
// and looks at every byte to decide on quotes.
func keyID(key toml.Key) string {
	n := 0
	for _, part := range key {
		n += binary.MaxVarintLen64 + len(part)
	}
	b := make([]byte, 0, n)
	for _, part := range key {
		b = binary.AppendUvarint(b, uint64(len(part)))
		b = append(b, part...)
	}
	return string(b)
}

// setting is one key = value as written in a file.
type setting struct {
	// name is the key inside its table: "port", "nofile".
	name string
	// ekey is the key as errors name it (see Error.Key).
	ekey string
	// fromDefaults is true for keys written in [defaults].
	fromDefaults bool
	// val is the decoded TOML value: string, int64, float64, bool,
	// time.Time, []any, map[string]any or []map[string]any.
	val any
	// parent is the full TOML key of the table holding the setting,
	// empty at the top level; the setting's own key, for finding its
	// line, is parent and name (see key).
	parent toml.Key
	src    *source
}

// key is the full TOML key of s. It is made when needed, for an error,
// rather than for each of many keys.
func (s setting) key() toml.Key { return addKey(s.parent, s.name) }

// line returns the line where key is written, or 0 when the key is
// implicit (the "a" of "a.b = 1").
func (src *source) line(key toml.Key) int { return src.lines[keyID(key)] }

// err places err at the setting, inside service (empty outside one).
func (s setting) err(service string, err error) *Error {
	return &Error{File: s.src.path, Service: service, Key: s.ekey, Line: firstLine(s), Err: err}
}

// errorf is err with a formatted message.
func (s setting) errorf(service, format string, args ...any) *Error {
	return s.err(service, fmt.Errorf(format, args...))
}

// table returns the keys of the table s holds, sorted by name, named in
// errors as prefix + name.
func (s setting) table(prefix string) ([]setting, error) {
	m, ok := s.val.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("must be a table, not %s", typeName(s.val))
	}
	out := make([]setting, 0, len(m))
	key := s.key()
	for _, name := range slices.Sorted(maps.Keys(m)) {
		out = append(out, setting{
			name: name, ekey: prefix + name, fromDefaults: s.fromDefaults,
			val: m[name], parent: key, src: s.src,
		})
	}
	return out, nil
}

// addKey returns k with name appended, sharing nothing with k.
func addKey(k toml.Key, name string) toml.Key {
	return append(slices.Clip(k), name)
}

// typeName names a decoded TOML value's type the way the TOML spec does.
func typeName(v any) string {
	switch v.(type) {
	case string:
		return "a string"
	case int64:
		return "an integer"
	case float64:
		return "a float"
	case bool:
		return "a boolean"
	case time.Time:
		return "a date-time"
	case []any:
		return "an array"
	case map[string]any:
		return "a table"
	case []map[string]any:
		return "an array of tables"
	}
	return fmt.Sprintf("a %T", v)
}

// asString accepts a string without NUL bytes: C look-ups (getpwnam,
// getservbyname) and execve would silently cut the string at the first
// NUL, so "root\x00x" could become "root".
func asString(v any) (string, error) {
	s, ok := v.(string)
	if !ok {
		return "", fmt.Errorf("must be a string, not %s", typeName(v))
	}
	if strings.IndexByte(s, 0) >= 0 {
		return "", fmt.Errorf("%q contains a NUL byte", s)
	}
	return s, nil
}

func asInt(v any) (int64, error) {
	n, ok := v.(int64)
	if !ok {
		return 0, fmt.Errorf("must be an integer, not %s", typeName(v))
	}
	return n, nil
}

// asIntIn is asInt with a range check; what names the value in the
// message. hi = math.MaxInt32 means "no upper bound worth mentioning".
func asIntIn(v any, what string, lo, hi int64) (int, error) {
	n, err := asInt(v)
	if err != nil {
		return 0, err
	}
	switch {
	case n >= lo && n <= hi:
		return int(n), nil
	case hi == math.MaxInt32 && n < lo:
		return 0, fmt.Errorf("%s must be at least %d, not %d", what, lo, n)
	}
	return 0, fmt.Errorf("%s %d out of range %d..%d", what, n, lo, hi)
}

func asBool(v any) (bool, error) {
	b, ok := v.(bool)
	if !ok {
		return false, fmt.Errorf("must be true or false, not %s", typeName(v))
	}
	return b, nil
}

// asStrings accepts an array of strings, an empty one included.
func asStrings(v any) ([]string, error) {
	arr, ok := v.([]any)
	if !ok {
		return nil, fmt.Errorf("must be an array of strings, not %s", typeName(v))
	}
	out := make([]string, len(arr))
	for i, e := range arr {
		s, err := asString(e)
		if err != nil {
			return nil, fmt.Errorf("element %d: %w", i+1, err)
		}
		out[i] = s
	}
	return out, nil
}

// asDuration accepts a Go duration string such as "30s" or "1m30s", up to
// longest; what names the key in the message. Negative durations are
// refused: every duration in the file is a wait. The cap keeps the sums
// made with a duration (a deadline, a timeout plus the kill delay) far
// from overflowing.
func asDuration(v any, what string, longest time.Duration) (time.Duration, error) {
	s, ok := v.(string)
	if !ok {
		return 0, fmt.Errorf("must be a duration string such as \"30s\", not %s", typeName(v))
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("invalid duration %q (use a number with a unit: \"500ms\", \"30s\", \"2m\")", s)
	}
	if d < 0 {
		return 0, fmt.Errorf("negative duration %q", s)
	}
	if d > longest {
		return 0, fmt.Errorf("%s %q is longer than the maximum %v", what, s, longest)
	}
	return d, nil
}

// asOneOf accepts a string that is one of allowed; what names the value
// in the message.
func asOneOf(v any, what string, allowed ...string) (string, error) {
	s, err := asString(v)
	if err != nil {
		return "", err
	}
	if !slices.Contains(allowed, s) {
		return "", fmt.Errorf("%s %q is not one of %s", what, s, joinOr(allowed))
	}
	return s, nil
}

// joinOr formats a list of choices: "a, b or c".
func joinOr(list []string) string {
	if len(list) < 2 {
		return strings.Join(list, "")
	}
	return strings.Join(list[:len(list)-1], ", ") + " or " + list[len(list)-1]
}

// named is one row of a key table: a key's name and what handles it.
// Each key set (service keys, [superd], limits) is one table, built by a
// function so that nobody can modify it; its rows drive the parsing and
// its names, in table order, the "did you mean" hints.
type named[T any] struct {
	name string
	val  T
}

// findKey returns what handles name in table, or an "unknown <what>"
// error with a "did you mean" hint taken from the table's names.
func findKey[T any](table []named[T], name, what string) (T, error) {
	for _, k := range table {
		if k.name == name {
			return k.val, nil
		}
	}
	var zero T
	return zero, &unknownError{what: what, name: name, known: func() []string { return keyNames(table) }}
}

// unknownError is "unknown <what>" and a "did you mean" hint, then rest
// or the list of every candidate. The message is made only when it is
// read: of a file with a hundred thousand unknown keys, only the first
// maxErrors are shown.
type unknownError struct {
	what, name string
	known      func() []string // the candidates, in order
	rest       string
	// listAs, when set, names the candidates in "; <listAs> are a, b,
	// c", which follows the hint.
	listAs string
}

func (e *unknownError) Error() string {
	known := e.known()
	msg := "unknown " + e.what + suggest(e.name, known) + e.rest
	if e.listAs != "" {
		msg += "; " + e.listAs + " are " + strings.Join(known, ", ")
	}
	return msg
}

// keyNames lists the names of table, in its order.
func keyNames[T any](table []named[T]) []string {
	names := make([]string, len(table))
	for i, k := range table {
		names[i] = k.name
	}
	return names
}

// suggest returns ` (did you mean "x"?)` when name is a likely typo of one
// of known, else "". Of equally close names, the first in known wins.
func suggest(name string, known []string) string {
	best, bestDist := "", 3
	for _, k := range known {
		if d := editDistance(name, k, bestDist); d < bestDist {
			best, bestDist = k, d
		}
	}
	if best == "" {
		return ""
	}
	return fmt.Sprintf(" (did you mean %q?)", best)
}

// editDistance is the Levenshtein distance between a and b, in bytes, or
// any number at least bound when it is at least bound. The bound keeps a
// file of many long unknown keys from costing length times length each.
func editDistance(a, b string, bound int) int {
	if len(a)-len(b) >= bound || len(b)-len(a) >= bound {
		return bound // the distance is at least the difference in length
	}
	// Two rows; known keys are short enough for them to stay on the stack.
	var buf [64]int
	n := len(b) + 1
	rows := buf[:]
	if 2*n > len(buf) {
		rows = make([]int, 2*n)
	}
	prev, cur := rows[:n], rows[n:2*n]
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		rowMin := cur[0]
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			rowMin = min(rowMin, cur[j])
		}
		if rowMin >= bound {
			return bound // no later row can go below this one's minimum
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
