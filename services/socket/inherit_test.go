package socket

import (
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/superd/superd/config"
)

// inheritedFile makes a socket as systemd would pass one and returns a
// duplicate of it, with its port (0 for unix sockets).
func inheritedFile(t *testing.T, network, addr string) (*os.File, int) {
	t.Helper()
	var c syscall.Conn
	var port int
	if strings.HasPrefix(network, "udp") || network == "unixgram" {
		pc, err := net.ListenPacket(network, addr)
		if err != nil {
			t.Skipf("%s %s: %v", network, addr, err)
		}
		t.Cleanup(func() { pc.Close() })
		c = pc.(syscall.Conn)
		if a, ok := pc.LocalAddr().(*net.UDPAddr); ok {
			port = a.Port
		}
	} else {
		ln, err := net.Listen(network, addr)
		if err != nil {
			t.Skipf("%s %s: %v", network, addr, err)
		}
		t.Cleanup(func() { ln.Close() })
		c = ln.(syscall.Conn)
		if a, ok := ln.Addr().(*net.TCPAddr); ok {
			port = a.Port
		}
	}
	f, err := DupConn(c, "inherited")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f, port
}

// TestFits is the truth table of Fits on real sockets.
func TestFits(t *testing.T) {
	dir := t.TempDir()
	stream := filepath.Join(dir, "s.sock")
	dgram := filepath.Join(dir, "d.sock")
	for _, tc := range []struct {
		network, addr string // the inherited socket
		key           config.ListenKey
		fits          bool
	}{
		{"tcp4", "127.0.0.1:0", k("tcp", "127.0.0.1:P"), true},
		{"tcp4", "127.0.0.1:0", k("tcp4", "127.0.0.1:P"), true},
		{"tcp4", "127.0.0.1:0", k("tcp6", "127.0.0.1:P"), false},
		{"tcp4", "127.0.0.1:0", k("tcp", "127.0.0.2:P"), false},
		{"tcp4", "127.0.0.1:0", k("tcp", "127.0.0.1:1P"), false}, // another port, same digits at the end
		{"tcp4", "127.0.0.1:0", k("udp", "127.0.0.1:P"), false},
		{"tcp4", "127.0.0.1:0", k("tcp", ":P"), false},
		{"tcp4", "0.0.0.0:0", k("tcp4", ":P"), true},
		{"tcp4", "0.0.0.0:0", k("tcp", ":P"), false}, // IPv4 only
		{"tcp", ":0", k("tcp", ":P"), true},          // dual-stack [::]
		{"tcp", ":0", k("tcp", "0.0.0.0:P"), true},
		{"tcp", ":0", k("tcp6", "[::]:P"), false}, // tcp6 is v6-only
		{"tcp6", "[::]:0", k("tcp6", "[::]:P"), true},
		{"tcp6", "[::]:0", k("tcp", ":P"), false},
		{"tcp6", "[::1]:0", k("tcp", "[::1]:P"), true},
		{"tcp6", "[::1]:0", k("tcp4", "[::1]:P"), false},
		{"udp4", "127.0.0.1:0", k("udp", "127.0.0.1:P"), true},
		{"udp4", "127.0.0.1:0", k("tcp", "127.0.0.1:P"), false},
		{"unix", stream, k("unix", stream), true},
		{"unix", stream + "2", k("unixgram", stream+"2"), false},
		{"unix", stream + "3", k("unix", dgram), false},
		{"unixgram", dgram, k("unixgram", dgram), true},
	} {
		f, port := inheritedFile(t, tc.network, tc.addr)
		key := tc.key
		key.Address = strings.Replace(key.Address, "P", strconv.Itoa(port), 1)
		if err := Fits(key, f); (err == nil) != tc.fits {
			t.Errorf("%s %s for %s: Fits = %v, want fits %v", tc.network, tc.addr, key, err, tc.fits)
		}
		id, err := Identify(f)
		if err != nil {
			t.Fatal(err)
		}
		if err := id.Fits(key); (err == nil) != tc.fits {
			t.Errorf("%s %s for %s: Identity.Fits = %v, want fits %v", tc.network, tc.addr, key, err, tc.fits)
		}
	}
}

// TestFitsNotListening: a stream socket that does not listen is no
// socket to adopt.
func TestFitsNotListening(t *testing.T) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		unix.Close(fd)
		t.Fatal(err)
	}
	f := os.NewFile(uintptr(fd), "bound")
	defer f.Close()
	sa, _ := unix.Getsockname(fd)
	key := config.ListenKey{Network: "tcp", Address: "127.0.0.1:" + strconv.Itoa(sa.(*unix.SockaddrInet4).Port)}
	if err := Fits(key, f); err == nil || !strings.Contains(err.Error(), "does not listen") {
		t.Errorf("Fits of a bound, not listening socket = %v, want it refused", err)
	}
}

// TestFromFileServes adopts an inherited listener and accepts on it.
func TestFromFileServes(t *testing.T) {
	f, port := inheritedFile(t, "tcp4", "127.0.0.1:0")
	key := config.ListenKey{Network: "tcp", Address: "127.0.0.1:" + strconv.Itoa(port)}
	s, err := FromFile(key, f, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	c, err := net.Dial("tcp", key.Address)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fd, _, err := s.AcceptRaw()
	if err != nil {
		t.Fatal(err)
	}
	unix.Close(fd)
	if _, err := FromFile(config.ListenKey{Network: "udp", Address: key.Address}, f, 0, 0); err == nil {
		t.Errorf("FromFile of a closed file succeeded")
	}
}

func k(network, addr string) config.ListenKey {
	return config.ListenKey{Network: network, Address: addr}
}
