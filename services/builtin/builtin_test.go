package builtin

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/time/rate"
)

// testTimeout bounds every wait in these tests, so a bug fails a test
// instead of hanging it.
const testTimeout = 10 * time.Second

// clockSlack is how far a served time may be from the test's own clock.
const clockSlack = 5 * time.Second

// loopback returns 127.0.0.1; a function because a net.IP is a mutable slice.
func loopback() net.IP { return net.IPv4(127, 0, 0, 1) }

// wantPattern returns n bytes of the chargen pattern starting at line
// startLine, built straight from RFC 864's description rather than from the
// package's own generator.
func wantPattern(startLine, n int) []byte {
	var b []byte
	for line := startLine; len(b) < n; line++ {
		for col := 0; col < 72; col++ {
			b = append(b, byte(' '+(line+col)%95))
		}
		b = append(b, '\r', '\n')
	}
	return b[:n]
}

// checkDaytime fails t unless b is one RFC 867 line close to now.
func checkDaytime(t *testing.T, b []byte) {
	t.Helper()
	re := regexp.MustCompile(`^(Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday), ` +
		`(January|February|March|April|May|June|July|August|September|October|November|December) ` +
		`([1-9]|[12][0-9]|3[01]), [0-9]{4} [0-2][0-9]:[0-5][0-9]:[0-6][0-9]-UTC\r\n$`)
	if !re.Match(b) {
		t.Fatalf("daytime reply %q does not match %v", b, re)
	}
	got, err := time.Parse("Monday, January 2, 2006 15:04:05-MST\r\n", string(b))
	if err != nil {
		t.Fatalf("parse daytime reply %q: %v", b, err)
	}
	if d := time.Since(got); d > clockSlack || d < -clockSlack {
		t.Fatalf("daytime reply %q is %v away from now", b, d)
	}
}

// checkTime fails t unless b is a 4-byte RFC 868 time close to now.
func checkTime(t *testing.T, b []byte) {
	t.Helper()
	if len(b) != 4 {
		t.Fatalf("time reply is %d bytes (%x), want 4", len(b), b)
	}
	got := binary.BigEndian.Uint32(b)
	want := uint32(time.Now().Unix()) + 2208988800
	// The difference as int32 is right across the 2036 wrap too.
	if d := time.Duration(int32(got-want)) * time.Second; d > clockSlack || d < -clockSlack {
		t.Fatalf("time reply %d is %v away from now (%d)", got, d, want)
	}
}

func TestValidAndNames(t *testing.T) {
	tests := []struct {
		name string
		want bool
	}{
		{"echo", true},
		{"discard", true},
		{"chargen", true},
		{"daytime", true},
		{"time", true},
		{"", false},
		{"Echo", false},
		{"echo ", false},
		{"qotd", false},
		{"tcpmux", false},
	}
	for _, tt := range tests {
		if got := Valid(tt.name); got != tt.want {
			t.Errorf("Valid(%q) = %v, want %v", tt.name, got, tt.want)
		}
	}

	names := Names()
	if len(names) != 5 {
		t.Errorf("Names() = %q, want 5 names", names)
	}
	for _, n := range names {
		if !Valid(n) {
			t.Errorf("Names() lists %q, which Valid rejects", n)
		}
	}
	names[0] = "changed"
	if Names()[0] == "changed" {
		t.Errorf("Names() returned a shared slice")
	}
}

func TestUnknownName(t *testing.T) {
	_, server := tcpPair(t)
	tests := []struct {
		op  string
		err error
	}{
		{"ServeStream", ServeStream("qotd", server)},
		{"NewPacket", func() error { _, err := NewPacket("qotd", nil); return err }()},
	}
	for _, tt := range tests {
		if !errors.Is(tt.err, ErrUnknown) {
			t.Errorf("%s(qotd) error = %v, want ErrUnknown", tt.op, tt.err)
		}
		var e *Error
		if !errors.As(tt.err, &e) || e.Service != "qotd" || e.Op != "lookup" {
			t.Errorf("%s(qotd) error = %#v, want *Error{Service: qotd, Op: lookup}", tt.op, tt.err)
		}
	}
	if got, want := ServeStream("", server).Error(), "builtin : lookup: unknown built-in service"; got != want {
		t.Errorf("error text = %q, want %q", got, want)
	}
}

