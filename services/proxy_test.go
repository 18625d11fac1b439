package services

import (
	"bufio"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pires/go-proxyproto"

	"github.com/superd/superd/config"
)

// proxyReport is a handler that prints who it thinks the client is and
// then echoes the first line it reads: the client's first bytes.
const proxyReport = `echo "R=$TCPREMOTEIP:$TCPREMOTEPORT A=$REMOTE_ADDR:$REMOTE_PORT P=$PROXYREMOTEIP L=$TCPLOCALIP:$TCPLOCALPORT"; IFS= read -r x; echo "got:$x"`

// proxyService is a nowait service that trusts headers from proxies in
// from.
func proxyService(from ...string) *config.Service {
	svc := execService("px", tcpKey, "/bin/sh", "-c", proxyReport)
	svc.Proxy = config.Proxy{Enabled: true, Timeout: time.Minute}
	for _, f := range from {
		svc.Proxy.From = append(svc.Proxy.From, netip.MustParsePrefix(f))
	}
	return svc
}

// proxyHeaderBytes is a header for a client at src that connected to dst.
func proxyHeaderBytes(t *testing.T, version byte, cmd proxyproto.ProtocolVersionAndCommand, src, dst string) []byte {
	t.Helper()
	h := proxyproto.HeaderProxyFromAddrs(version,
		net.TCPAddrFromAddrPort(netip.MustParseAddrPort(src)), net.TCPAddrFromAddrPort(netip.MustParseAddrPort(dst)))
	h.Command = cmd
	b, err := h.Format()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestServeProxyHeader sends the header and the client's first line in
// one write: the handler sees the client the header names, and its
// first line intact.
func TestServeProxyHeader(t *testing.T) {
	e := newEnv(t)
	svc := proxyService("127.0.0.1/32")
	svc.Access.OnlyFrom = []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")} // judges the real client
	l := e.listen(t, svc)
	for _, v := range []byte{1, 2} {
		c := dialFrom(t, "127.0.0.1", l.Addr().String())
		msg := append(proxyHeaderBytes(t, v, proxyproto.PROXY, "192.0.2.7:5000", "198.51.100.1:443"), "hello\n"...)
		if _, err := c.Write(msg); err != nil {
			t.Fatal(err)
		}
		want := "R=192.0.2.7:5000 A=192.0.2.7:5000 P=127.0.0.1 L=198.51.100.1:443\ngot:hello\n"
		if got := readAll(t, c); got != want {
			t.Errorf("v%d: handler said %q, want %q", v, got, want)
		}
	}
	e.rec.Wait(t, match("start", "remote", "192.0.2.7:5000 via "+dialAddr(t, e, 0)))
}

// dialAddr is the proxy part of the n-th start line's remote.
func dialAddr(t *testing.T, e *testEnv, n int) string {
	t.Helper()
	starts := e.rec.WaitN(t, n+1, match("start"))
	r := starts[n].Attrs["remote"]
	_, via, ok := strings.Cut(r, " via ")
	if !ok {
		t.Fatalf("start line remote %q has no proxy", r)
	}
	return via
}

// TestServeProxyLocal: a v2 LOCAL header (a health check) is served
// with the proxy's own address.
func TestServeProxyLocal(t *testing.T) {
	e := newEnv(t)
	l := e.listen(t, proxyService("127.0.0.0/8"))
	c := dialFrom(t, "127.0.0.5", l.Addr().String())
	c.Write(append(proxyHeaderBytes(t, 2, proxyproto.LOCAL, "192.0.2.7:5000", "198.51.100.1:443"), "x\n"...))
	got := readAll(t, c)
	lp := c.LocalAddr().(*net.TCPAddr).Port
	if want := fmt.Sprintf("R=127.0.0.5:%d A=127.0.0.5:%d P=127.0.0.5 L=%s\ngot:x\n", lp, lp, l.Addr()); got != want {
		t.Errorf("handler said %q, want %q", got, want)
	}
}

// TestServeProxyRefused: a spoofed header from outside proxy_from, no
// header, a truncated one and a late one are each closed without a
// handler and logged as reason proxy; a slow header does not hold up
// other clients meanwhile.
func TestServeProxyRefused(t *testing.T) {
	e := newEnv(t)
	svc := proxyService("127.0.0.1/32")
	l := e.listen(t, svc)
	hdr := proxyHeaderBytes(t, 1, proxyproto.PROXY, "192.0.2.7:5000", "198.51.100.1:443")

	spoof := dialFrom(t, "127.0.0.2", l.Addr().String())
	spoof.Write(append(hdr, "hello\n"...))
	expectEOF(t, spoof)
	e.rec.Wait(t, match("refused", "reason", "proxy"))

	// A proxy that connects and sends nothing holds one slot, not the loop.
	slow := dialFrom(t, "127.0.0.1", l.Addr().String())
	for _, bad := range [][]byte{[]byte("hello\n"), hdr[:10]} {
		c := dialFrom(t, "127.0.0.1", l.Addr().String())
		c.Write(bad)
		c.(*net.TCPConn).CloseWrite()
		expectEOF(t, c)
	}
	good := dialFrom(t, "127.0.0.1", l.Addr().String())
	good.Write(append(hdr, "hello\n"...))
	if got := readAll(t, good); !strings.HasSuffix(got, "got:hello\n") {
		t.Errorf("good client behind a slow one got %q", got)
	}
	slow.Close()
	e.rec.Wait(t, match("exit"))
	if n := e.rec.Count(match("start")); n != 1 {
		t.Errorf("%d handlers started, want 1 (none for the refused)", n)
	}

	// Late: proxy_timeout passes.
	svc = proxyService("127.0.0.1/32")
	svc.Proxy.Timeout = 10 * time.Millisecond
	update(t, l, svc)
	late := dialFrom(t, "127.0.0.1", l.Addr().String())
	expectEOF(t, late)
	closeListener(t, l)
	if got := l.Running(); got != 0 {
		t.Errorf("Running = %d after the refusals, want 0 (slots given back)", got)
	}
}

// TestServeProxyBuiltin: a built-in honours the header too; echo gives
// back exactly the client's bytes, and a spoofed header is refused.
func TestServeProxyBuiltin(t *testing.T) {
	e := newEnv(t)
	svc := builtinService("echo", tcpKey, "echo")
	svc.Proxy = config.Proxy{Enabled: true, From: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}, Timeout: time.Minute}
	svc.Access.OnlyFrom = []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}
	l := e.listen(t, svc)
	c := dialFrom(t, "127.0.0.1", l.Addr().String())
	c.Write(append(proxyHeaderBytes(t, 2, proxyproto.PROXY, "192.0.2.7:5000", "198.51.100.1:443"), "ping\n"...))
	if got := readLine(t, bufio.NewReader(c)); got != "ping\n" {
		t.Errorf("echo said %q, want ping", got)
	}
	spoof := dialFrom(t, "127.0.0.2", l.Addr().String())
	spoof.Write(append(proxyHeaderBytes(t, 2, proxyproto.PROXY, "192.0.2.7:5000", "198.51.100.1:443"), "ping\n"...))
	expectEOF(t, spoof)
	e.rec.Wait(t, match("refused", "reason", "proxy"))
	// Real client outside only_from: refused by access, not proxy.
	other := dialFrom(t, "127.0.0.1", l.Addr().String())
	other.Write(append(proxyHeaderBytes(t, 1, proxyproto.PROXY, "203.0.113.9:5000", "198.51.100.1:443"), "ping\n"...))
	expectEOF(t, other)
	e.rec.Wait(t, match("refused", "reason", "access"))
}

