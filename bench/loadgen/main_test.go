package main

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
)

func TestLoopbackAddr(t *testing.T) {
	for _, tc := range []struct {
		in, want string // want "": refused
	}{
		{"127.0.0.1:7", "127.0.0.1:7"},
		{"127.9.8.7:7", "127.9.8.7:7"},
		{"localhost:7", "127.0.0.1:7"},
		{"[::1]:7", "[::1]:7"},
		{"[::ffff:127.0.0.1]:7", "127.0.0.1:7"},
		{"192.0.2.1:7", ""},
		{"[::ffff:192.0.2.1]:7", ""},
		{"[fe80::1%lo]:7", ""},
		{"127.0.0.1:0", ""},
		{"example.com:7", ""},
		{"127.0.0.1", ""},
	} {
		got, err := loopbackAddr(tc.in)
		if tc.want == "" {
			if err == nil {
				t.Errorf("loopbackAddr(%q) = %v, want an error", tc.in, got)
			}
			continue
		}
		if err != nil || got.String() != tc.want {
			t.Errorf("loopbackAddr(%q) = %v, %v; want %s", tc.in, got, err, tc.want)
		}
	}
}

func TestSourcePrefix(t *testing.T) {
	for _, tc := range []struct {
		in string
		ok bool
	}{
		{"127.1.0.0/16", true},
		{"127.0.0.0/8", true},
		{"127.1.2.0/30", true},
		{"127.1.2.3/16", true}, // masked to 127.1.0.0/16
		{"127.1.2.0/31", false},
		{"10.0.0.0/8", false},
		{"0.0.0.0/0", false},
		{"::1/128", false},
		{"127.1.0.0", false},
	} {
		_, err := sourcePrefix(tc.in)
		if (err == nil) != tc.ok {
			t.Errorf("sourcePrefix(%q): error %v, want ok=%v", tc.in, err, tc.ok)
		}
	}
}

func TestSourceAddrCycles(t *testing.T) {
	p16 := netip.MustParsePrefix("127.1.0.0/16")
	p30 := netip.MustParsePrefix("127.1.2.0/30")
	for _, tc := range []struct {
		p    netip.Prefix
		i    uint64
		want string
	}{
		{p16, 0, "127.1.0.1"},
		{p16, 254, "127.1.0.255"},
		{p16, 255, "127.1.1.0"},
		{p16, 65533, "127.1.255.254"},
		{p16, 65534, "127.1.0.1"},
		{p30, 0, "127.1.2.1"},
		{p30, 1, "127.1.2.2"},
		{p30, 2, "127.1.2.1"},
	} {
		if got := sourceAddr(tc.p, tc.i); got.String() != tc.want {
			t.Errorf("sourceAddr(%v, %d) = %v, want %s", tc.p, tc.i, got, tc.want)
		}
	}
}

// server is a test superserver on 127.0.0.1:0 that answers each
// connection with reply(line) and records the clients' addresses.
type server struct {
	ln    net.Listener
	wg    sync.WaitGroup
	mu    sync.Mutex
	peers map[netip.Addr]int
}

// startServer starts the server's accept goroutine; the test's cleanup
// closes the listener and waits for it and for every connection's
// goroutine.
func startServer(t *testing.T, reply func(line string) string) *server {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &server{ln: ln, peers: map[netip.Addr]int{}}
	s.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return // closed by the cleanup
			}
			s.mu.Lock()
			s.peers[c.RemoteAddr().(*net.TCPAddr).AddrPort().Addr()]++
			s.mu.Unlock()
			s.wg.Go(func() {
				defer c.Close()
				line, err := bufio.NewReader(c).ReadString('\n')
				if err != nil {
					return
				}
				io.WriteString(c, reply(line))
			})
		}
	})
	t.Cleanup(func() {
		ln.Close()
		s.wg.Wait()
	})
	return s
}

// runLoadgen runs loadgen with args and returns its exit status and
// result line.
func runLoadgen(t *testing.T, args ...string) (int, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := run(args, &stdout, &stderr)
	t.Logf("loadgen %s: exit %d\n%s%s", strings.Join(args, " "), code, stderr.String(), stdout.String())
	return code, strings.TrimSpace(stdout.String())
}

func TestRunChecksEveryReplyAndSpreadsSources(t *testing.T) {
	s := startServer(t, func(line string) string { return line })
	code, res := runLoadgen(t, "-addr", s.ln.Addr().String(), "-n", "40", "-c", "4", "-name", "t")
	if code != 0 || !strings.Contains(res, " conns=40 errors=0 ") {
		t.Fatalf("exit %d, result %q; want 0 and conns=40 errors=0", code, res)
	}
	s.ln.Close() // no more connections: the map is final once the last client is done
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.peers) != 40 {
		t.Errorf("the server saw %d client addresses (%v), want 40 distinct ones", len(s.peers), s.peers)
	}
	for a := range s.peers {
		if !netip.MustParsePrefix("127.1.0.0/16").Contains(a) {
			t.Errorf("client address %v outside the default -source 127.1.0.0/16", a)
		}
	}
}

func TestRunCountsWrongReplies(t *testing.T) {
	for name, reply := range map[string]func(string) string{
		"other line": func(string) string { return "hi\n" },
		"truncated":  func(line string) string { return line[:len(line)-1] },
		"doubled":    func(line string) string { return line + line },
		"empty":      func(string) string { return "" },
	} {
		t.Run(name, func(t *testing.T) {
			s := startServer(t, reply)
			code, res := runLoadgen(t, "-addr", s.ln.Addr().String(), "-n", "6", "-c", "2")
			if code != 1 || !strings.Contains(res, " conns=0 errors=6 ") {
				t.Errorf("exit %d, result %q; want 1 and conns=0 errors=6", code, res)
			}
		})
	}
}

func TestRunKernelChosenSource(t *testing.T) {
	s := startServer(t, func(line string) string { return line })
	code, res := runLoadgen(t, "-addr", s.ln.Addr().String(), "-n", "5", "-source", "")
	if code != 0 || !strings.Contains(res, " conns=5 errors=0 ") {
		t.Fatalf("exit %d, result %q; want 0 and conns=5 errors=0", code, res)
	}
	s.ln.Close()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.peers[netip.MustParseAddr("127.0.0.1")] != 5 {
		t.Errorf("client addresses %v, want 127.0.0.1 only (the kernel's choice)", s.peers)
	}
}

func TestRunStopsAtDuration(t *testing.T) {
	s := startServer(t, func(line string) string { return line })
	// -n is out of reach: only -duration can end this run.
	code, res := runLoadgen(t, "-addr", s.ln.Addr().String(), "-n", "1000000000", "-c", "2", "-duration", "20ms")
	if code != 0 || !strings.Contains(res, " errors=0 ") {
		t.Fatalf("exit %d, result %q; want 0 and errors=0", code, res)
	}
}

func TestRunRefusesBadFlags(t *testing.T) {
	for _, args := range [][]string{
		{"-addr", "192.0.2.1:7"},
		{"-addr", "127.0.0.1:7", "-source", "10.1.0.0/16"},
		{"-addr", "127.0.0.1:7", "-n", "0"},
		{"-addr", "127.0.0.1:7", "-name", "a b"},
		{"-addr", "127.0.0.1:7", "extra"},
		{},
	} {
		if code, _ := runLoadgen(t, args...); code != 2 {
			t.Errorf("loadgen %q: exit %d, want 2", args, code)
		}
	}
}