func TestErrorText(t *testing.T) {
	err := &Error{Service: "echo", Op: "read", Err: io.ErrUnexpectedEOF}
	if got, want := err.Error(), "builtin echo: read: unexpected EOF"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("errors.Is(%v, io.ErrUnexpectedEOF) = false, want true", err)
	}
}

func TestDaytimeAt(t *testing.T) {
	tests := []struct {
		in   time.Time
		want string
	}{
		{time.Date(2026, 11, 21, 17, 40, 1, 0, time.UTC), "Saturday, November 21, 2026 17:40:01-UTC\r\n"},
		// Any zone is reported in UTC; fractions of a second are dropped.
		{time.Date(2026, 11, 21, 18, 40, 1, 999999999, time.FixedZone("CET", 3600)), "Saturday, November 21, 2026 17:40:01-UTC\r\n"},
		{time.Date(2000, 2, 29, 0, 0, 0, 0, time.UTC), "Tuesday, February 29, 2000 00:00:00-UTC\r\n"},
		{time.Date(1999, 12, 31, 23, 59, 59, 0, time.UTC), "Friday, December 31, 1999 23:59:59-UTC\r\n"},
	}
	for _, tt := range tests {
		if got := string(daytimeAt(tt.in)); got != tt.want {
			t.Errorf("daytimeAt(%v) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestRFC868At(t *testing.T) {
	tests := []struct {
		in   time.Time
		want uint32
	}{
		// The examples from RFC 868 itself.
		{time.Date(1970, 1, 1, 0, 0, 0, 0, time.UTC), 2208988800},
		{time.Date(1976, 1, 1, 0, 0, 0, 0, time.UTC), 2398291200},
		{time.Date(1980, 1, 1, 0, 0, 0, 0, time.UTC), 2524521600},
		{time.Date(1983, 5, 1, 0, 0, 0, 0, time.UTC), 2629584000},
		{time.Date(1858, 11, 17, 0, 0, 0, 0, time.UTC), 2997239296}, // RFC's -1,297,728,000
		{time.Date(1900, 1, 1, 0, 0, 0, 0, time.UTC), 0},
		{time.Date(2026, 11, 21, 17, 40, 1, 0, time.UTC), 4004271601},
		// The 32-bit counter wraps in 2036.
		{time.Date(2036, 2, 7, 6, 28, 15, 0, time.UTC), 4294967295},
		{time.Date(2036, 2, 7, 6, 28, 16, 0, time.UTC), 0},
	}
	for _, tt := range tests {
		got := rfc868At(tt.in)
		if len(got) != 4 || binary.BigEndian.Uint32(got) != tt.want {
			t.Errorf("rfc868At(%v) = %x, want %08x", tt.in, got, tt.want)
		}
	}
}

func TestChargenRing(t *testing.T) {
	const line0 = " !\"#$%&'()*+,-./0123456789:;<=>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ[\\]^_`abcdefg\r\n"
	const line1 = "!\"#$%&'()*+,-./0123456789:;<=>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ[\\]^_`abcdefgh\r\n"
	tests := []struct {
		extra int
	}{{0}, {1}, {512}, {95 * 74}}
	for _, tt := range tests {
		ring := chargenRing(tt.extra)
		want := wantPattern(0, 95*74+tt.extra)
		if !bytes.Equal(ring, want) {
			t.Errorf("chargenRing(%d) differs from the RFC 864 pattern", tt.extra)
		}
		if got := string(ring[:2*74]); got != line0+line1 {
			t.Errorf("chargenRing(%d) starts %q, want %q", tt.extra, got, line0+line1)
		}
	}
}

// TestPacketSourceGuard checks which source addresses are answered, including
// ones a test cannot produce with a real socket (port 0, nil addresses).
func TestPacketSourceGuard(t *testing.T) {
	tests := []struct {
		addr net.Addr
		want Stats // besides Received, which is not touched by reply
	}{
		{&net.UDPAddr{IP: loopback(), Port: 0}, Stats{DroppedPort: 1}},
		{&net.UDPAddr{IP: loopback(), Port: 7}, Stats{DroppedPort: 1}},
		{&net.UDPAddr{IP: loopback(), Port: 19}, Stats{DroppedPort: 1}},
		{&net.UDPAddr{IP: net.IPv6loopback, Port: 53}, Stats{DroppedPort: 1}},
		{&net.UDPAddr{IP: loopback(), Port: 1023}, Stats{DroppedPort: 1}},
		{(*net.UDPAddr)(nil), Stats{DroppedPort: 1}},
		{&net.UDPAddr{IP: loopback(), Port: 1024}, Stats{}},
		{&net.UDPAddr{IP: loopback(), Port: 54321}, Stats{}},
		{&net.UnixAddr{Name: "/run/client.sock", Net: "unixgram"}, Stats{}},
		{&net.UnixAddr{Name: "", Net: "unixgram"}, Stats{DroppedUnnamed: 1}},
		{(*net.UnixAddr)(nil), Stats{DroppedUnnamed: 1}},
		{nil, Stats{DroppedUnnamed: 1}},
	}
	for _, tt := range tests {
		p, err := NewPacket("echo", nil)
		if err != nil {
			t.Fatal(err)
		}
		line := 0
		reply, ok := p.reply([]byte("ping"), tt.addr, &line)
		wantOK := tt.want == Stats{}
		if ok != wantOK || (ok && string(reply) != "ping") {
			t.Errorf("reply from %v = %q, %v; want answered %v", tt.addr, reply, ok, wantOK)
		}
		if got := p.Stats(); got != tt.want {
			t.Errorf("after a datagram from %v: Stats() = %+v, want %+v", tt.addr, got, tt.want)
		}
	}
}

// tcpPair returns both ends of a fresh loopback TCP connection, each with a
// deadline so that no test can block forever. Both are closed at cleanup.
func tcpPair(t *testing.T) (client, server *net.TCPConn) {
	t.Helper()
	ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: loopback()})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err = net.DialTCP("tcp", nil, ln.Addr().(*net.TCPAddr))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	server, err = ln.AcceptTCP()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { server.Close() })
	deadline := time.Now().Add(testTimeout)
	if err := client.SetDeadline(deadline); err != nil {
		t.Fatal(err)
	}
	if err := server.SetDeadline(deadline); err != nil {
		t.Fatal(err)
	}
	return client, server
}

