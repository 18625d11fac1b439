package config

import (
	"bytes"
	"fmt"
)

// maxDepth is the deepest key path a file may hold, counting each table
// name, each part of a dotted key and each array level: the "x" of
// [services.s] limits = { x = 1 } is at depth 4, the deepest place
// superd's own keys reach. Twice that leaves room for any mistake worth
// a helpful message, while the TOML decoder, whose cost grows with the
// square of the depth, never sees a file nested thousands of levels deep.
const maxDepth = 8

// errTooDeep is the problem a file nested deeper than maxDepth has.
var errTooDeep = fmt.Errorf("nesting deeper than %d levels: superd's configuration never nests that deep", maxDepth)

// maxNodes bounds the keys, tables and arrays of one file: every part of
// a key (a.b.c = 1 makes the decoder build a table for a and b), every
// inline table and every array. Each costs the decoder about the same,
// a few microseconds and a kilobyte, whatever its depth, and so does
// what Load then makes of it; at the bound a file takes Load well under
// a second and 200 MB (about 0.6 s, 210 MB allocated and 120 MB resident
// on two cores, for the costliest shapes). A very large configuration, thousands of services
// of several keys each, stays far below: 10,000 services of eight keys
// make 100,000. Beyond, the services can be spread over included files.
const maxNodes = 150_000

// errTooMany is the problem a file with more than maxNodes has.
var errTooMany = fmt.Errorf("more than %d keys, tables and arrays: superd reads at most that many from one file (spread the services over files with superd.include)", maxNodes)

// layout is what scanLayout learns from a file's bytes.
type layout struct {
	// lines holds the line of every key the file defines, in the order
	// toml.MetaData.Keys lists them: the "[" of a table header, the first
	// character of a key otherwise.
	lines []int
	// deep is the line where the nesting first goes deeper than
	// maxDepth; zero when it never does. The scan stops there, so lines
	// is then incomplete.
	deep int
	// crowded is the line where the file first holds more than maxNodes
	// keys, tables and arrays; zero when it never does. The scan stops
	// there too.
	crowded int
}

// scanLayout reads data as TOML just far enough to find where each key is
// written and how deep the file nests, in one pass and without building
// anything. BurntSushi/toml offers no public way to learn a key's line
// short of an error that splits the whole file into lines, once per key
// asked about.
//
// The scan follows valid TOML exactly and never fails: on invalid input
// it carries on somehow, which does no harm, since the decoder then
// rejects the file at the first mistake, and up to that point the input
// was valid and the scan followed it. Recursion is bounded by maxDepth.
func scanLayout(data []byte) layout {
	// Skip a byte order mark as the decoder does.
	switch {
	case bytes.HasPrefix(data, []byte("\xff\xfe")), bytes.HasPrefix(data, []byte("\xfe\xff")):
		data = data[2:]
	case bytes.HasPrefix(data, []byte("\xef\xbb\xbf")):
		data = data[3:]
	}
	s := &scanner{data: data, line: 1}
	s.top()
	return layout{lines: s.lines, deep: s.deep, crowded: s.crowded}
}

// scanner is the state of one scanLayout call.
type scanner struct {
	data  []byte
	i     int // offset of the next byte
	line  int // line of the next byte
	lines []int
	deep  int
	// nodes counts the keys, tables and arrays so far (see maxNodes);
	// crowded is the line where there came too many.
	nodes, crowded int
}

// peek returns the byte at offset i+n, or 0 past the end.
func (s *scanner) peek(n int) byte {
	if s.i+n < len(s.data) {
		return s.data[s.i+n]
	}
	return 0
}

func (s *scanner) eof() bool { return s.i >= len(s.data) }

// stopped reports whether the scan found nesting too deep, or too many
// keys, and must end.
func (s *scanner) stopped() bool { return s.deep > 0 || s.crowded > 0 }

// count counts one key, table or array, and reports whether that is too
// many.
func (s *scanner) count() bool {
	s.nodes++
	if s.nodes > maxNodes && s.crowded == 0 {
		s.crowded = s.line
	}
	return s.stopped()
}

// advance moves past one byte, counting lines as the TOML lexer does.
func (s *scanner) advance() {
	if s.data[s.i] == '\n' {
		s.line++
	}
	s.i++
}

// tooDeep records that depth d is too deep, and reports whether it is.
func (s *scanner) tooDeep(d int) bool {
	if d > maxDepth && s.deep == 0 {
		s.deep = s.line
	}
	return s.stopped()
}

// skipSpace skips blanks within a line ('\r' counts: it only ever comes
// before '\n' in valid TOML).
func (s *scanner) skipSpace() {
	for !s.eof() {
		switch s.data[s.i] {
		case ' ', '\t', '\r':
			s.advance()
		default:
			return
		}
	}
}

// skipBlank skips blanks, newlines and comments, as arrays and inline
// tables allow between their elements.
func (s *scanner) skipBlank() {
	for !s.eof() {
		switch s.data[s.i] {
		case ' ', '\t', '\r', '\n':
			s.advance()
		case '#':
			s.skipLine()
		default:
			return
		}
	}
}

// skipLine skips to the end of the line, leaving the '\n'.
func (s *scanner) skipLine() {
	for !s.eof() && s.data[s.i] != '\n' {
		s.advance()
	}
}

// top scans the top level: table headers and key = value lines.
func (s *scanner) top() {
	table := 0 // the depth of the current [table]
	for !s.stopped() {
		s.skipBlank()
		if s.eof() {
			return
		}
		if s.data[s.i] == '[' {
			table = s.header()
		} else {
			s.keyValue(table)
		}
		// Only blanks and a comment may follow on the line.
		s.skipLine()
	}
}

