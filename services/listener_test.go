package services

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"golang.org/x/sys/unix"

	"github.com/superd/superd/config"
	"github.com/superd/superd/internal/testkit"
)

var tcpKey = config.ListenKey{Network: "tcp", Address: "127.0.0.1:0"}
var udpKey = config.ListenKey{Network: "udp", Address: "127.0.0.1:0"}

// readLine reads one line from c.
func readLine(t *testing.T, r *bufio.Reader) string {
	t.Helper()
	l, err := r.ReadString('\n')
	if err != nil {
		t.Fatalf("read line: %q, %v", l, err)
	}
	return l
}

// expectEOF checks that the server closed c without sending anything.
func expectEOF(t *testing.T, c net.Conn) {
	t.Helper()
	if got := readAll(t, c); got != "" {
		t.Fatalf("got %q, want the connection closed without data", got)
	}
}

// udpExchange sends msg from c and returns the reply.
func udpExchange(t *testing.T, c net.Conn, msg string) string {
	t.Helper()
	if _, err := c.Write([]byte(msg)); err != nil {
		t.Fatalf("send %q: %v", msg, err)
	}
	buf := make([]byte, 2048)
	n, err := c.Read(buf)
	if err != nil {
		t.Fatalf("reply to %q: %v", msg, err)
	}
	return string(buf[:n])
}

func TestServeNowait(t *testing.T) {
	e := newEnv(t)
	l := e.listen(t, execService("hello", tcpKey, "/bin/echo", "hello", "world"))
	for i := range 3 {
		c := dial(t, "tcp", l.Addr().String())
		if got := readAll(t, c); got != "hello world\n" {
			t.Fatalf("connection %d: got %q, want %q", i, got, "hello world\n")
		}
		remote := c.LocalAddr().String()
		st := e.rec.Wait(t, match("start", "remote", remote))
		ex := e.rec.Wait(t, match("exit", "remote", remote))
		if st.Attrs["service"] != "hello" || ex.Attrs["pid"] != st.Attrs["pid"] || ex.Attrs["status"] != "0" {
			t.Errorf("start %v, exit %v; want service=hello, one pid, status=0", st, ex)
		}
	}
	if l.Name() != "hello" || l.Mode() != ModeNowait {
		t.Errorf("Name, Mode = %q, %d; want hello, ModeNowait", l.Name(), l.Mode())
	}
	closeListener(t, l)
	if got := l.Running(); got != 0 {
		t.Errorf("Running after every handler exited and Serve returned = %d, want 0", got)
	}
}

// TestServeHandlerFds checks the nowait handler contract: fd 0 is a
// blocking socket and only fds 0, 1 and 2 are open.
func TestServeHandlerFds(t *testing.T) {
	e := newEnv(t)
	l := e.listen(t, helperService(t, "fds", tcpKey, "fds"))
	// Two connections: the second handler must not inherit the first's
	// descriptor.
	c1 := dial(t, "tcp", l.Addr().String())
	c2 := dial(t, "tcp", l.Addr().String())
	for i, c := range []net.Conn{c1, c2} {
		if got := readAll(t, c); got != "nonblock=false fds=[0 1 2]\n" {
			t.Errorf("handler %d reported %q, want a blocking fd 0 and fds [0 1 2] only", i+1, got)
		}
	}
}

// TestServeEnv checks the handler's whole environment over TCP and unix
// sockets: the fixed part, the connection's UCSPI variables, pass_env and
// env, with env winning over the fixed PATH.
func TestServeEnv(t *testing.T) {
	t.Setenv("SUPERD_TEST_PASS", "passed")
	t.Setenv("SUPERD_TEST_LEAK", "must not leak")
	unixKey := config.ListenKey{Network: "unix", Address: filepath.Join(sockDir(t), "env.sock")}
	for _, key := range []config.ListenKey{tcpKey, unixKey} {
		t.Run(key.Network, func(t *testing.T) {
			e := newEnv(t)
			svc := execService("envsvc", key, "/usr/bin/env")
			svc.Exec.PassEnv = []string{"SUPERD_TEST_PASS", "SUPERD_TEST_UNSET"}
			svc.Exec.Env = []string{"FOO=bar baz", "PATH=/custom/bin"}
			l := e.listen(t, svc)
			c := dial(t, key.Network, l.Addr().String())
			got := strings.Split(strings.TrimSuffix(readAll(t, c), "\n"), "\n")
			want := []string{"PATH=/custom/bin", "SUPERD_SERVICE=envsvc", "SUPERD_TEST_PASS=passed", "FOO=bar baz"}
			if key.Network == "tcp" {
				lo, r := apOf(l.Addr()), apOf(c.LocalAddr())
				want = append(want, "PROTO=TCP",
					"TCPLOCALIP="+lo.Addr().String(), "TCPLOCALPORT="+strconv.Itoa(int(lo.Port())),
					"TCPREMOTEIP="+r.Addr().String(), "TCPREMOTEPORT="+strconv.Itoa(int(r.Port())),
					"REMOTE_ADDR="+r.Addr().String(), "REMOTE_PORT="+strconv.Itoa(int(r.Port())))
			} else {
				want = append(want, "PROTO=UNIX",
					"UNIXREMOTEEUID="+strconv.Itoa(os.Geteuid()), "UNIXREMOTEEGID="+strconv.Itoa(os.Getegid()),
					"UNIXREMOTEPID="+strconv.Itoa(os.Getpid()))
			}
			slices.Sort(got)
			slices.Sort(want)
			if !slices.Equal(got, want) {
				t.Errorf("handler environment:\n got %q\nwant %q", got, want)
			}
		})
	}
}

// TestServeStderrSocket checks stderr = "socket": fd 2 is the connection.
func TestServeStderrSocket(t *testing.T) {
	e := newEnv(t)
	svc := execService("err", tcpKey, "/bin/sh", "-c", "echo out; echo err >&2")
	svc.Exec.Stderr = "socket"
	l := e.listen(t, svc)
	c := dial(t, "tcp", l.Addr().String())
	if got := readAll(t, c); got != "out\nerr\n" {
		t.Errorf("got %q, want stdout and stderr on the connection", got)
	}
	if n := e.rec.Count(match("stderr")); n != 0 {
		t.Errorf("%d stderr lines logged with stderr = socket, want 0", n)
	}
}

// TestServeStderrLog checks stderr = "log": lines are logged with the
// service and the handler's pid.
func TestServeStderrLog(t *testing.T) {
	e := newEnv(t)
	l := e.listen(t, execService("err", tcpKey, "/bin/sh", "-c", "echo out; echo oops >&2"))
	c := dial(t, "tcp", l.Addr().String())
	if got := readAll(t, c); got != "out\n" {
		t.Errorf("got %q, want only stdout on the connection", got)
	}
	st := e.rec.Wait(t, match("start", "remote", c.LocalAddr().String()))
	ln := e.rec.Wait(t, match("stderr", "line", "oops"))
	if ln.Attrs["service"] != "err" || ln.Attrs["pid"] != st.Attrs["pid"] {
		t.Errorf("stderr line %v, want service=err pid=%s", ln, st.Attrs["pid"])
	}
}