// streamRun is one ServeStream call running in its own goroutine, the way
// the real caller runs it: the goroutine closes the server end when
// ServeStream returns.
type streamRun struct {
	client, server *net.TCPConn
	finished       chan struct{} // closed when ServeStream has returned
	err            error         // ServeStream's result; read after finished
}

// startStream serves name on a new loopback connection. Cleanup closes both
// ends and waits for the goroutine.
func startStream(t *testing.T, name string) *streamRun {
	t.Helper()
	client, server := tcpPair(t)
	r := &streamRun{client: client, server: server, finished: make(chan struct{})}
	go func() {
		defer close(r.finished)
		r.err = ServeStream(name, server)
		server.Close()
	}()
	t.Cleanup(func() {
		server.Close()
		<-r.finished
	})
	return r
}

// wait returns ServeStream's result, failing t if it does not come in time.
func (r *streamRun) wait(t *testing.T) error {
	t.Helper()
	select {
	case <-r.finished:
		return r.err
	case <-time.After(testTimeout):
		t.Fatalf("ServeStream did not return within %v", testTimeout)
		return nil
	}
}

// bulk is a payload larger than the socket buffers, so the services'
// read/write loops go round more than once.
func bulk() []byte {
	b := make([]byte, 1<<20)
	for i := range b {
		b[i] = byte(i * 7)
	}
	return b
}

