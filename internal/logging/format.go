package logging

import (
	"log/slog"
	"strconv"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"
)

// This file holds the fast path every sink renders its lines with: a
// hand-written formatter producing exactly the bytes that slog.TextHandler
// writes for scope.record (see scope.go), for the records superd logs per
// connection (start, exit, stderr lines), without slog.TextHandler's
// per-record setup and allocations. It only knows the attribute kinds whose
// text it can reproduce byte for byte without calling user code:
//
//	kind             rendered as (what slog.TextHandler does)
//	String           as is, or strconv.Quote'd if needsQuoting says so
//	Int64, Uint64    decimal
//	Float64          strconv 'g', shortest
//	Bool             true, false
//	Duration         Duration.String
//	Time             RFC 3339 with milliseconds
//
// Everything else (groups, WithGroup, LogValuers, Any values, an empty
// key) makes appendFast report false, and the sink renders that record
// through slog.TextHandler as before, so the output never depends on which
// path ran. format_test.go checks the two paths against each other,
// FuzzFormat included.

// maxPooledLine is the capacity above which a line buffer is not kept for
// reuse: one huge record must not pin its buffer forever.
const maxPooledLine = 16 << 10

// linePool hands out buffers to render one line into. The zero value is
// ready to use; a sink keeps one for all the handlers derived from it
// (there is no package-level pool: the package has no mutable state).
type linePool struct{ p sync.Pool }

// get returns an empty buffer; give it back with put.
func (lp *linePool) get() *[]byte {
	if b, ok := lp.p.Get().(*[]byte); ok {
		*b = (*b)[:0]
		return b
	}
	b := make([]byte, 0, 256)
	return &b
}

// put returns b to the pool; the caller must not use it afterwards.
func (lp *linePool) put(b *[]byte) {
	if cap(*b) > maxPooledLine {
		return
	}
	lp.p.Put(b)
}

// appendFast appends to dst the line slog.TextHandler renders for r, logged
// through a handler with scope s, and reports whether it could (see the
// top of this file); if not, dst is returned as it came.
//
// With header (the stderr sink) the line is what a TextHandler with
// ReplaceAttr dropEmptyMessage writes for s.record(r, r.Time), newline
// included. Without header (syslog, journal) it is what scope.text returns:
// the same for s.record(r, time.Time{}) under replaceHeaderBuiltins, with
// no time, level or newline.
func (s scope) appendFast(dst []byte, r slog.Record, header bool) ([]byte, bool) {
	if len(s.groups) > 0 {
		return dst, false
	}
	start := len(dst)
	if header {
		if !r.Time.IsZero() {
			dst = append(dst, "time="...)
			dst = appendRFC3339Millis(dst, r.Time)
			dst = append(dst, ' ')
		}
		// Level.String never needs quoting: letters, digits, '+' and '-'.
		dst = append(dst, "level="...)
		dst = append(dst, r.Level.String()...)
	}
	ok := true
	for _, a := range s.attrs {
		if dst, ok = appendFastAttr(dst, start, a); !ok {
			return dst[:start], false
		}
	}
	if r.Message != "" {
		dst = appendSep(dst, start)
		dst = append(dst, eventKey+"="...)
		dst = appendTextString(dst, r.Message)
	}
	r.Attrs(func(a slog.Attr) bool {
		dst, ok = appendFastAttr(dst, start, a)
		return ok
	})
	if !ok {
		return dst[:start], false
	}
	if header {
		dst = append(dst, '\n')
	}
	return dst, true
}

// appendSep appends the space slog puts between attributes, unless the line
// that began at start is still empty.
func appendSep(dst []byte, start int) []byte {
	if len(dst) > start {
		dst = append(dst, ' ')
	}
	return dst
}

// appendFastAttr appends " key=value" (without the space at the start of
// the line that began at start) for a top-level attribute, and reports
// whether its kind is one appendFast renders.
func appendFastAttr(dst []byte, start int, a slog.Attr) ([]byte, bool) {
	// An empty key is left to slog: whether it elides the attribute
	// depends on the Value's internals (slog's Attr.isEmpty).
	if a.Key == "" {
		return dst, false
	}
	v := a.Value
	switch v.Kind() {
	case slog.KindString:
		// Both ReplaceAttr funcs drop a top-level msg="" (see
		// dropEmptyMessage).
		if a.Key == slog.MessageKey && v.String() == "" {
			return dst, true
		}
		dst = appendKey(dst, start, a.Key)
		return appendTextString(dst, v.String()), true
	case slog.KindInt64:
		return strconv.AppendInt(appendKey(dst, start, a.Key), v.Int64(), 10), true
	case slog.KindUint64:
		return strconv.AppendUint(appendKey(dst, start, a.Key), v.Uint64(), 10), true
	case slog.KindFloat64:
		return strconv.AppendFloat(appendKey(dst, start, a.Key), v.Float64(), 'g', -1, 64), true
	case slog.KindBool:
		return strconv.AppendBool(appendKey(dst, start, a.Key), v.Bool()), true
	case slog.KindDuration:
		return appendDuration(appendKey(dst, start, a.Key), v.Duration()), true
	case slog.KindTime:
		return appendRFC3339Millis(appendKey(dst, start, a.Key), v.Time()), true
	}
	// KindAny (its text may come from a TextMarshaler, an Error method or
	// fmt), KindLogValuer (resolving it twice could have side effects) and
	// KindGroup.
	return dst, false
}