// TestServeInstances checks that at the instances limit superd stops
// accepting: the second client waits in the backlog and is served only
// after the first handler exits.
func TestServeInstances(t *testing.T) {
	e := newEnv(t)
	svc := helperService(t, "one", tcpKey, "readline")
	svc.Limits.Instances = 1
	l := e.listen(t, svc)

	c1 := dial(t, "tcp", l.Addr().String())
	st1 := e.rec.Wait(t, match("start", "remote", c1.LocalAddr().String()))
	c2 := dial(t, "tcp", l.Addr().String()) // completes in the kernel backlog
	// The serve loop waits for a slot instead of taking c2: a broken
	// limit would have it blocked in accept, or starting c2.
	testkit.WaitFor(t, "the serve loop waiting for a slot", l.adm.Waiting)
	if n := e.rec.Count(match("start")); n != 1 || l.Running() != 1 {
		t.Fatalf("%d handlers started and Running = %d with instances = 1, want 1 and 1", n, l.Running())
	}
	fmt.Fprintln(c2, "two") // waits in the socket buffer
	fmt.Fprintln(c1, "one")
	if got := readAll(t, c1); got != "got:one\n" {
		t.Fatalf("first client got %q", got)
	}
	if got := readAll(t, c2); got != "got:two\n" {
		t.Fatalf("second client got %q", got)
	}
	e.rec.Wait(t, match("exit", "remote", c2.LocalAddr().String()))
	e.rec.Wait(t, match("exit", "remote", c1.LocalAddr().String()))
	// The second handler started after the first one: the loop waited
	// for a slot (above), which only c1's reap gives back. (c1's exit
	// line comes after its stderr drain, and its slot is free before
	// that: c2's start line may come before it.)
	var order []string
	for _, l := range e.rec.Filter(match("start")) {
		order = append(order, l.Attrs["remote"])
	}
	if want := []string{c1.LocalAddr().String(), c2.LocalAddr().String()}; !slices.Equal(order, want) {
		t.Errorf("handlers started for %v, want c1 then c2 %v", order, want)
	}
	if st1.Attrs["remote"] != c1.LocalAddr().String() {
		t.Errorf("first start %v", st1)
	}
}

// TestServeUpdate checks that Update applies to new connections only,
// while the running handler keeps its settings and its connection, and
// that a larger instances limit admits a client waiting in the backlog
// at once.
func TestServeUpdate(t *testing.T) {
	e := newEnv(t)
	old := helperService(t, "svc", tcpKey, "readline")
	old.Limits.Instances = 1
	l := e.listen(t, old)

	c1 := dial(t, "tcp", l.Addr().String())
	e.rec.Wait(t, match("start", "remote", c1.LocalAddr().String()))
	c2 := dial(t, "tcp", l.Addr().String()) // waits: instances = 1

	next := execService("svc", tcpKey, "/bin/echo", "v2")
	next.Limits.Instances = 2
	update(t, l, next)
	if got := readAll(t, c2); got != "v2\n" {
		t.Fatalf("client waiting through the update got %q, want the new handler's v2", got)
	}
	fmt.Fprintln(c1, "one")
	if got := readAll(t, c1); got != "got:one\n" {
		t.Errorf("client of the old handler got %q, want got:one", got)
	}
	c3 := dial(t, "tcp", l.Addr().String())
	if got := readAll(t, c3); got != "v2\n" {
		t.Errorf("new client got %q, want v2", got)
	}
}

