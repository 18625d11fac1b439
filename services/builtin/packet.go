package builtin

import (
	"errors"
	"math/rand/v2"
	"net"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
)

// PacketBufSize is the read buffer a datagram built-in needs: it holds
// the largest possible UDP payload (65507 bytes), so an echoed datagram
// is never silently truncated. Callers that read datagrams for Answer
// use a buffer this large.
const PacketBufSize = 64 << 10

const (

	// maxChargenDatagram is RFC 864's upper bound on a chargen datagram's
	// length ("a random number of characters (between 0 and 512)").
	maxChargenDatagram = 512

	// minUnprivilegedPort is the lowest source port that is answered. A
	// well-known or zero source port means the datagram most likely came
	// from another server (or was spoofed to look like it), and answering
	// would start an endless echo/chargen ping-pong; BSD inetd drops these
	// too.
	minUnprivilegedPort = 1024
)

// Packet serves datagrams of one built-in on a bound socket. Create it with
// NewPacket. Its configuration is fixed at creation; only its counters
// change, atomically, so Serve may run on several sockets at once (one call
// per socket) while Stats is read from any goroutine.
type Packet struct {
	name string
	// replies limits the number of answers; nil means unlimited. It is
	// shared with whoever passed it in and is safe for concurrent use.
	replies *rate.Limiter
	// ring is the chargen pattern with maxChargenDatagram bytes of run-on,
	// read-only after NewPacket; nil for the other services.
	ring []byte

	received       atomic.Uint64
	answered       atomic.Uint64
	droppedPort    atomic.Uint64
	droppedRate    atomic.Uint64
	droppedUnnamed atomic.Uint64
	writeErrors    atomic.Uint64
}

// Stats is a snapshot of a Packet's counters, cumulative over every Serve
// call. Every received datagram ends in exactly one of Answered,
// DroppedPort, DroppedRate, DroppedUnnamed or WriteErrors, except for
// discard, whose datagrams are only counted in Received.
type Stats struct {
	// Received counts datagrams read.
	Received uint64
	// Answered counts replies sent.
	Answered uint64
	// DroppedPort counts datagrams not answered because their UDP source
	// port was 0 or below 1024 (the reflection-loop guard).
	DroppedPort uint64
	// DroppedRate counts datagrams not answered because the reply limiter
	// had no token (the anti-amplification guard).
	DroppedRate uint64
	// DroppedUnnamed counts datagrams from an unnamed (unbound) unixgram
	// socket, which has no address to answer to.
	DroppedUnnamed uint64
	// WriteErrors counts replies whose WriteTo failed; Serve ignores those
	// errors and goes on with the next datagram.
	WriteErrors uint64
}

// NewPacket returns a Packet for the built-in name. replies, if non-nil,
// limits the answers: a datagram is answered only if replies.Allow() says
// so, and is dropped otherwise. Discard never answers and so never takes a
// token. The limiter is checked after the source-port guard, so datagrams
// that would be dropped anyway do not use up tokens. The returned error
// wraps ErrUnknown if name is not a built-in.
func NewPacket(name string, replies *rate.Limiter) (*Packet, error) {
	if !Valid(name) {
		return nil, &Error{Service: name, Op: "lookup", Err: ErrUnknown}
	}
	p := &Packet{name: name, replies: replies}
	if name == chargen {
		p.ring = chargenRing(maxChargenDatagram)
	}
	return p, nil
}

// Serve reads datagrams from pc and answers them until pc is closed, then
// returns nil (errors.Is(err, net.ErrClosed) → nil); other read errors are
// returned wrapped in *Error (Op "read"), including os.ErrDeadlineExceeded
// if the caller set a read deadline. Write errors do not end Serve: they
// are counted in Stats.WriteErrors, so one unreachable peer cannot stop the
// service and a failing socket cannot make Serve spin (the next read fails
// and returns).
//
// For each datagram, in order:
//   - discard: nothing more (never answered);
//   - UDP source port 0 or < 1024: dropped (Stats.DroppedPort);
//   - unixgram source without a name: dropped (Stats.DroppedUnnamed);
//   - replies limiter non-nil and out of tokens: dropped (Stats.DroppedRate);
//   - otherwise answered with WriteTo to the source: echo with the same
//     bytes, daytime with the RFC 867 line, time with the 4-byte RFC 868
//     value, chargen with 0..512 random-length bytes of the pattern, each
//     datagram starting one line further into it.
//
// Serve does not close pc; the caller does.
func (p *Packet) Serve(pc net.PacketConn) error {
	buf := make([]byte, PacketBufSize)
	// line is the chargen line the next chargen reply starts at. It is per
	// Serve call so that concurrent calls do not share it.
	line := 0
	for {
		n, addr, err := pc.ReadFrom(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			return &Error{Service: p.name, Op: "read", Err: err}
		}
		p.Answer(pc, buf[:n], addr, &line)
	}
}

// Answer handles one datagram, req, that came from addr, as Serve does
// with each datagram it reads: it counts it, and writes the reply (if
// any, see Serve) to addr on pc. line is the caller's chargen position,
// 0 at first, which every chargen reply advances; one position per
// socket. Callers that read datagrams themselves use it, to pick the
// Packet by the settings in force when each datagram arrived, say.
// Write errors are counted in Stats.WriteErrors, not returned.
func (p *Packet) Answer(pc net.PacketConn, req []byte, addr net.Addr, line *int) {
	p.received.Add(1)
	reply, ok := p.reply(req, addr, line)
	if !ok {
		return
	}
	if _, err := pc.WriteTo(reply, addr); err != nil {
		p.writeErrors.Add(1)
		return
	}
	p.answered.Add(1)
}

// reply decides whether the datagram req from addr is answered, counting
// the reason if it is not, and builds the answer. line is the caller's
// chargen position, advanced for every chargen answer.
func (p *Packet) reply(req []byte, addr net.Addr, line *int) ([]byte, bool) {
	if p.name == discard {
		return nil, false
	}
	switch a := addr.(type) {
	case *net.UDPAddr:
		if a == nil || a.Port < minUnprivilegedPort {
			p.droppedPort.Add(1)
			return nil, false
		}
	case *net.UnixAddr:
		if a == nil || a.Name == "" {
			p.droppedUnnamed.Add(1)
			return nil, false
		}
	case nil:
		// net.UnixConn reports an unbound unixgram peer as a nil Addr.
		p.droppedUnnamed.Add(1)
		return nil, false
	}
	if p.replies != nil && !p.replies.Allow() {
		p.droppedRate.Add(1)
		return nil, false
	}
	switch p.name {
	case echo:
		return req, true
	case daytime:
		return daytimeAt(time.Now()), true
	case timeSvc:
		return rfc868At(time.Now()), true
	case chargen:
		start := *line * chargenLineLen
		*line = (*line + 1) % chargenChars
		return p.ring[start : start+rand.IntN(maxChargenDatagram+1)], true
	}
	// Unreachable: NewPacket admits only valid names.
	return nil, false
}

// Stats returns a snapshot of the counters. Each counter is read atomically,
// but the set is not one instant: while Serve runs, the fields may be a
// datagram apart.
func (p *Packet) Stats() Stats {
	return Stats{
		Received:       p.received.Load(),
		Answered:       p.answered.Load(),
		DroppedPort:    p.droppedPort.Load(),
		DroppedRate:    p.droppedRate.Load(),
		DroppedUnnamed: p.droppedUnnamed.Load(),
		WriteErrors:    p.writeErrors.Load(),
	}
}