// appendKey appends the separator, key, quoted as slog quotes it, and '='.
func appendKey(dst []byte, start int, key string) []byte {
	dst = appendSep(dst, start)
	dst = appendTextString(dst, key)
	return append(dst, '=')
}

// appendTextString appends s as slog.TextHandler writes a string key or
// value: as is, or Go-quoted when needsQuoting says so.
func appendTextString(dst []byte, s string) []byte {
	if needsQuoting(s) {
		return strconv.AppendQuote(dst, s)
	}
	return append(dst, s...)
}

// needsQuoting is log/slog's rule (text_handler.go) for a string that
// cannot be written bare: empty, or holding a space, '=', a quote, a
// control character, invalid UTF-8, or a non-printing or space rune.
func needsQuoting(s string) bool {
	if len(s) == 0 {
		return true
	}
	for i := 0; i < len(s); {
		b := s[i]
		if b < utf8.RuneSelf {
			// Quote anything except a backslash that would need quoting in a
			// JSON string, as well as space and '='.
			if b != '\\' && (b == ' ' || b == '=' || !jsonSafe(b)) {
				return true
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError || unicode.IsSpace(r) || !unicode.IsPrint(r) {
			return true
		}
		i += size
	}
	return false
}

// jsonSafe reports whether ASCII byte b may stand in a JSON string as is:
// slog's safeSet, which is every printable ASCII byte but '"' and '\\'.
// (A function rather than slog's table, which would be package-level
// state.)
func jsonSafe(b byte) bool {
	return b >= ' ' && b != '"' && b != '\\' && b < utf8.RuneSelf
}

// appendRFC3339Millis is log/slog's time format (handler.go): RFC 3339 with
// exactly three digits of milliseconds, truncated, not rounded.
func appendRFC3339Millis(b []byte, t time.Time) []byte {
	// Format according to time.RFC3339Nano since it is highly optimized,
	// but truncate it to use millisecond resolution. That format trims
	// trailing 0s, so add 1/10 millisecond to guarantee that there are
	// exactly 4 digits after the period, then drop the 4th.
	const prefixLen = len("2006-01-02T15:04:05.000")
	n := len(b)
	t = t.Truncate(time.Millisecond).Add(time.Millisecond / 10)
	b = t.AppendFormat(b, time.RFC3339Nano)
	return append(b[:n+prefixLen], b[n+prefixLen+1:]...)
}

// appendDuration appends d.String(). time.Duration has no append form, and
// String allocates the string it returns; this is its algorithm
// (time.Duration.format) writing into a stack array instead.
func appendDuration(dst []byte, d time.Duration) []byte {
	// Largest time is 2540400h10m10.000000000s.
	var buf [32]byte
	w := len(buf)

	u := uint64(d)
	neg := d < 0
	if neg {
		u = -u
	}

	if u < uint64(time.Second) {
		// Smaller than a second: smaller units, like 1.2ms.
		var prec int
		w--
		buf[w] = 's'
		w--
		switch {
		case u == 0:
			buf[w] = '0'
			return append(dst, buf[w:]...)
		case u < uint64(time.Microsecond):
			prec = 0
			buf[w] = 'n'
		case u < uint64(time.Millisecond):
			prec = 3
			// U+00B5 'µ' micro sign == 0xC2 0xB5; needs two bytes.
			w--
			copy(buf[w:], "µ")
		default:
			prec = 6
			buf[w] = 'm'
		}
		w, u = fmtFrac(buf[:w], u, prec)
		w = fmtInt(buf[:w], u)
	} else {
		w--
		buf[w] = 's'
		w, u = fmtFrac(buf[:w], u, 9)
		// u is now integer seconds.
		w = fmtInt(buf[:w], u%60)
		u /= 60
		// u is now integer minutes.
		if u > 0 {
			w--
			buf[w] = 'm'
			w = fmtInt(buf[:w], u%60)
			u /= 60
			// u is now integer hours; days can be different lengths.
			if u > 0 {
				w--
				buf[w] = 'h'
				w = fmtInt(buf[:w], u)
			}
		}
	}
	if neg {
		w--
		buf[w] = '-'
	}
	return append(dst, buf[w:]...)
}

// fmtFrac formats the fraction of v/10**prec (e.g., ".12345") into the tail
// of buf, omitting trailing zeros, and the decimal point too when the
// fraction is 0. It returns the index where the output bytes begin and the
// value v/10**prec. (time's fmtFrac.)
func fmtFrac(buf []byte, v uint64, prec int) (nw int, nv uint64) {
	w := len(buf)
	print := false
	for i := 0; i < prec; i++ {
		digit := v % 10
		print = print || digit != 0
		if print {
			w--
			buf[w] = byte(digit) + '0'
		}
		v /= 10
	}
	if print {
		w--
		buf[w] = '.'
	}
	return w, v
}

// fmtInt formats v into the tail of buf and returns the index where the
// output begins. (time's fmtInt.)
func fmtInt(buf []byte, v uint64) int {
	w := len(buf)
	if v == 0 {
		w--
		buf[w] = '0'
	} else {
		for v > 0 {
			w--
			buf[w] = byte(v%10) + '0'
			v /= 10
		}
	}
	return w
}