// apOf is a TCP address as netip.AddrPort, IPv4 unmapped.
func apOf(a net.Addr) netip.AddrPort {
	ap := a.(*net.TCPAddr).AddrPort()
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

// builtinService is a built-in service with 4 instances.
func builtinService(name string, key config.ListenKey, builtin string) *config.Service {
	return &config.Service{Name: name, Listen: key, Builtin: builtin, Limits: config.Limits{Instances: 4}}
}

// isDaytime reports whether s is a daytime answer.
func isDaytime(s string) bool { return strings.HasSuffix(s, "\r\n") && len(s) > 2 }

// TestServeModeChangeEndsLoop checks that a mode change ends the old
// mode's loop wherever it is, idle in accept or waiting for a slot,
// keeps the socket with its backlog (a client queued meanwhile is served
// by the new mode), and leaves running handlers alone; and that Close
// ends a loop that waits for a slot, promptly, the handler still
// running. (Before Listeners: TestServeCancel, with one Service after
// another on a shared socket.)
func TestServeModeChangeEndsLoop(t *testing.T) {
	e := newEnv(t)

	// Idle in accept.
	l := e.listen(t, execService("a", tcpKey, "/bin/echo", "first"))
	if got := readAll(t, dial(t, "tcp", l.Addr().String())); got != "first\n" {
		t.Fatalf("got %q", got)
	}
	update(t, l, builtinService("a", tcpKey, "daytime"))
	if got := readAll(t, dial(t, "tcp", l.Addr().String())); !isDaytime(got) {
		t.Fatalf("after the switch to the daytime built-in: %q, want a daytime line", got)
	}

	// Waiting for a slot.
	svc := helperService(t, "b", tcpKey, "readline")
	svc.Limits.Instances = 1
	update(t, l, svc)
	held := dial(t, "tcp", l.Addr().String())
	e.rec.Wait(t, match("start", "service", "b"))
	testkit.WaitFor(t, "the nowait loop waiting for a slot", l.adm.Waiting)
	queued := dial(t, "tcp", l.Addr().String())
	update(t, l, builtinService("c", tcpKey, "daytime"))
	if got := readAll(t, queued); !isDaytime(got) {
		t.Errorf("client queued while the nowait loop waited for a slot got %q, want the daytime built-in's answer", got)
	}
	fmt.Fprintln(held, "still served")
	if got := readAll(t, held); got != "got:still served\n" {
		t.Errorf("handler after its mode ended: %q, want it to keep running", got)
	}
	e.rec.Wait(t, match("exit", "service", "b"))

	// Close while waiting for a slot.
	update(t, l, svc)
	held = dial(t, "tcp", l.Addr().String())
	e.rec.WaitN(t, 2, match("start", "service", "b"))
	testkit.WaitFor(t, "the nowait loop waiting for a slot", l.adm.Waiting)
	closeListener(t, l)
	fmt.Fprintln(held, "after close")
	if got := readAll(t, held); got != "got:after close\n" {
		t.Errorf("handler after its Listener closed: %q, want it to keep running", got)
	}
	e.rec.WaitN(t, 2, match("exit", "service", "b"))
	if n := errorLines(e); n != 0 {
		t.Errorf("%d error lines, want none", n)
	}
}

// TestServeSocketClosed checks that Close ends the serve goroutine in
// each mode, wherever it finds it (at once, or after one exchange, on
// its way back to its wait), closes the socket, and logs no error.
func TestServeSocketClosed(t *testing.T) {
	tests := []struct {
		name     string
		svc      func(t *testing.T) *config.Service
		exchange func(t *testing.T, addr string)
	}{
		{"nowait", func(t *testing.T) *config.Service { return execService("s", tcpKey, "/bin/echo", "ok") },
			func(t *testing.T, addr string) {
				if got := readAll(t, dial(t, "tcp", addr)); got != "ok\n" {
					t.Errorf("got %q, want ok", got)
				}
			}},
		{"wait tcp", func(t *testing.T) *config.Service {
			s := helperService(t, "s", tcpKey, "tcp-accept")
			s.Wait = true
			return s
		}, func(t *testing.T, addr string) {
			if got := readAll(t, dial(t, "tcp", addr)); got != "accepted\n" {
				t.Errorf("got %q, want accepted", got)
			}
		}},
		{"wait udp", func(t *testing.T) *config.Service {
			s := helperService(t, "s", udpKey, "udp-reply")
			s.Wait = true
			return s
		}, func(t *testing.T, addr string) {
			if got := udpExchange(t, dial(t, "udp", addr), "x"); got != "reply:x nonblock=false" {
				t.Errorf("got %q", got)
			}
		}},
		{"builtin stream", func(*testing.T) *config.Service { return builtinService("s", tcpKey, "echo") },
			func(t *testing.T, addr string) {
				c := dial(t, "tcp", addr)
				fmt.Fprintln(c, "x")
				if got := readLine(t, bufio.NewReader(c)); got != "x\n" {
					t.Errorf("got %q", got)
				}
			}},
		{"builtin packet", func(*testing.T) *config.Service { return builtinService("s", udpKey, "echo") },
			func(t *testing.T, addr string) {
				if got := udpExchange(t, dial(t, "udp", addr), "x"); got != "x" {
					t.Errorf("got %q", got)
				}
			}},
	}
	for _, tt := range tests {
		for _, after := range []string{"at once", "after an exchange"} {
			t.Run(tt.name+" "+after, func(t *testing.T) {
				e := newEnv(t)
				svc := tt.svc(t)
				l := e.listen(t, svc)
				addr := l.Addr().String()
				if after != "at once" {
					tt.exchange(t, addr)
					if svc.Builtin == "" {
						// A wait-mode handler holds the socket until
						// it is gone.
						e.rec.Wait(t, match("exit"))
					}
				}
				closeListener(t, l)
				select {
				case <-l.done:
				default:
					t.Errorf("the serve goroutine still runs after Close returned")
				}
				if svc.Listen.Stream() {
					if c, err := net.DialTimeout("tcp", addr, testTimeout); err == nil {
						c.Close()
						t.Errorf("dial after Close succeeded, want refused")
					}
				}
				if n := errorLines(e); n != 0 {
					t.Errorf("%d error lines for a closed Listener, want none", n)
				}
			})
		}
	}
}

// TestServeCannotStart checks that a handler that cannot start is
// logged, its connection closed and its slot freed, and that Serve
// carries on.
func TestServeCannotStart(t *testing.T) {
	e := newEnv(t)
	svc := execService("broken", tcpKey, "/nonexistent/handler")
	svc.Limits.Instances = 1
	l := e.listen(t, svc)
	for i := range 3 { // more than instances: the slot comes back
		c := dial(t, "tcp", l.Addr().String())
		expectEOF(t, c)
		fl := e.rec.WaitN(t, i+1, match("start_failed"))[i]
		if fl.Attrs["path"] != "/nonexistent/handler" || fl.Attrs["remote"] != c.LocalAddr().String() ||
			!strings.Contains(fl.Attrs["err"], "no such file") || fl.Level.String() != "ERROR" {
			t.Errorf("log line %v, want ERROR with path, remote and the reason", fl)
		}
	}
	fixed := execService("broken", tcpKey, "/bin/echo", "fixed")
	fixed.Limits.Instances = 1
	update(t, l, fixed)
	if got := readAll(t, dial(t, "tcp", l.Addr().String())); got != "fixed\n" {
		t.Errorf("after fixing the path: %q, want fixed", got)
	}
	e.rec.Wait(t, match("exit", "service", "broken"))
	closeListener(t, l)
	if got := l.Running(); got != 0 {
		t.Errorf("Running after failed starts = %d, want 0 (every slot given back)", got)
	}
}

func TestServeTimeout(t *testing.T) {
	e := newEnv(t)
	svc := helperService(t, "slow", tcpKey, "readline")
	svc.Limits.Timeout = 200 * time.Millisecond
	l := e.listen(t, svc)
	c := dial(t, "tcp", l.Addr().String())
	expectEOF(t, c)
	to := e.rec.Wait(t, match("timeout", "service", "slow"))
	ex := e.rec.Wait(t, match("exit", "service", "slow"))
	if to.Attrs["pid"] != ex.Attrs["pid"] || ex.Attrs["status"] != "signal:SIGTERM" || to.Attrs["remote"] != c.LocalAddr().String() {
		t.Errorf("timeout %v, exit %v; want one pid, the remote, status signal:SIGTERM", to, ex)
	}
}

// dialFrom connects from the loopback address src.
func dialFrom(t *testing.T, src, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{Timeout: testTimeout, LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dial %s from %s: %v", addr, src, err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(testTimeout))
	return c
}

// TestServeAccess checks the checks that need the peer's address: a
// refused client is accepted and closed without a handler, and logged.
func TestServeAccess(t *testing.T) {
	t.Run("only_from", func(t *testing.T) {
		e := newEnv(t)
		svc := execService("acl", tcpKey, "/bin/echo", "welcome")
		svc.Access.OnlyFrom = []netip.Prefix{netip.MustParsePrefix("127.0.0.2/32")}
		l := e.listen(t, svc)
		expectEOF(t, dialFrom(t, "127.0.0.1", l.Addr().String()))
		rl := e.rec.Wait(t, match("refused", "reason", "access"))
		if rl.Attrs["count"] != "1" || rl.Attrs["service"] != "acl" {
			t.Errorf("refusal line %v, want count=1 service=acl", rl)
		}
		if got := readAll(t, dialFrom(t, "127.0.0.2", l.Addr().String())); got != "welcome\n" {
			t.Errorf("allowed client got %q, want welcome", got)
		}
		if n := e.rec.Count(match("start")); n != 1 {
			t.Errorf("%d handlers started, want 1 (none for the refused client)", n)
		}
		e.rec.Wait(t, match("exit"))
		closeListener(t, l)
		if got := l.Running(); got != 0 {
			t.Errorf("Running = %d after a refusal, want 0 (slot given back)", got)
		}
	})
	t.Run("no_access", func(t *testing.T) {
		e := newEnv(t)
		svc := execService("acl", tcpKey, "/bin/echo", "welcome")
		svc.Access.OnlyFrom = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
		svc.Access.NoAccess = []netip.Prefix{netip.MustParsePrefix("127.0.0.3/32")}
		l := e.listen(t, svc)
		expectEOF(t, dialFrom(t, "127.0.0.3", l.Addr().String()))
		if got := readAll(t, dialFrom(t, "127.0.0.1", l.Addr().String())); got != "welcome\n" {
			t.Errorf("allowed client got %q, want welcome", got)
		}
	})
	t.Run("per_source", func(t *testing.T) {
		e := newEnv(t)
		svc := helperService(t, "ps", tcpKey, "readline")
		svc.Limits.PerSource = 1
		l := e.listen(t, svc)
		held := dialFrom(t, "127.0.0.1", l.Addr().String())
		e.rec.Wait(t, match("start", "remote", held.LocalAddr().String()))
		expectEOF(t, dialFrom(t, "127.0.0.1", l.Addr().String()))
		if l := e.rec.Wait(t, match("refused", "reason", "per_source")); l.Attrs["count"] != "1" {
			t.Errorf("refusal line %v, want count=1", l)
		}
		other := dialFrom(t, "127.0.0.2", l.Addr().String())
		fmt.Fprintln(other, "b")
		if got := readAll(t, other); got != "got:b\n" {
			t.Errorf("client from another address got %q, want got:b", got)
		}
		fmt.Fprintln(held, "a")
		if got := readAll(t, held); got != "got:a\n" {
			t.Errorf("first client got %q", got)
		}
		// Its place is free again once it was reaped.
		e.rec.Wait(t, match("exit", "remote", held.LocalAddr().String()))
		again := dialFrom(t, "127.0.0.1", l.Addr().String())
		fmt.Fprintln(again, "c")
		if got := readAll(t, again); got != "got:c\n" {
			t.Errorf("client after the first left got %q, want got:c", got)
		}
		e.rec.WaitN(t, 3, match("exit"))
		closeListener(t, l)
		if got := l.Running(); got != 0 {
			t.Errorf("Running = %d, want 0", got)
		}
	})
}

// TestServeConfine runs a handler through the trampoline (the test
// binary, see TestMain) and reads back umask, niceness and a limit.
func TestServeConfine(t *testing.T) {
	e := newEnv(t)
	svc := execService("confined", tcpKey, "/bin/sh", "-c", "umask; cut -d' ' -f19 /proc/self/stat; ulimit -n")
	svc.Exec.Umask = 0o027
	svc.Exec.SetNice, svc.Exec.Nice = true, 7
	svc.Exec.Rlimits = []config.Rlimit{{Name: "nofile", Resource: unix.RLIMIT_NOFILE, Value: 100}}
	l := e.listen(t, svc)
	c := dial(t, "tcp", l.Addr().String())
	if got := readAll(t, c); got != "0027\n7\n100\n" {
		t.Errorf("confined handler reported %q, want umask 0027, nice 7, nofile 100", got)
	}
}

func TestServeWaitUDP(t *testing.T) {
	e := newEnv(t)
	// The handler leaves the socket non-blocking, as tftpd does; the next
	// one must still get it blocking.
	svc := helperService(t, "dgram", udpKey, "udp-reply", "set-nonblock")
	svc.Wait = true
	l := e.listen(t, svc)
	if l.Mode() != ModeWait {
		t.Fatalf("Mode = %d, want ModeWait", l.Mode())
	}
	c := dial(t, "udp", l.Addr().String())
	for i := range 5 {
		msg := fmt.Sprintf("m%d", i)
		if got, want := udpExchange(t, c, msg), "reply:"+msg+" nonblock=false"; got != want {
			t.Fatalf("exchange %d: got %q, want %q", i, got, want)
		}
	}
	// Datagrams that arrive while a handler runs wait for the next one.
	for i := range 3 {
		if _, err := fmt.Fprintf(c, "q%d", i); err != nil {
			t.Fatal(err)
		}
	}
	buf := make([]byte, 100)
	for i := range 3 {
		n, err := c.Read(buf)
		if err != nil {
			t.Fatalf("reply %d to queued datagrams: %v", i, err)
		}
		if want := fmt.Sprintf("reply:q%d nonblock=false", i); string(buf[:n]) != want {
			t.Errorf("reply %d: got %q, want %q", i, buf[:n], want)
		}
	}
	e.rec.WaitN(t, 8, match("exit", "status", "0"))
	if st := e.rec.Wait(t, match("start")); st.Attrs["remote"] != "" {
		t.Errorf("wait-mode start line %v, want no remote", st)
	}
}

func TestServeWaitTCP(t *testing.T) {
	e := newEnv(t)
	svc := helperService(t, "selfaccept", tcpKey, "tcp-accept")
	svc.Wait = true
	l := e.listen(t, svc)
	for i := range 3 {
		if got := readAll(t, dial(t, "tcp", l.Addr().String())); got != "accepted\n" {
			t.Fatalf("client %d got %q, want accepted by the wait handler", i, got)
		}
	}
	e.rec.WaitN(t, 3, match("exit", "status", "0"))
}

// startTimes is a slog.Handler that passes every record on to next and
// notes when each start line was logged.
type startTimes struct {
	next slog.Handler
	mu   *sync.Mutex
	at   *[]time.Time
}

func (h startTimes) Enabled(ctx context.Context, l slog.Level) bool { return h.next.Enabled(ctx, l) }

func (h startTimes) Handle(ctx context.Context, r slog.Record) error {
	if r.Message == "start" {
		h.mu.Lock()
		*h.at = append(*h.at, r.Time)
		h.mu.Unlock()
	}
	return h.next.Handle(ctx, r)
}

func (h startTimes) WithAttrs(as []slog.Attr) slog.Handler {
	h.next = h.next.WithAttrs(as)
	return h
}

func (h startTimes) WithGroup(g string) slog.Handler {
	h.next = h.next.WithGroup(g)
	return h
}

// TestServeWaitLoop checks the loop guard: a wait handler that exits
// without taking its datagram is restarted with an exponential back-off
// (no spin: every restart waits at least its pause), the loop is logged
// after loopLogAfter such starts, and Close ends a pause at once.
func TestServeWaitLoop(t *testing.T) {
	e := newEnv(t)
	svc := execService("loop", udpKey, "/bin/true")
	svc.Wait = true
	var (
		mu sync.Mutex
		at []time.Time
	)
	l, err := Listen(svc, e.rt, slog.New(startTimes{next: e.rec.Handler(), mu: &mu, at: &at}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { closeListener(t, l) })
	c := dial(t, "udp", l.Addr().String())
	if _, err := c.Write([]byte("never read")); err != nil {
		t.Fatal(err)
	}
	ll := e.rec.Wait(t, match("looping"))
	want := (firstLoopPause << (loopLogAfter - 1)).String()
	if ll.Attrs["unproductive_starts"] != strconv.Itoa(loopLogAfter) || ll.Attrs["pause"] != want {
		t.Errorf("looping line %v, want unproductive_starts=%d pause=%s", ll, loopLogAfter, want)
	}
	if i, n := e.rec.Index(match("looping")), 0; i >= 0 {
		for _, en := range e.rec.All()[:i] {
			if en.Msg == "start" {
				n++
			}
		}
		if n != loopLogAfter {
			t.Errorf("%d starts before the first looping line, want %d", n, loopLogAfter)
		}
	}
	// Back-offs of 10ms, 20ms, 40ms ...: a spinning service would start
	// again at once.
	const starts = loopLogAfter + 2
	e.rec.WaitN(t, starts, match("start"))
	mu.Lock()
	times := slices.Clone(at[:starts])
	mu.Unlock()
	for k := 1; k < starts; k++ {
		if gap, pause := times[k].Sub(times[k-1]), firstLoopPause<<(k-1); gap < pause {
			t.Errorf("start %d came %v after start %d, want at least the %v back-off", k+1, gap, k, pause)
		}
	}
	// Close during a pause (or a start): it returns, and nothing more
	// starts.
	closeListener(t, l)
	n := e.rec.Count(match("start"))
	e.rec.WaitN(t, n, match("exit"))
	if got := e.rec.Count(match("start")); got != n {
		t.Errorf("%d starts after Close returned, want none", got-n)
	}
}

// TestWaitGuardPause checks that a loop guard's pause, here the longest
// one, ends at once when its context does: a mode change or Close never
// waits for a looping service's back-off. The bubble's clock makes "at
// once" exact.
func TestWaitGuardPause(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rec := testkit.NewRecorder(t)
		g := waitGuard{idle: 20}
		ctx, cancel := context.WithCancel(context.Background())
		began := time.Now()
		done := make(chan bool, 1)
		go func() { done <- g.pause(ctx, rec.Logger(), true, began) }()
		synctest.Wait()
		select {
		case <-done:
			t.Fatal("a pause after 20 unproductive starts returned at once, want the back-off")
		default:
		}
		cancel()
		synctest.Wait()
		select {
		case ok := <-done:
			if ok {
				t.Errorf("pause ended by its context = true, want false")
			}
		default:
			t.Fatal("the pause did not end with its context")
		}
		if took := time.Since(began); took != 0 {
			t.Errorf("the pause ended %v after it began, want at its context's end (no time passed)", took)
		}
		if l := rec.Wait(t, match("looping")); l.Attrs["unproductive_starts"] != "20" || l.Attrs["pause"] != maxLoopPause.String() {
			t.Errorf("looping line %v, want unproductive_starts=20 pause=%v", l, maxLoopPause)
		}
	})
}

// TestServeWaitNoFalseLoop checks that a wait handler that takes its
// datagram is never paused, however fast datagrams come.
func TestServeWaitNoFalseLoop(t *testing.T) {
	e := newEnv(t)
	svc := execService("reader", udpKey, "/bin/sh", "-c", "head -c 1 >/dev/null")
	svc.Wait = true
	l := e.listen(t, svc)
	c := dial(t, "udp", l.Addr().String())
	const n = 60
	for i := range n {
		msg := fmt.Sprint("datagram ", i)
		if i >= n/2 {
			msg = "the same datagram again" // retransmissions differ only in time
		}
		if _, err := c.Write([]byte(msg)); err != nil {
			t.Fatal(err)
		}
	}
	e.rec.WaitN(t, n, match("exit", "status", "0"))
	if l := e.rec.Filter(match("looping")); len(l) > 0 {
		t.Errorf("a handler that reads its datagram was taken for a loop: %v", l)
	}
}

// TestServeRunning checks Running against its doc: the handlers (or
// built-in connections) that hold a slot, and nothing else.
func TestServeRunning(t *testing.T) {
	t.Run("nowait", func(t *testing.T) {
		e := newEnv(t)
		l := e.listen(t, helperService(t, "run", tcpKey, "readline"))
		c := dial(t, "tcp", l.Addr().String())
		e.rec.Wait(t, match("start"))
		if got := l.Running(); got != 1 {
			t.Errorf("Running with one handler = %d, want 1", got)
		}
		fmt.Fprintln(c, "x")
		readAll(t, c)
		e.rec.Wait(t, match("exit"))
		if got := l.Running(); got != 0 {
			t.Errorf("Running with no handler, Serve waiting for a client = %d, want 0", got)
		}
	})
	t.Run("builtin stream", func(t *testing.T) {
		e := newEnv(t)
		l := e.listen(t, &config.Service{Name: "echo", Listen: tcpKey, Builtin: "echo", Limits: config.Limits{Instances: 4}})
		c := dial(t, "tcp", l.Addr().String())
		fmt.Fprintln(c, "ping")
		readLine(t, bufio.NewReader(c))
		if got := l.Running(); got != 1 {
			t.Errorf("Running with one echo connection = %d, want 1", got)
		}
	})
}

// TestServeBuiltin runs the in-process echo over TCP and UDP.
func TestServeBuiltin(t *testing.T) {
	t.Run("stream", func(t *testing.T) {
		e := newEnv(t)
		l := e.listen(t, &config.Service{Name: "echo", Listen: tcpKey, Builtin: "echo", Limits: config.Limits{Instances: 4}})
		c := dial(t, "tcp", l.Addr().String())
		br := bufio.NewReader(c)
		fmt.Fprintln(c, "ping")
		if got := readLine(t, br); got != "ping\n" {
			t.Fatalf("echo got %q", got)
		}
		// Stopping the Service ends its built-in connections.
		closeListener(t, l)
		if _, err := br.ReadString('\n'); !isEOF(err) {
			t.Errorf("read after Serve ended = %v, want EOF", err)
		}
		if got := l.Running(); got != 0 {
			t.Errorf("Running after Serve ended = %d, want 0", got)
		}
	})
	t.Run("packet", func(t *testing.T) {
		e := newEnv(t)
		l := e.listen(t, &config.Service{Name: "echo", Listen: udpKey, Builtin: "echo"})
		c := dial(t, "udp", l.Addr().String())
		if got := udpExchange(t, c, "ping"); got != "ping" {
			t.Errorf("udp echo got %q", got)
		}
	})
}

// TestServeBuiltinPacketUpdate checks that Update applies to a datagram
// built-in like to every other service: after switching echo to daytime
// on the same socket (same Mode, so a reload calls Update), datagrams get
// the daytime answer.
func TestServeBuiltinPacketUpdate(t *testing.T) {
	e := newEnv(t)
	l := e.listen(t, &config.Service{Name: "u", Listen: udpKey, Builtin: "echo"})
	c := dial(t, "udp", l.Addr().String())
	if got := udpExchange(t, c, "before"); got != "before" {
		t.Fatalf("echo got %q", got)
	}
	update(t, l, &config.Service{Name: "u", Listen: udpKey, Builtin: "daytime"})
	if got := udpExchange(t, c, "after"); got == "after" || !strings.HasSuffix(got, "\r\n") {
		t.Errorf("after Update to daytime the service answered %q, want a daytime line", got)
	}
}

// TestServeBuiltinPacketAccess checks that only_from and no_access hold
// for datagram built-ins, which config accepts without a warning.
func TestServeBuiltinPacketAccess(t *testing.T) {
	e := newEnv(t)
	svc := &config.Service{Name: "u", Listen: udpKey, Builtin: "echo"}
	svc.Access.NoAccess = []netip.Prefix{netip.MustParsePrefix("127.0.0.2/32")}
	l := e.listen(t, svc)
	denied, err := net.DialUDP("udp", &net.UDPAddr{IP: net.ParseIP("127.0.0.2")}, l.Addr().(*net.UDPAddr))
	if err != nil {
		t.Fatal(err)
	}
	defer denied.Close()
	if _, err := denied.Write([]byte("denied")); err != nil {
		t.Fatal(err)
	}
	// The server answers in order: once the allowed client has its
	// answer, a reply to the denied one would be there already.
	if got := udpExchange(t, dial(t, "udp", l.Addr().String()), "allowed"); got != "allowed" {
		t.Fatalf("allowed client got %q", got)
	}
	denied.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	buf := make([]byte, 64)
	if n, err := denied.Read(buf); err == nil {
		t.Errorf("a source in no_access got the answer %q, want none", buf[:n])
	}
}

// TestServeModeSwitchFromWait switches a Listener from wait to nowait
// while its wait-mode handler still holds the socket, as a reload that
// turns wait off does. The handler left the shared file description
// blocking; the nowait loop must not accept on it while the handler owns
// the socket, must find it non-blocking afterwards, and Close must end
// it (a blocking accept4 would never return).
func TestServeModeSwitchFromWait(t *testing.T) {
	e := newEnv(t)
	release := filepath.Join(t.TempDir(), "release")
	waitSvc := helperService(t, "sw", tcpKey, "wait-file", release)
	waitSvc.Wait = true
	l, err := Listen(waitSvc, e.rt, e.log)
	if err != nil {
		t.Fatal(err)
	}
	c1 := dial(t, "tcp", l.Addr().String())
	e.rec.Wait(t, match("start", "service", "sw"))

	update(t, l, execService("sw", tcpKey, "/bin/echo", "nowait"))
	// The serve goroutine has seen the switch and waits for the handler.
	testkit.WaitFor(t, "the serve goroutine waiting for the wait handler", l.handoff.Load)
	if got := e.rec.Count(match("start")); got != 1 {
		t.Errorf("%d handlers started while the wait handler owned the socket, want 1 (the nowait loop must wait for the socket)", got)
	}
	if err := os.WriteFile(release, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	e.rec.Wait(t, match("exit", "service", "sw"))
	if got := readAll(t, c1); got != "nowait\n" {
		t.Errorf("client queued during the switch got %q, want the nowait handler's reply", got)
	}
	e.rec.WaitN(t, 2, match("exit"))
	if !nonblocking(t, l) {
		t.Errorf("the socket is blocking after the wait handler exited and the nowait loop took over, want non-blocking")
	}

	closed := make(chan error, 1)
	go func() { closed <- l.Close() }()
	select {
	case err := <-closed:
		if err != nil {
			t.Errorf("Close: %v", err)
		}
	case <-time.After(testTimeout):
		t.Errorf("Close still running after %v: the nowait loop is blocked in accept4 on a blocking socket", testTimeout)
		// Unblock it so the test can end: one more connection.
		readAll(t, dial(t, "tcp", l.Addr().String()))
		<-closed
	}
}

// TestServeRapidModeChanges switches one socket's mode back and forth
// many times in a row and checks that the mode in force at the end
// serves, again and again: the interrupt that ends one mode's loop never
// stops a later one. (Before Listeners: TestServeLateInterrupt, with the
// interrupts of one Service reaching the next on a shared socket.)
func TestServeRapidModeChanges(t *testing.T) {
	type mode struct {
		name  string
		svc   func(t *testing.T) *config.Service
		check func(t *testing.T, addr string)
	}
	tcp := []mode{
		{"nowait", func(*testing.T) *config.Service { return execService("m", tcpKey, "/bin/echo", "ok") },
			func(t *testing.T, addr string) {
				if got := readAll(t, dial(t, "tcp", addr)); got != "ok\n" {
					t.Errorf("got %q, want ok", got)
				}
			}},
		{"builtin stream", func(*testing.T) *config.Service { return builtinService("m", tcpKey, "echo") },
			func(t *testing.T, addr string) {
				c := dial(t, "tcp", addr)
				fmt.Fprintln(c, "x")
				if got := readLine(t, bufio.NewReader(c)); got != "x\n" {
					t.Errorf("got %q", got)
				}
			}},
		{"wait tcp", func(t *testing.T) *config.Service {
			s := helperService(t, "m", tcpKey, "tcp-accept")
			s.Wait = true
			return s
		}, func(t *testing.T, addr string) {
			if got := readAll(t, dial(t, "tcp", addr)); got != "accepted\n" {
				t.Errorf("got %q, want accepted", got)
			}
		}},
	}
	udp := []mode{
		{"wait udp", func(t *testing.T) *config.Service {
			s := helperService(t, "m", udpKey, "udp-reply")
			s.Wait = true
			return s
		}, func(t *testing.T, addr string) {
			if got := udpExchange(t, dial(t, "udp", addr), "x"); got != "reply:x nonblock=false" {
				t.Errorf("got %q", got)
			}
		}},
		{"builtin packet", func(*testing.T) *config.Service { return builtinService("m", udpKey, "echo") },
			func(t *testing.T, addr string) {
				if got := udpExchange(t, dial(t, "udp", addr), "x"); got != "x" {
					t.Errorf("got %q", got)
				}
			}},
	}
	for _, modes := range [][]mode{tcp, udp} {
		for _, target := range modes {
			t.Run(target.name, func(t *testing.T) {
				e := newEnv(t)
				l := e.listen(t, target.svc(t))
				for range 10 {
					for _, m := range modes {
						update(t, l, m.svc(t))
					}
				}
				update(t, l, target.svc(t))
				for range 3 {
					target.check(t, l.Addr().String())
				}
				closeListener(t, l)
				if n := errorLines(e); n != 0 {
					t.Errorf("%d error lines after rapid mode changes, want none", n)
				}
			})
		}
	}
}

// TestServeAcceptBackoff makes accept4 fail with EMFILE and checks that
// the shortage is logged once (descriptors_exhausted, not an
// accept_failed per retry) and that the client waiting in the backlog is
// served once descriptors are available again.
func TestServeAcceptBackoff(t *testing.T) {
	e := newEnv(t)
	// Instances 0 holds the loop before its first accept, until the
	// limit on descriptors is in place.
	svc := execService("emfile", tcpKey, "/bin/echo", "served")
	held := *svc
	held.Limits.Instances = 0
	l := e.listen(t, &held)
	c := dial(t, "tcp", l.Addr().String()) // waits in the backlog

	var orig unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &orig); err != nil {
		t.Fatal(err)
	}
	// The lowest free descriptor number becomes the limit: every new
	// descriptor is refused.
	free, err := unix.Dup(0)
	if err != nil {
		t.Fatal(err)
	}
	unix.Close(free)
	restore := func() {
		if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &orig); err != nil {
			t.Fatalf("restore RLIMIT_NOFILE: %v", err)
		}
	}
	if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &unix.Rlimit{Cur: uint64(free), Max: orig.Max}); err != nil {
		t.Fatal(err)
	}
	defer restore()
	update(t, l, svc) // needs no descriptor
	short := e.rec.Wait(t, match("descriptors_exhausted", "service", "emfile"))
	restore()
	if !strings.Contains(short.Attrs["err"], "too many open files") || short.Level.String() != "ERROR" {
		t.Errorf("shortage line %v, want ERROR with EMFILE", short)
	}
	if got := readAll(t, c); got != "served\n" {
		t.Errorf("client waiting through EMFILE got %q, want served", got)
	}
	e.rec.Wait(t, match("exit", "status", "0"))
	if n := e.rec.Count(match("descriptors_exhausted")); n != 1 {
		t.Errorf("%d descriptors_exhausted lines for one shortage, want 1", n)
	}
	if n := e.rec.Count(match("accept_failed")); n != 0 {
		t.Errorf("%d accept_failed lines for a shortage of descriptors, want 0", n)
	}
}