// TestServeProxyHAProxy puts a real HAProxy in front of superd, with
// send-proxy and send-proxy-v2: the handler reports the client's own
// address (127.0.0.77) and reads its first line intact. HAProxy's health
// check (a v2 LOCAL header) passes against a built-in echo, which also
// serves clients through it.
func TestServeProxyHAProxy(t *testing.T) {
	bin, err := exec.LookPath("haproxy")
	if err != nil {
		if os.Getenv("SUPERD_REQUIRE_PROGRAMS") == "1" {
			t.Fatalf("haproxy not found, and SUPERD_REQUIRE_PROGRAMS=1 requires it")
		}
		t.Skip("haproxy not installed (apt-get install haproxy)")
	}
	e := newEnv(t)
	l := e.listen(t, proxyService("127.0.0.1/32"))
	echo := builtinService("echo", tcpKey, "echo")
	echo.Proxy = config.Proxy{Enabled: true, From: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}, Timeout: time.Minute}
	le := e.listen(t, echo)
	// HAProxy's frontends are sockets the test binds (port 0) and hands
	// over as fd@3, fd@4 and fd@5: no free-port guessing, and a
	// connection waits in the backlog until HAProxy accepts it.
	var files []*os.File
	var fronts []string
	for range 3 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		f, err := ln.(*net.TCPListener).File()
		ln.Close()
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		files = append(files, f)
		fronts = append(fronts, ln.Addr().String())
	}
	cfg := filepath.Join(t.TempDir(), "haproxy.cfg")
	conf := strings.NewReplacer("SUPERD_HANDLER", l.Addr().String(), "SUPERD_ECHO", le.Addr().String()).Replace(haproxyConfig)
	if err := os.WriteFile(cfg, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-db", "-f", cfg)
	cmd.ExtraFiles = files
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string, 64)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	var seen []string
	t.Cleanup(func() {
		cmd.Process.Kill()     // our own haproxy, by its pid
		for l := range lines { // ends when haproxy's output closes
			seen = append(seen, l)
		}
		cmd.Wait()
		if t.Failed() {
			t.Logf("haproxy output:\n%s", strings.Join(seen, "\n"))
		}
	})
	for i, front := range fronts[:2] {
		c := dialFrom(t, "127.0.0.77", front)
		fmt.Fprintf(c, "first bytes %d\n", i)
		got := readAll(t, c)
		lp := c.LocalAddr().(*net.TCPAddr).Port
		want := fmt.Sprintf("R=127.0.0.77:%d A=127.0.0.77:%d P=127.0.0.1 L=%s\ngot:first bytes %d\n", lp, lp, front, i)
		if got != want {
			t.Errorf("behind haproxy (%s): handler said %q, want %q", []string{"send-proxy", "send-proxy-v2"}[i], got, want)
		}
	}
	// The health check: wait for HAProxy to report it.
	for l := range lines {
		seen = append(seen, l)
		if strings.Contains(l, "Health check for server superd_echo/s1") {
			if !strings.Contains(l, "succeeded") {
				t.Fatalf("health check through PROXY v2 LOCAL failed: %s", l)
			}
			break
		}
	}
	c := dialFrom(t, "127.0.0.77", fronts[2])
	fmt.Fprintf(c, "ping\n")
	if got := readLine(t, bufio.NewReader(c)); got != "ping\n" {
		t.Errorf("echo behind haproxy said %q, want ping", got)
	}
}

// haproxyConfig is the configuration of docs/scale-out.md, with the
// frontends on inherited sockets (fd@N) instead of ports: superd at
// SUPERD_HANDLER gets v1 headers from fd@3 and v2 from fd@4; the
// built-in echo at SUPERD_ECHO is health-checked with a v2 LOCAL header
// and serves fd@5. The check expects the reply to start with ping: an
// echo that did not consume the header would send it back first.
const haproxyConfig = `global
    log stdout format raw local0

defaults
    mode tcp
    log global
    option log-health-checks
    timeout connect 5s
    timeout client 1m
    timeout server 1m

frontend v1
    bind fd@3
    default_backend superd_v1

frontend v2
    bind fd@4
    default_backend superd_v2

frontend echo
    bind fd@5
    default_backend superd_echo

backend superd_v1
    server s1 SUPERD_HANDLER send-proxy

backend superd_v2
    server s1 SUPERD_HANDLER send-proxy-v2

backend superd_echo
    option tcp-check
    tcp-check send "ping\n"
    tcp-check expect rstring ^ping
    server s1 SUPERD_ECHO send-proxy-v2 check check-send-proxy inter 2s
`