func TestServeStream(t *testing.T) {
	tests := []struct {
		name string
		// talk plays the client while ServeStream runs; when it returns,
		// ServeStream must have returned nil.
		talk func(t *testing.T, c *net.TCPConn)
	}{
		{"echo", func(t *testing.T, c *net.TCPConn) {
			payload := bulk()
			// Write concurrently with reading: the echo fills both
			// directions' buffers long before the payload is through.
			werr := make(chan error, 1)
			go func() {
				_, err := c.Write(payload)
				if err == nil {
					err = c.CloseWrite()
				}
				werr <- err
			}()
			got, rerr := io.ReadAll(c)
			if err := <-werr; err != nil {
				t.Fatalf("write: %v", err)
			}
			if rerr != nil {
				t.Fatalf("read: %v", rerr)
			}
			if !bytes.Equal(got, payload) {
				t.Fatalf("echo returned %d bytes, want the %d sent", len(got), len(payload))
			}
		}},
		{"discard", func(t *testing.T, c *net.TCPConn) {
			if _, err := c.Write(bulk()); err != nil {
				t.Fatalf("write: %v", err)
			}
			if err := c.CloseWrite(); err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(c)
			if err != nil || len(got) != 0 {
				t.Fatalf("read = %q, %v; want nothing then EOF", got, err)
			}
		}},
		{"daytime", func(t *testing.T, c *net.TCPConn) {
			got, err := io.ReadAll(c)
			if err != nil {
				t.Fatalf("read: %v", err)
			}
			checkDaytime(t, got)
		}},
		{"time", func(t *testing.T, c *net.TCPConn) {
			got, err := io.ReadAll(c)
			if err != nil {
				t.Fatalf("read: %v", err)
			}
			checkTime(t, got)
		}},
		{"chargen", func(t *testing.T, c *net.TCPConn) {
			// Three periods and a bit, so the pattern's wrap is checked.
			got := make([]byte, 3*95*74+100)
			if _, err := io.ReadFull(c, got); err != nil {
				t.Fatalf("read: %v", err)
			}
			if want := wantPattern(0, len(got)); !bytes.Equal(got, want) {
				i := 0
				for got[i] == want[i] {
					i++
				}
				t.Fatalf("chargen differs from the pattern at byte %d: got %q, want %q", i, got[i:i+10], want[i:i+10])
			}
			// Leaving is how a chargen client ends the session.
			c.Close()
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := startStream(t, tt.name)
			tt.talk(t, r.client)
			if err := r.wait(t); err != nil {
				t.Errorf("ServeStream(%q) = %v, want nil", tt.name, err)
			}
		})
	}
}

// TestServeStreamLeavesConnOpen checks that ServeStream does not close conn
// and that echo half-closes it: the client sees EOF while the server end is
// still open.
func TestServeStreamLeavesConnOpen(t *testing.T) {
	tests := []struct {
		name  string
		send  string // written and half-closed by the client first
		check func(t *testing.T, got []byte)
		// halfCloses says ServeStream itself ends the server's write side,
		// so the client can read to EOF before the server end is closed.
		halfCloses bool
	}{
		{"echo", "abc", func(t *testing.T, got []byte) {
			if string(got) != "abc" {
				t.Fatalf("echo returned %q, want %q", got, "abc")
			}
		}, true},
		{"daytime", "", checkDaytime, false},
		{"time", "", checkTime, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			client, server := tcpPair(t)
			if _, err := client.Write([]byte(tt.send)); err != nil {
				t.Fatal(err)
			}
			if err := client.CloseWrite(); err != nil {
				t.Fatal(err)
			}
			// Synchronous: with the request already sent and the reply
			// small, ServeStream cannot block.
			if err := ServeStream(tt.name, server); err != nil {
				t.Fatalf("ServeStream(%q) = %v, want nil", tt.name, err)
			}
			if err := server.SetDeadline(time.Now().Add(testTimeout)); err != nil {
				t.Fatalf("server end unusable after ServeStream: %v", err)
			}
			if !tt.halfCloses {
				server.Close()
			}
			got, err := io.ReadAll(client)
			if err != nil {
				t.Fatalf("read: %v", err)
			}
			tt.check(t, got)
		})
	}
}