// TestServeWaitCannotStart checks that a wait-mode handler that cannot
// start gives the socket back each time and does not make superd spin:
// the loop guard pauses the service.
func TestServeWaitCannotStart(t *testing.T) {
	e := newEnv(t)
	svc := execService("broken", udpKey, "/nonexistent/handler")
	svc.Wait = true
	l := e.listen(t, svc)
	if _, err := dial(t, "udp", l.Addr().String()).Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	fl := e.rec.Wait(t, match("start_failed"))
	if fl.Attrs["path"] != "/nonexistent/handler" || !strings.Contains(fl.Attrs["err"], "no such file") {
		t.Errorf("failure line %v", fl)
	}
	e.rec.Wait(t, match("looping", "service", "broken"))
	closeListener(t, l)
	// A failed start takes nothing from the socket: it backs off like a
	// handler that does not read. Counted in the log's order, so that
	// starts after the looping line (during Close) do not count.
	n := 0
	for _, en := range e.rec.All()[:e.rec.Index(match("looping"))] {
		if en.Msg == "start_failed" {
			n++
		}
	}
	if n != loopLogAfter {
		t.Errorf("%d failed starts before the first looping line, want %d", n, loopLogAfter)
	}
}

// TestBindErrors checks that Listen reports what stops its bind.
func TestBindErrors(t *testing.T) {
	e := newEnv(t)
	tcp := e.listen(t, execService("tcp", tcpKey, "/bin/true"))
	udp := e.listen(t, builtinService("udp", udpKey, "echo"))
	dir := sockDir(t)
	tests := []struct {
		key  config.ListenKey
		mode os.FileMode
	}{
		{config.ListenKey{Network: "tcp", Address: tcp.Addr().String()}, 0},
		{config.ListenKey{Network: "udp", Address: udp.Addr().String()}, 0},
		{config.ListenKey{Network: "unix", Address: filepath.Join(dir, "missing", "s")}, 0},
		{config.ListenKey{Network: "unixgram", Address: filepath.Join(dir, "missing", "s")}, 0},
		{config.ListenKey{Network: "tcp", Address: "127.0.0.1:notaport"}, 0},
	}
	for _, tt := range tests {
		svc := execService("b", tt.key, "/bin/true")
		svc.SocketMode = tt.mode
		if l, err := Listen(svc, e.rt, e.log); err == nil {
			l.Close()
			t.Errorf("Listen(%s) succeeded, want an error", tt.key)
		}
	}
}

