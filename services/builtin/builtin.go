// Package builtin implements the classic in-process inetd services: echo
// (RFC 862), discard (RFC 863), chargen (RFC 864), daytime (RFC 867) and
// time (RFC 868), over stream connections (ServeStream) and datagram
// sockets (Packet).
//
// The package deliberately does not start goroutines, set deadlines, apply
// access control, log, or close the connections and sockets it is handed.
// The caller owns all of that: it bounds a stream service's lifetime with
// deadlines or by closing the connection, and stops a Packet by closing its
// socket. The one policy built in is the datagram reflection guard, because
// without it two servers can bounce echo or chargen datagrams at each other
// forever, and the optional reply rate limit against amplification.
package builtin

import (
	"encoding/binary"
	"errors"
	"io"
	"net"
	"syscall"
	"time"
)

// The built-in service names, as written in the configuration.
const (
	echo    = "echo"
	discard = "discard"
	chargen = "chargen"
	daytime = "daytime"
	timeSvc = "time"
)

const (
	// streamBufSize is the echo and discard read buffer: big enough that a
	// bulk sender costs few system calls.
	streamBufSize = 32 << 10

	// chargenLineWidth is the number of pattern characters per chargen line
	// (RFC 864's "72 chars per line"); every line also ends in CR LF.
	chargenLineWidth = 72
	chargenLineLen   = chargenLineWidth + 2
	// chargenChars is the number of printable ASCII characters (0x20-0x7e)
	// the pattern rotates through; after this many lines it repeats.
	chargenChars = 95

	// daytimeLayout is RFC 867's suggested human-readable form with the zone
	// spelled out, e.g. "Saturday, November 21, 2026 17:40:01-UTC".
	daytimeLayout = "Monday, January 2, 2006 15:04:05-MST"

	// rfc868Offset is the number of seconds from 1900-01-01 (RFC 868's
	// epoch) to 1970-01-01 (Unix's).
	rfc868Offset = 2208988800
)

// ErrUnknown reports a name that is not a built-in service.
var ErrUnknown = errors.New("unknown built-in service")

// Error is returned by this package's functions. It names the service and
// the operation that failed, and wraps the cause, so callers can test it
// with errors.Is (for example against net.ErrClosed or
// os.ErrDeadlineExceeded).
type Error struct {
	// Service is the built-in name, as given by the caller.
	Service string
	// Op is the failed operation: "lookup", "read", "write" or "close write".
	Op string
	// Err is the underlying error.
	Err error
}

// Error implements the error interface.
func (e *Error) Error() string {
	return "builtin " + e.Service + ": " + e.Op + ": " + e.Err.Error()
}

// Unwrap returns the underlying error.
func (e *Error) Unwrap() error { return e.Err }

// Names lists the built-in service names. The slice is new on every call, so
// the caller may keep or modify it.
func Names() []string {
	return []string{chargen, daytime, discard, echo, timeSvc}
}

// Valid reports whether name is a built-in service.
func Valid(name string) bool {
	switch name {
	case echo, discard, chargen, daytime, timeSvc:
		return true
	}
	return false
}

// ServeStream serves one stream connection for the built-in name until the
// protocol is done, the peer closes, or an I/O error happens (e.g. the caller
// closed conn to stop it). It does not close conn; the caller does. It sets
// no deadlines: chargen in particular runs until the caller stops it.
//
// Results by service:
//
//	service  returns nil                           returns *Error wrapping
//	-------  ------------------------------------  --------------------------------
//	echo     peer sent EOF; everything was echoed   any read or write error, e.g.
//	         and the write side half-closed (if     net.ErrClosed when the caller
//	         conn has CloseWrite)                   closed conn; a CloseWrite error
//	discard  peer sent EOF                          any read error
//	daytime  the time line was written              the write error
//	time     the 4 bytes were written               the write error
//	chargen  the peer went away (EPIPE,             any other write error, e.g.
//	         ECONNRESET) or the caller closed conn  os.ErrDeadlineExceeded
//	         (net.ErrClosed)
//	other    never                                  ErrUnknown (Op "lookup")
//
// Chargen treats the peer going away as success because it has no other way
// to end: its protocol is "write until the client leaves".
func ServeStream(name string, conn net.Conn) error {
	return ServeStreamBuffer(name, conn, nil)
}