// TestServeStreamStop checks how each service ends when the caller stops it
// by closing conn or by a deadline, while the client just sits there.
func TestServeStreamStop(t *testing.T) {
	closeConn := func(c *net.TCPConn) { c.Close() }
	expire := func(c *net.TCPConn) { c.SetDeadline(time.Now()) }
	tests := []struct {
		desc    string
		name    string
		stop    func(server *net.TCPConn)
		wantErr error // nil: ServeStream returns nil
		wantOp  string
	}{
		{"close", "echo", closeConn, net.ErrClosed, "read"},
		{"close", "discard", closeConn, net.ErrClosed, "read"},
		{"close", "chargen", closeConn, nil, ""},
		{"deadline", "echo", expire, os.ErrDeadlineExceeded, "read"},
		{"deadline", "discard", expire, os.ErrDeadlineExceeded, "read"},
		{"deadline", "chargen", expire, os.ErrDeadlineExceeded, "write"},
	}
	for _, tt := range tests {
		t.Run(tt.desc+"/"+tt.name, func(t *testing.T) {
			r := startStream(t, tt.name)
			tt.stop(r.server)
			err := r.wait(t)
			if tt.wantErr == nil {
				if err != nil {
					t.Fatalf("ServeStream(%q) = %v, want nil", tt.name, err)
				}
				return
			}
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("ServeStream(%q) = %v, want %v", tt.name, err, tt.wantErr)
			}
			var e *Error
			if !errors.As(err, &e) || e.Service != tt.name || e.Op != tt.wantOp {
				t.Fatalf("ServeStream(%q) = %#v, want *Error{Service: %s, Op: %s}", tt.name, err, tt.name, tt.wantOp)
			}
		})
	}
}

// watchedConn is a real PacketConn that lets a test see how far Serve got:
// every ReadFrom call after the first means the datagram before it has been
// handled completely, so tests synchronize without sleeping.
type watchedConn struct {
	net.PacketConn
	reads  atomic.Int64
	readC  chan struct{} // capacity 1; poked after every reads increment
	writes atomic.Int64
}

func (c *watchedConn) ReadFrom(b []byte) (int, net.Addr, error) {
	c.reads.Add(1)
	select {
	case c.readC <- struct{}{}:
	default: // a poke is already pending; the waiter rechecks reads anyway
	}
	return c.PacketConn.ReadFrom(b)
}

func (c *watchedConn) WriteTo(b []byte, addr net.Addr) (int, error) {
	c.writes.Add(1)
	return c.PacketConn.WriteTo(b, addr)
}

// packetRun is one Packet.Serve call running in its own goroutine.
type packetRun struct {
	p        *Packet
	conn     *watchedConn
	finished chan struct{} // closed when Serve has returned
	err      error         // Serve's result; read after finished
}

// startPacket runs p.Serve(pc). Cleanup closes pc and waits for Serve.
func startPacket(t *testing.T, p *Packet, pc net.PacketConn) *packetRun {
	t.Helper()
	r := &packetRun{
		p:        p,
		conn:     &watchedConn{PacketConn: pc, readC: make(chan struct{}, 1)},
		finished: make(chan struct{}),
	}
	go func() {
		defer close(r.finished)
		r.err = p.Serve(r.conn)
	}()
	t.Cleanup(func() {
		pc.Close()
		<-r.finished
	})
	return r
}

// handled waits until Serve has completely handled n datagrams.
func (r *packetRun) handled(t *testing.T, n int64) {
	t.Helper()
	timeout := time.NewTimer(testTimeout)
	defer timeout.Stop()
	for r.conn.reads.Load() < n+1 {
		select {
		case <-r.conn.readC:
		case <-r.finished:
			t.Fatalf("Serve returned %v before handling %d datagrams", r.err, n)
		case <-timeout.C:
			t.Fatalf("Serve handled %d datagrams within %v, want %d", r.conn.reads.Load()-1, testTimeout, n)
		}
	}
}

// stop closes the socket and returns Serve's result.
func (r *packetRun) stop(t *testing.T) error {
	t.Helper()
	r.conn.Close()
	select {
	case <-r.finished:
		return r.err
	case <-time.After(testTimeout):
		t.Fatalf("Serve did not return within %v of Close", testTimeout)
		return nil
	}
}

// listenUDP binds a loopback UDP socket (port 0: any free port) and closes
// it at cleanup. Reads time out after testTimeout.
func listenUDP(t *testing.T) *net.UDPConn {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: loopback()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.SetDeadline(time.Now().Add(testTimeout)); err != nil {
		t.Fatal(err)
	}
	return c
}