// header scans [a.b] or [[a.b]] and returns its depth.
func (s *scanner) header() int {
	s.lines = append(s.lines, s.line)
	s.advance()
	if s.peek(0) == '[' {
		s.advance()
	}
	n := s.key()
	s.tooDeep(n)
	return n
}

// keyValue scans key = value at the top level, in a table of depth
// table.
func (s *scanner) keyValue(table int) {
	s.lines = append(s.lines, s.line)
	d := table + s.key()
	if s.tooDeep(d) || s.peek(0) != '=' {
		return
	}
	s.advance()
	s.value(d)
}

// key scans a dotted key and the blanks after it, and returns how many
// parts it has.
func (s *scanner) key() int {
	n := 0
	for {
		s.skipSpace()
		switch s.peek(0) {
		case '"':
			s.basicString()
		case '\'':
			s.literalString()
		default:
			for !s.eof() && isBareKeyByte(s.data[s.i]) {
				s.advance()
			}
		}
		n++
		if s.count() {
			return n
		}
		s.skipSpace()
		if s.peek(0) != '.' {
			return n
		}
		s.advance()
	}
}

// isBareKeyByte reports whether c may appear in a bare key.
func isBareKeyByte(c byte) bool {
	return c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '-'
}

// value scans one value whose key path has depth d.
func (s *scanner) value(d int) {
	s.skipSpace()
	switch {
	case s.eof():
	case s.peek(0) == '"' && s.peek(1) == '"' && s.peek(2) == '"':
		s.multilineString('"')
	case s.peek(0) == '\'' && s.peek(1) == '\'' && s.peek(2) == '\'':
		s.multilineString('\'')
	case s.peek(0) == '"':
		s.basicString()
	case s.peek(0) == '\'':
		s.literalString()
	case s.peek(0) == '[':
		s.advance()
		s.array(d)
	case s.peek(0) == '{':
		s.advance()
		s.inlineTable(d)
	default:
		// A number, boolean or date-time. The time of "1979-05-27
		// 07:32:00" is left for the caller, which skips it as it would
		// skip a mistake.
		for !s.eof() && !isValueEnd(s.data[s.i]) {
			s.advance()
		}
	}
}

// isValueEnd reports whether c ends a bare value.
func isValueEnd(c byte) bool {
	switch c {
	case ' ', '\t', '\r', '\n', ',', ']', '}', '#', '[', '{', '"', '\'', '=':
		return true
	}
	return false
}

// array scans the elements of an array whose key path has depth d, past
// the closing ']'.
func (s *scanner) array(d int) {
	if s.count() || s.tooDeep(d+1) {
		return
	}
	for !s.stopped() {
		s.skipBlank()
		switch {
		case s.eof():
			return
		case s.peek(0) == ']':
			s.advance()
			return
		case s.peek(0) == ',':
			s.advance()
			continue
		}
		before := s.i
		s.value(d + 1)
		if s.i == before {
			s.advance() // not a value: a mistake the decoder reports
		}
	}
}

// inlineTable scans the keys of { ... } whose key path has depth d, past
// the closing '}'.
func (s *scanner) inlineTable(d int) {
	if s.count() {
		return
	}
	for !s.stopped() {
		s.skipBlank()
		switch {
		case s.eof():
			return
		case s.peek(0) == '}':
			s.advance()
			return
		case s.peek(0) == ',':
			s.advance()
			continue
		}
		before := s.i
		s.lines = append(s.lines, s.line)
		kd := d + s.key()
		switch {
		case s.tooDeep(kd):
			return
		case s.peek(0) == '=':
			s.advance()
			s.value(kd)
			s.skipTime()
		case s.i == before:
			s.advance() // not a key: a mistake the decoder reports
		}
	}
}

// skipTime skips the time of a date-time written with a space, such as
// "1979-05-27 07:32:00", which value leaves: in an inline table it would
// read as the next key.
func (s *scanner) skipTime() {
	s.skipSpace()
	for !s.eof() && !isValueEnd(s.data[s.i]) {
		s.advance()
	}
}

// basicString skips "...", which cannot span lines.
func (s *scanner) basicString() {
	s.advance()
	for !s.eof() {
		switch s.data[s.i] {
		case '\\':
			s.advance()
			if !s.eof() {
				s.advance()
			}
		case '"':
			s.advance()
			return
		case '\n':
			return
		default:
			s.advance()
		}
	}
}

// literalString skips '...', which has no escapes and cannot span lines.
func (s *scanner) literalString() {
	s.advance()
	for !s.eof() {
		switch s.data[s.i] {
		case '\'':
			s.advance()
			return
		case '\n':
			return
		default:
			s.advance()
		}
	}
}

// multilineString skips a multi-line string: q is the quote byte, a
// double quote for a basic string (with escapes), an apostrophe for a
// literal one. Up to two quotes may end the text right before the
// closing three, as in """say "hi""""".
func (s *scanner) multilineString(q byte) {
	for range 3 {
		s.advance()
	}
	for !s.eof() {
		switch c := s.data[s.i]; {
		case c == '\\' && q == '"':
			s.advance()
			if !s.eof() {
				s.advance()
			}
		case c == q && s.peek(1) == q && s.peek(2) == q:
			for range 3 {
				s.advance()
			}
			for extra := 0; extra < 2 && s.peek(0) == q; extra++ {
				s.advance()
			}
			return
		default:
			s.advance()
		}
	}
}
