package legacy

import (
	"bufio"
	"fmt"
	"io"
	"strconv"
	"strings"
	"unicode/utf8"
)

// WriteTOML writes the services as services.toml text: a header naming
// the inputs, the NOT CONVERTED items of no one service, then one table
// per service (or, for a skipped one, its comments alone), each preceded
// by a comment saying where it comes from.
func (r *Result) WriteTOML(w io.Writer) error {
	bw := bufio.NewWriter(w)
	bw.WriteString("# services.toml written by superd convert from:\n")
	for _, in := range r.Inputs {
		fmt.Fprintf(bw, "#   %s (%s)\n", comment(in.Path), in.Dialect)
	}
	bw.WriteString("# Review every \"NOT CONVERTED\" comment, then check the result with\n")
	bw.WriteString("#   superd check --config FILE\n")
	if len(r.General)+len(r.Notes) > 0 {
		bw.WriteString("\n")
		for _, n := range r.Notes {
			fmt.Fprintf(bw, "# note: %s\n", comment(n))
		}
		for _, n := range r.General {
			writeLost(bw, n)
		}
	}
	if len(r.Services) == 0 {
		bw.WriteString("\n# (no services found)\n")
	}
	for _, s := range r.Services {
		bw.WriteString("\n")
		writeService(bw, s)
	}
	return bw.Flush()
}

// writeService writes one service.
func writeService(w *bufio.Writer, s *Service) {
	fmt.Fprintf(w, "# %s: %s, %s\n", comment(s.Name), comment(s.Origin), comment(s.Source))
	if !s.Skipped {
		fmt.Fprintf(w, "[services.%s]\n", tomlKey(s.Name))
		for _, k := range s.Keys {
			fmt.Fprintf(w, "%s = %s\n", tomlKey(k.Name), tomlValue(k.Value))
		}
	}
	for _, n := range s.Notes {
		fmt.Fprintf(w, "# note: %s\n", comment(n))
	}
	for _, n := range s.NotConverted {
		writeLost(w, n)
	}
}

// writeLost writes the comment the issue calls for:
// "# NOT CONVERTED: <original> — <why>".
func writeLost(w *bufio.Writer, n NotConverted) {
	fmt.Fprintf(w, "# NOT CONVERTED: %s — %s\n", comment(n.Original), comment(n.Why))
}

// tomlKey writes a bare key when TOML allows one, else a quoted key.
func tomlKey(k string) string {
	bare := k != ""
	for _, r := range k {
		if !(r == '-' || r == '_' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9') {
			bare = false
		}
	}
	if bare {
		return k
	}
	return quote(k)
}

// tomlValue formats one of the value types Key allows.
func tomlValue(v any) string {
	switch x := v.(type) {
	case bool:
		return strconv.FormatBool(x)
	case int:
		return strconv.Itoa(x)
	case float64:
		s := strconv.FormatFloat(x, 'f', -1, 64)
		if !strings.Contains(s, ".") {
			s += ".0"
		}
		return s
	case string:
		return quote(x)
	case []string:
		q := make([]string, len(x))
		for i, e := range x {
			q[i] = quote(e)
		}
		return "[" + strings.Join(q, ", ") + "]"
	case []Pair:
		q := make([]string, len(x))
		for i, p := range x {
			q[i] = tomlKey(p.Name) + " = " + tomlValue(p.Value)
		}
		return "{ " + strings.Join(q, ", ") + " }"
	}
	panic(fmt.Sprintf("legacy: key value of type %T", v)) // a bug in this package
}

// quote writes a TOML basic string. Bytes that are not UTF-8 cannot be
// written in TOML at all; they become U+FFFD, and the parsers report a
// value holding them as not converted.
func quote(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"':
			b.WriteString(`\"`)
		case r == '\\':
			b.WriteString(`\\`)
		case r == '\t':
			b.WriteString(`\t`)
		case r < 0x20 || r == 0x7f:
			fmt.Fprintf(&b, `\u%04X`, r)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}

// comment makes text safe inside a TOML comment, which holds neither
// control characters (tab aside) nor bytes that are not UTF-8: those are
// shown as \xNN.
func comment(s string) string {
	ok := utf8.ValidString(s)
	for i := 0; ok && i < len(s); i++ {
		if c := s[i]; (c < 0x20 && c != '\t') || c == 0x7f {
			ok = false
		}
	}
	if ok {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		if (r == utf8.RuneError && n == 1) || (r < 0x20 && r != '\t') || r == 0x7f {
			fmt.Fprintf(&b, `\x%02x`, s[i])
		} else {
			b.WriteString(s[i : i+n])
		}
		i += n
	}
	return b.String()
}