// newPacket is NewPacket that fails t on error.
func newPacket(t *testing.T, name string, replies *rate.Limiter) *Packet {
	t.Helper()
	p, err := NewPacket(name, replies)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// roundTrip sends req from client to the server and returns the reply,
// checking that it came from the server's address.
func roundTrip(t *testing.T, client net.PacketConn, server net.Addr, req []byte) []byte {
	t.Helper()
	if _, err := client.WriteTo(req, server); err != nil {
		t.Fatalf("send: %v", err)
	}
	buf := make([]byte, 64<<10)
	n, from, err := client.ReadFrom(buf)
	if err != nil {
		t.Fatalf("receive: %v", err)
	}
	if from.String() != server.String() {
		t.Fatalf("reply came from %v, want %v", from, server)
	}
	return buf[:n]
}

func TestPacketUDP(t *testing.T) {
	const rounds = 3
	tests := []struct {
		name string
		req  string
		// check validates the reply to the i-th request; nil means the
		// service must not answer.
		check func(t *testing.T, i int, reply []byte)
	}{
		{"echo", "hello\x00\xffworld", func(t *testing.T, i int, reply []byte) {
			if string(reply) != "hello\x00\xffworld" {
				t.Fatalf("echo reply %q, want the request", reply)
			}
		}},
		{"echo", "", func(t *testing.T, i int, reply []byte) {
			if len(reply) != 0 {
				t.Fatalf("echo reply %q, want empty", reply)
			}
		}},
		{"discard", "into the void", nil},
		{"daytime", "", func(t *testing.T, i int, reply []byte) { checkDaytime(t, reply) }},
		{"time", "x", func(t *testing.T, i int, reply []byte) { checkTime(t, reply) }},
		{"chargen", "", func(t *testing.T, i int, reply []byte) {
			if len(reply) > 512 {
				t.Fatalf("chargen reply is %d bytes, want at most 512", len(reply))
			}
			// Each datagram starts one line further into the pattern.
			if want := wantPattern(i, len(reply)); !bytes.Equal(reply, want) {
				t.Fatalf("chargen reply %d = %q, want %q", i, reply, want)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			server := listenUDP(t)
			r := startPacket(t, newPacket(t, tt.name, nil), server)
			client := listenUDP(t)
			for i := range rounds {
				if tt.check == nil {
					if _, err := client.WriteTo([]byte(tt.req), server.LocalAddr()); err != nil {
						t.Fatal(err)
					}
					continue
				}
				tt.check(t, i, roundTrip(t, client, server.LocalAddr(), []byte(tt.req)))
			}
			r.handled(t, rounds)
			want := Stats{Received: rounds, Answered: rounds}
			if tt.check == nil {
				want.Answered = 0
			}
			if got := r.p.Stats(); got != want {
				t.Errorf("Stats() = %+v, want %+v", got, want)
			}
			if got := r.conn.writes.Load(); got != int64(want.Answered) {
				t.Errorf("Serve called WriteTo %d times, want %d", got, want.Answered)
			}
			if err := r.stop(t); err != nil {
				t.Errorf("Serve after Close = %v, want nil", err)
			}
		})
	}
}

// TestPacketPrivilegedSource sends from a real privileged port and checks
// that nothing is answered, while the same server still answers an ordinary
// client.
func TestPacketPrivilegedSource(t *testing.T) {
	// Binding below 1024 normally needs root (or CAP_NET_BIND_SERVICE, or a
	// lowered net.ipv4.ip_unprivileged_port_start): just try.
	var priv *net.UDPConn
	for port := 1023; port >= 900 && priv == nil; port-- {
		c, err := net.ListenUDP("udp", &net.UDPAddr{IP: loopback(), Port: port})
		if err == nil {
			priv = c
		} else if errors.Is(err, os.ErrPermission) {
			t.Skipf("cannot bind a privileged port (not root?): %v", err)
		}
	}
	if priv == nil {
		t.Skip("no free UDP port in 900-1023 on 127.0.0.1")
	}
	defer priv.Close()

	for _, name := range []string{"echo", "chargen", "daytime", "time"} {
		t.Run(name, func(t *testing.T) {
			server := listenUDP(t)
			r := startPacket(t, newPacket(t, name, nil), server)
			if _, err := priv.WriteTo([]byte("loop?"), server.LocalAddr()); err != nil {
				t.Fatal(err)
			}
			r.handled(t, 1)
			if got := r.conn.writes.Load(); got != 0 {
				t.Fatalf("Serve answered a datagram from %v (%d writes)", priv.LocalAddr(), got)
			}
			roundTrip(t, listenUDP(t), server.LocalAddr(), []byte("hi"))
			r.handled(t, 2)
			want := Stats{Received: 2, Answered: 1, DroppedPort: 1}
			if got := r.p.Stats(); got != want {
				t.Errorf("Stats() = %+v, want %+v", got, want)
			}
			if err := r.stop(t); err != nil {
				t.Errorf("Serve after Close = %v, want nil", err)
			}
		})
	}
}

// TestPacketRateLimit sends a burst of datagrams and checks that the reply
// limiter caps the answers and that Stats accounts for every drop.
func TestPacketRateLimit(t *testing.T) {
	const sent = 50
	tests := []struct {
		desc  string
		name  string
		limit rate.Limit
		burst int
		// minAnswers and maxAnswers bound the answers; maxAnswers also
		// grows by limit per second the test took.
		minAnswers, maxAnswers int
	}{
		{"5 per s, burst 5", "echo", 5, 5, 5, 5},
		{"5 per s, burst 5", "chargen", 5, 5, 5, 5},
		{"5 per s, burst 5", "daytime", 5, 5, 5, 5},
		// A zero rate never refills: exactly the burst is answered.
		{"only 3 ever", "time", 0, 3, 3, 3},
		{"never", "echo", 0, 0, 0, 0},
		{"discard takes no tokens", "discard", 1, 3, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name+"/"+tt.desc, func(t *testing.T) {
			start := time.Now()
			lim := rate.NewLimiter(tt.limit, tt.burst)
			server := listenUDP(t)
			r := startPacket(t, newPacket(t, tt.name, lim), server)
			client := listenUDP(t)
			for range sent {
				if _, err := client.WriteTo([]byte("burst"), server.LocalAddr()); err != nil {
					t.Fatal(err)
				}
			}
			r.handled(t, sent)
			elapsed := time.Since(start)

			st := r.p.Stats()
			maxAnswers := tt.maxAnswers + int(float64(tt.limit)*elapsed.Seconds())
			if int(st.Answered) < tt.minAnswers || int(st.Answered) > maxAnswers {
				t.Errorf("answered %d of %d in %v, want %d..%d", st.Answered, sent, elapsed, tt.minAnswers, maxAnswers)
			}
			wantDropped := sent - st.Answered
			if tt.name == "discard" {
				wantDropped = 0
			}
			want := Stats{Received: sent, Answered: st.Answered, DroppedRate: wantDropped}
			if st != want {
				t.Errorf("Stats() = %+v, want %+v", st, want)
			}
			if got := r.conn.writes.Load(); got != int64(st.Answered) {
				t.Errorf("Serve called WriteTo %d times, want %d", got, st.Answered)
			}
			// Every answer reached the client; nothing else was written.
			buf := make([]byte, 1024)
			for i := range st.Answered {
				if _, _, err := client.ReadFrom(buf); err != nil {
					t.Fatalf("reading answer %d of %d: %v", i+1, st.Answered, err)
				}
			}
			if tt.name == "discard" && lim.Tokens() != float64(tt.burst) {
				t.Errorf("discard left %v tokens, want %d", lim.Tokens(), tt.burst)
			}
			if err := r.stop(t); err != nil {
				t.Errorf("Serve after Close = %v, want nil", err)
			}
		})
	}
}

// TestPacketServeEnd checks Serve's results: nil after Close, a wrapped
// error for any other read failure.
func TestPacketServeEnd(t *testing.T) {
	tests := []struct {
		desc    string
		stop    func(pc net.PacketConn)
		wantErr error // nil: Serve returns nil
	}{
		{"close", func(pc net.PacketConn) { pc.Close() }, nil},
		{"read deadline", func(pc net.PacketConn) { pc.SetReadDeadline(time.Now()) }, os.ErrDeadlineExceeded},
	}
	for _, tt := range tests {
		for _, network := range []string{"udp", "unixgram"} {
			t.Run(tt.desc+"/"+network, func(t *testing.T) {
				var pc net.PacketConn
				if network == "udp" {
					pc = listenUDP(t)
				} else {
					pc = listenUnixgram(t, filepath.Join(shortTempDir(t), "s"))
				}
				r := startPacket(t, newPacket(t, "echo", nil), pc)
				tt.stop(pc)
				var err error
				select {
				case <-r.finished:
					err = r.err
				case <-time.After(testTimeout):
					t.Fatalf("Serve did not return within %v", testTimeout)
				}
				if tt.wantErr == nil {
					if err != nil {
						t.Fatalf("Serve = %v, want nil", err)
					}
					return
				}
				var e *Error
				if !errors.Is(err, tt.wantErr) || !errors.As(err, &e) || e.Op != "read" || e.Service != "echo" {
					t.Fatalf("Serve = %#v, want *Error{Service: echo, Op: read} wrapping %v", err, tt.wantErr)
				}
			})
		}
	}
}

// shortTempDir returns a new directory with a short path, since a unix
// socket path must fit in about 100 bytes and t.TempDir's may not.
func shortTempDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "superd-builtin")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// listenUnixgram binds a unixgram socket at path and closes it at cleanup.
func listenUnixgram(t *testing.T, path string) *net.UnixConn {
	t.Helper()
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.SetDeadline(time.Now().Add(testTimeout)); err != nil {
		t.Fatal(err)
	}
	return c
}

// TestPacketUnixgram checks the unixgram cases: a named peer is answered, an
// unnamed one cannot be and is skipped, and a failed reply does not stop
// Serve.
func TestPacketUnixgram(t *testing.T) {
	dir := shortTempDir(t)
	server := listenUnixgram(t, filepath.Join(dir, "server"))
	serverAddr := server.LocalAddr()

	// Queue a datagram from a peer that is gone before Serve reads it, so
	// that the reply's WriteTo fails for real.
	gone := listenUnixgram(t, filepath.Join(dir, "gone"))
	if _, err := gone.WriteTo([]byte("ghost"), serverAddr); err != nil {
		t.Fatal(err)
	}
	gone.Close()

	r := startPacket(t, newPacket(t, "echo", nil), server)
	r.handled(t, 1)

	unnamed, err := net.DialUnix("unixgram", nil, serverAddr.(*net.UnixAddr))
	if err != nil {
		t.Fatal(err)
	}
	defer unnamed.Close()
	if _, err := unnamed.Write([]byte("who am i")); err != nil {
		t.Fatal(err)
	}
	r.handled(t, 2)

	named := listenUnixgram(t, filepath.Join(dir, "named"))
	if got := roundTrip(t, named, serverAddr, []byte("hello")); string(got) != "hello" {
		t.Errorf("echo over unixgram = %q, want %q", got, "hello")
	}
	r.handled(t, 3)

	want := Stats{Received: 3, Answered: 1, DroppedUnnamed: 1, WriteErrors: 1}
	if got := r.p.Stats(); got != want {
		t.Errorf("Stats() = %+v, want %+v", got, want)
	}
	if got := r.conn.writes.Load(); got != 2 {
		t.Errorf("Serve called WriteTo %d times, want 2 (failed and answered)", got)
	}
	if err := r.stop(t); err != nil {
		t.Errorf("Serve after Close = %v, want nil", err)
	}
}

// TestPacketTwoSockets runs one Packet on two sockets at once, as a caller
// listening on several addresses would, and checks the shared counters.
func TestPacketTwoSockets(t *testing.T) {
	p := newPacket(t, "echo", nil)
	runs := []*packetRun{
		startPacket(t, p, listenUDP(t)),
		startPacket(t, p, listenUDP(t)),
	}
	client := listenUDP(t)
	for i, r := range runs {
		if got := roundTrip(t, client, r.conn.LocalAddr(), []byte("twin")); string(got) != "twin" {
			t.Errorf("socket %d echoed %q, want %q", i, got, "twin")
		}
		r.handled(t, 1)
	}
	if got, want := p.Stats(), (Stats{Received: 2, Answered: 2}); got != want {
		t.Errorf("Stats() = %+v, want %+v", got, want)
	}
	for i, r := range runs {
		if err := r.stop(t); err != nil {
			t.Errorf("Serve on socket %d after Close = %v, want nil", i, err)
		}
	}
}
