package testkit

import (
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// FreePort returns a port that was free on every address a moment ago:
// a UDP port for a network starting with "udp", a TCP port otherwise.
// It is taken from below the kernel's ephemeral range, at random: a port
// the kernel handed out (bind to :0) is one it may hand again, at once,
// to any of the thousands of client connections that tests and load
// loops open, and a superd that binds it later then finds it in use.
func FreePort(t testing.TB, network string) int {
	t.Helper()
	low, high := portsBelowEphemeral()
	for range 1000 {
		port := low + rand.IntN(high-low)
		if portFree(network, port) {
			return port
		}
	}
	t.Fatalf("no free %s port in %d-%d", network, low, high)
	return 0
}

// portsBelowEphemeral is the range FreePort picks from: 10000 up to the
// start of net.ipv4.ip_local_port_range.
func portsBelowEphemeral() (low, high int) {
	low, high = 10000, 32768
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if n, err := strconv.Atoi(f[0]); err == nil && n > low+1000 {
				high = n
			}
		}
	}
	return low, high
}

// portFree reports whether port can be bound on the wildcard address,
// which conflicts with a socket on any address.
func portFree(network string, port int) bool {
	addr := fmt.Sprintf(":%d", port)
	if strings.HasPrefix(network, "udp") {
		c, err := net.ListenPacket("udp", addr)
		if err != nil {
			return false
		}
		c.Close()
		return true
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return false
	}
	l.Close()
	return true
}

// Dial connects to the TCP address addr. The connection's deadline is
// Timeout from now, for the whole exchange; it is closed at the end of
// the test (closing it earlier is fine). Failing to connect fails the
// test.
func Dial(t testing.TB, addr string) net.Conn {
	t.Helper()
	return DialNetwork(t, "tcp", addr)
}

// DialNetwork is Dial for any network net.Dial knows ("unix", "udp",
// "tcp6", ...).
func DialNetwork(t testing.TB, network, addr string) net.Conn {
	t.Helper()
	c, err := net.DialTimeout(network, addr, Timeout)
	if err != nil {
		t.Fatalf("dial %s %s: %v", network, addr, err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(Timeout))
	return c
}

// RoundTrip connects to the TCP address addr, sends req (nothing when
// empty), closes its write side, and returns everything the server sent
// until it closed the connection. Any error, a reset included, fails
// the test.
func RoundTrip(t testing.TB, addr, req string) string {
	t.Helper()
	c := Dial(t, addr)
	defer c.Close()
	if req != "" {
		if _, err := io.WriteString(c, req); err != nil {
			t.Fatalf("write to %s: %v", addr, err)
		}
	}
	// Its error is the read's to report: a server that closed first
	// makes the shutdown fail too, and what it sent still counts.
	c.(*net.TCPConn).CloseWrite()
	b, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("read from %s after %q: %v", addr, b, err)
	}
	return string(b)
}

// ReadAll reads c until the peer closes it and returns what came. A
// reset counts as the end, not as an error: a handler that exits with
// input unread makes the kernel reset the connection. Other errors (the
// deadline, say) fail the test.
func ReadAll(t testing.TB, c net.Conn) string {
	t.Helper()
	b, err := io.ReadAll(c)
	if err != nil && !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("read from %s after %q: %v", c.RemoteAddr(), b, err)
	}
	return string(b)
}

// WaitFor polls cond every 10ms until it holds, for state that no event
// announces (a process count, a descriptor count). It fails the test,
// naming what, after Timeout.
func WaitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	WaitForWithin(t, Timeout, what, cond)
}

// WaitForWithin is WaitFor with a bound of its own, for scenarios whose
// size (and so whose "never") is scaled; a bound below Timeout is raised
// to it.
func WaitForWithin(t testing.TB, within time.Duration, what string, cond func() bool) {
	t.Helper()
	within = max(within, Timeout)
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("still waiting for %s after %v", what, within)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