// TestListenerModeCycle switches one socket through every mode it can
// serve, nowait → wait → built-in → nowait for TCP and wait → built-in
// → wait for UDP: the socket (its address) stays, each mode serves, and
// a client that queued while the old mode still ran is served by the new
// one.
func TestListenerModeCycle(t *testing.T) {
	t.Run("tcp", func(t *testing.T) {
		e := newEnv(t)
		l := e.listen(t, execService("m", tcpKey, "/bin/echo", "nowait"))
		addr := l.Addr().String()
		if got := readAll(t, dial(t, "tcp", addr)); got != "nowait\n" {
			t.Fatalf("nowait: got %q", got)
		}
		wait := helperService(t, "m", tcpKey, "tcp-accept")
		wait.Wait = true
		queued := dial(t, "tcp", addr) // taken by the nowait loop or left for wait
		update(t, l, wait)
		if got := readAll(t, queued); got != "nowait\n" && got != "accepted\n" {
			t.Errorf("client queued across nowait → wait got %q", got)
		}
		if got := readAll(t, dial(t, "tcp", addr)); got != "accepted\n" {
			t.Fatalf("wait: got %q, want accepted by the wait handler", got)
		}
		e.rec.Wait(t, match("exit", "status", "0", "service", "m"))
		update(t, l, builtinService("m", tcpKey, "daytime"))
		if got := readAll(t, dial(t, "tcp", addr)); !isDaytime(got) {
			t.Fatalf("built-in: got %q, want daytime", got)
		}
		update(t, l, execService("m", tcpKey, "/bin/echo", "nowait again"))
		if got := readAll(t, dial(t, "tcp", addr)); got != "nowait again\n" {
			t.Fatalf("nowait again: got %q", got)
		}
		if l.Addr().String() != addr || l.Mode() != ModeNowait {
			t.Errorf("Addr, Mode = %s, %d after the cycle; want %s, ModeNowait", l.Addr(), l.Mode(), addr)
		}
		if n := errorLines(e); n != 0 {
			t.Errorf("%d error lines, want none", n)
		}
	})
	t.Run("udp", func(t *testing.T) {
		e := newEnv(t)
		wait := helperService(t, "u", udpKey, "udp-reply")
		wait.Wait = true
		l := e.listen(t, wait)
		c := dial(t, "udp", l.Addr().String())
		if got := udpExchange(t, c, "w1"); got != "reply:w1 nonblock=false" {
			t.Fatalf("wait: got %q", got)
		}
		e.rec.Wait(t, match("exit", "service", "u"))
		update(t, l, builtinService("u", udpKey, "echo"))
		if got := udpExchange(t, c, "b"); got != "b" {
			t.Fatalf("built-in: got %q, want the echo", got)
		}
		update(t, l, wait)
		if got := udpExchange(t, c, "w2"); got != "reply:w2 nonblock=false" {
			t.Fatalf("wait again: got %q", got)
		}
		if n := errorLines(e); n != 0 {
			t.Errorf("%d error lines, want none", n)
		}
	})
}