// StreamBufferSize is the size of the read buffer echo and discard use.
const StreamBufferSize = streamBufSize

// ServeStreamBuffer is ServeStream with buf as echo's and discard's read
// buffer (nil: one of StreamBufferSize allocated for the connection), so
// that a server taking buffers from a pool allocates nothing per
// connection. The caller may reuse buf once it returns.
func ServeStreamBuffer(name string, conn net.Conn, buf []byte) error {
	if len(buf) == 0 && (name == echo || name == discard) {
		buf = make([]byte, streamBufSize)
	}
	switch name {
	case echo:
		return echoStream(name, conn, buf)
	case discard:
		return discardStream(name, conn, buf)
	case chargen:
		return chargenStream(name, conn)
	case daytime:
		return writeOnce(name, conn, daytimeAt(time.Now()))
	case timeSvc:
		return writeOnce(name, conn, rfc868At(time.Now()))
	}
	return &Error{Service: name, Op: "lookup", Err: ErrUnknown}
}

// echoStream copies conn back to itself until EOF, then half-closes so the
// peer sees EOF too while it may still be reading the echo. A hand-written
// loop rather than io.Copy, so a failure is attributed to the read or the
// write side.
func echoStream(name string, conn net.Conn, buf []byte) error {
	for {
		n, rerr := conn.Read(buf)
		if n > 0 {
			if _, werr := conn.Write(buf[:n]); werr != nil {
				return &Error{Service: name, Op: "write", Err: werr}
			}
		}
		if errors.Is(rerr, io.EOF) {
			break
		}
		if rerr != nil {
			return &Error{Service: name, Op: "read", Err: rerr}
		}
	}
	if cw, ok := conn.(interface{ CloseWrite() error }); ok {
		if err := cw.CloseWrite(); err != nil {
			return &Error{Service: name, Op: "close write", Err: err}
		}
	}
	return nil
}

// discardStream reads and drops everything until EOF.
func discardStream(name string, conn net.Conn, buf []byte) error {
	for {
		_, err := conn.Read(buf)
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return &Error{Service: name, Op: "read", Err: err}
		}
	}
}

// chargenStream writes the rotating pattern until a write fails. One full
// period (95 lines) is built per connection and written whole each time, so
// every write continues the pattern exactly where the last one stopped.
func chargenStream(name string, conn net.Conn) error {
	ring := chargenRing(0)
	for {
		if _, err := conn.Write(ring); err != nil {
			if peerGone(err) {
				return nil
			}
			return &Error{Service: name, Op: "write", Err: err}
		}
	}
}

// peerGone reports whether a write error means the connection is over in the
// ordinary way: the peer closed or reset it, or the caller closed it.
func peerGone(err error) bool {
	return errors.Is(err, syscall.EPIPE) ||
		errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, net.ErrClosed)
}

// writeOnce writes b and reports the write error, if any.
func writeOnce(name string, conn net.Conn, b []byte) error {
	if _, err := conn.Write(b); err != nil {
		return &Error{Service: name, Op: "write", Err: err}
	}
	return nil
}

// daytimeAt returns the RFC 867 reply for t: t in UTC in human-readable form,
// terminated by CR LF.
func daytimeAt(t time.Time) []byte {
	return t.UTC().AppendFormat(nil, daytimeLayout+"\r\n")
}

// rfc868At returns the RFC 868 reply for t: seconds since 1900-01-01 00:00
// UTC as a 32-bit big-endian number. The arithmetic is deliberately uint32,
// so it wraps in 2036 exactly as the protocol does.
func rfc868At(t time.Time) []byte {
	return binary.BigEndian.AppendUint32(nil, uint32(t.Unix())+rfc868Offset)
}

// chargenRing returns one full period of the chargen pattern (95 lines of 72
// rotating printable characters plus CR LF), followed by extra more bytes of
// the same pattern so that a slice of up to extra bytes can start at any line
// of the period without wrapping.
func chargenRing(extra int) []byte {
	b := make([]byte, chargenChars*chargenLineLen+extra)
	for i := range b {
		line, col := i/chargenLineLen, i%chargenLineLen
		switch {
		case col < chargenLineWidth:
			b[i] = ' ' + byte((line+col)%chargenChars)
		case col == chargenLineWidth:
			b[i] = '\r'
		default:
			b[i] = '\n'
		}
	}
	return b
}