// TestListenerCloseWaitHandler closes a Listener while its wait-mode
// handler runs: Close returns without waiting for the handler, which
// keeps running and is still reaped and logged by the process table.
func TestListenerCloseWaitHandler(t *testing.T) {
	e := newEnv(t)
	release := filepath.Join(t.TempDir(), "release")
	svc := helperService(t, "w", udpKey, "wait-file", release)
	svc.Wait = true
	l := e.listen(t, svc)
	if _, err := dial(t, "udp", l.Addr().String()).Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	st := e.rec.Wait(t, match("start", "service", "w"))
	closeListener(t, l)
	if n := e.rt.Procs.Count(); n != 1 {
		t.Fatalf("%d handlers running after Close, want the wait handler still running", n)
	}
	if err := os.WriteFile(release, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if ex := e.rec.Wait(t, match("exit", "pid", st.Attrs["pid"])); ex.Attrs["status"] != "0" || ex.Attrs["service"] != "w" {
		t.Errorf("exit of the wait handler after Close %v, want service=w status=0", ex)
	}
	if n := errorLines(e); n != 0 {
		t.Errorf("%d error lines, want none", n)
	}
}

// TestListenerRenameKeepsAdmission renames the service on a socket
// while its one instance runs: the instances count belongs to the
// Listener, so the renamed service still defers the next client until
// the old handler exits, and serves it under its new name.
func TestListenerRenameKeepsAdmission(t *testing.T) {
	e := newEnv(t)
	old := helperService(t, "old", tcpKey, "readline")
	old.Limits.Instances = 1
	l := e.listen(t, old)
	held := dial(t, "tcp", l.Addr().String())
	e.rec.Wait(t, match("start", "service", "old"))
	renamed := helperService(t, "new", tcpKey, "readline")
	renamed.Limits.Instances = 1
	update(t, l, renamed)
	if l.Name() != "new" {
		t.Errorf("Name after the rename = %q, want new", l.Name())
	}
	next := dial(t, "tcp", l.Addr().String())
	testkit.WaitFor(t, "the serve loop waiting for a slot", l.adm.Waiting)
	if got, n := l.Running(), e.rec.Count(match("start")); got != 1 || n != 1 {
		t.Fatalf("Running = %d and %d starts after the rename with the old handler running, want 1 and 1", got, n)
	}
	fmt.Fprintln(next, "second")
	fmt.Fprintln(held, "first")
	if got := readAll(t, held); got != "got:first\n" {
		t.Errorf("old handler answered %q", got)
	}
	if got := readAll(t, next); got != "got:second\n" {
		t.Errorf("deferred client got %q", got)
	}
	st := e.rec.Wait(t, match("start", "remote", next.LocalAddr().String()))
	if st.Attrs["service"] != "new" {
		t.Errorf("start of the deferred client %v, want service=new", st)
	}
	if i, j := e.rec.Index(match("exit", "service", "old")), e.rec.Index(match("start", "service", "new")); i < 0 || j < 0 {
		t.Errorf("log lacks the old handler's exit (%d) or the new one's start (%d)", i, j)
	}
}

// TestListenerUpdateFails checks that an Update whose socket settings
// cannot be applied (the socket file replaced by a symlink: no chmod
// through it) returns the error and keeps the settings in force.
func TestListenerUpdateFails(t *testing.T) {
	e := newEnv(t)
	dir := sockDir(t)
	key := config.ListenKey{Network: "unix", Address: filepath.Join(dir, "s.sock")}
	svc := execService("before", key, "/bin/echo", "before")
	svc.SocketMode = 0o600
	l := e.listen(t, svc)
	if err := os.Remove(key.Address); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(dir, "elsewhere"), key.Address); err != nil {
		t.Fatal(err)
	}
	next := execService("after", key, "/bin/echo", "after")
	next.SocketMode = 0o660
	if err := l.Update(next); err == nil {
		t.Fatalf("Update through a symlinked socket file succeeded, want an error")
	}
	if l.Service() != svc || l.Name() != "before" {
		t.Errorf("settings after a failed Update: %q, want the old ones", l.Name())
	}
	if err := l.Update(&config.Service{Name: "x", Listen: tcpKey}); err == nil {
		t.Errorf("Update with another identity succeeded, want an error")
	}
	closeListener(t, l)
	if err := l.Update(svc); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Update after Close = %v, want net.ErrClosed", err)
	}
}

// TestBuiltinDescriptorsOpenAtListen checks that a built-in's
// descriptors are all open once Listen returns: the net.Listener it
// accepts through is made then, not whenever its serve goroutine first
// runs, so a descriptor count taken after READY stays the baseline.
func TestBuiltinDescriptorsOpenAtListen(t *testing.T) {
	e := newEnv(t)
	fds := func() int {
		ents, err := os.ReadDir("/proc/self/fd")
		if err != nil {
			t.Fatal(err)
		}
		return len(ents)
	}
	// The first Listen also opens Go's poller.
	closeListener(t, e.listen(t, builtinService("warm", tcpKey, "echo")))
	l := e.listen(t, builtinService("echo", tcpKey, "echo"))
	before := fds()
	c := dial(t, "tcp", l.Addr().String())
	c.Write([]byte("x\n"))
	c.(*net.TCPConn).CloseWrite()
	if got := readAll(t, c); got != "x\n" {
		t.Fatalf("echo = %q", got)
	}
	c.Close()
	// The served connection's descriptor closes after the reply.
	deadline := time.Now().Add(testTimeout)
	for fds() != before && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if got := fds(); got != before {
		t.Errorf("descriptors after one connection = %d, right after Listen %d: a descriptor opened late", got, before)
	}
	closeListener(t, l)
}
