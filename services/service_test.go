package services

import (
	"bufio"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/superd/superd/config"
)

var tcpKey = config.ListenKey{Network: "tcp", Address: "127.0.0.1:0"}
var udpKey = config.ListenKey{Network: "udp", Address: "127.0.0.1:0"}

// bindKey binds key and closes the socket at cleanup.
func bindKey(t *testing.T, key config.ListenKey) *Socket {
	t.Helper()
	return bind(t, key.Network, key.Address)
}

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
	sock := bindKey(t, tcpKey)
	r := e.serve(t, execService("hello", tcpKey, "/bin/echo", "hello", "world"), sock)
	for i := range 3 {
		c := dial(t, "tcp", sock.Addr().String())
		if got := readAll(t, c); got != "hello world\n" {
			t.Fatalf("connection %d: got %q, want %q", i, got, "hello world\n")
		}
		remote := c.LocalAddr().String()
		st := e.rec.wait(t, match("start", "remote", remote))
		ex := e.rec.wait(t, match("exit", "remote", remote))
		if st.attrs["service"] != "hello" || ex.attrs["pid"] != st.attrs["pid"] || ex.attrs["status"] != "0" {
			t.Errorf("start %v, exit %v; want service=hello, one pid, status=0", st, ex)
		}
	}
	if r.svc.Name() != "hello" || r.svc.Mode() != ModeNowait {
		t.Errorf("Name, Mode = %q, %d; want hello, ModeNowait", r.svc.Name(), r.svc.Mode())
	}
	r.stop(t)
	if got := r.svc.Running(); got != 0 {
		t.Errorf("Running after every handler exited and Serve returned = %d, want 0", got)
	}
}

// TestServeHandlerFds checks the nowait handler contract: fd 0 is a
// blocking socket and only fds 0, 1 and 2 are open.
func TestServeHandlerFds(t *testing.T) {
	e := newEnv(t)
	sock := bindKey(t, tcpKey)
	e.serve(t, helperService(t, "fds", tcpKey, "fds"), sock)
	// Two connections: the second handler must not inherit the first's
	// descriptor.
	c1 := dial(t, "tcp", sock.Addr().String())
	c2 := dial(t, "tcp", sock.Addr().String())
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
			sock := bindKey(t, key)
			svc := execService("envsvc", key, "/usr/bin/env")
			svc.Exec.PassEnv = []string{"SUPERD_TEST_PASS", "SUPERD_TEST_UNSET"}
			svc.Exec.Env = []string{"FOO=bar baz", "PATH=/custom/bin"}
			e.serve(t, svc, sock)
			c := dial(t, key.Network, sock.Addr().String())
			got := strings.Split(strings.TrimSuffix(readAll(t, c), "\n"), "\n")
			want := []string{"PATH=/custom/bin", "SUPERD_SERVICE=envsvc", "SUPERD_TEST_PASS=passed", "FOO=bar baz"}
			if key.Network == "tcp" {
				l, r := apOf(sock.Addr()), apOf(c.LocalAddr())
				want = append(want, "PROTO=TCP",
					"TCPLOCALIP="+l.Addr().String(), "TCPLOCALPORT="+strconv.Itoa(int(l.Port())),
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
	sock := bindKey(t, tcpKey)
	svc := execService("err", tcpKey, "/bin/sh", "-c", "echo out; echo err >&2")
	svc.Exec.Stderr = "socket"
	e.serve(t, svc, sock)
	c := dial(t, "tcp", sock.Addr().String())
	if got := readAll(t, c); got != "out\nerr\n" {
		t.Errorf("got %q, want stdout and stderr on the connection", got)
	}
	if n := e.rec.count(match("stderr")); n != 0 {
		t.Errorf("%d stderr lines logged with stderr = socket, want 0", n)
	}
}

// TestServeStderrLog checks stderr = "log": lines are logged with the
// service and the handler's pid.
func TestServeStderrLog(t *testing.T) {
	e := newEnv(t)
	sock := bindKey(t, tcpKey)
	e.serve(t, execService("err", tcpKey, "/bin/sh", "-c", "echo out; echo oops >&2"), sock)
	c := dial(t, "tcp", sock.Addr().String())
	if got := readAll(t, c); got != "out\n" {
		t.Errorf("got %q, want only stdout on the connection", got)
	}
	st := e.rec.wait(t, match("start", "remote", c.LocalAddr().String()))
	l := e.rec.wait(t, match("stderr", "line", "oops"))
	if l.attrs["service"] != "err" || l.attrs["pid"] != st.attrs["pid"] {
		t.Errorf("stderr line %v, want service=err pid=%s", l, st.attrs["pid"])
	}
}

// TestServeInstances checks that at the instances limit superd stops
// accepting: the second client waits in the backlog and is served only
// after the first handler exits.
func TestServeInstances(t *testing.T) {
	e := newEnv(t)
	sock := bindKey(t, tcpKey)
	svc := helperService(t, "one", tcpKey, "readline")
	svc.Limits.Instances = 1
	r := e.serve(t, svc, sock)

	c1 := dial(t, "tcp", sock.Addr().String())
	st1 := e.rec.wait(t, match("start", "remote", c1.LocalAddr().String()))
	c2 := dial(t, "tcp", sock.Addr().String()) // completes in the kernel backlog
	// Give a broken limit a chance to show: superd must not take c2.
	time.Sleep(100 * time.Millisecond)
	if n := e.rec.count(match("start")); n != 1 || r.svc.Running() != 1 {
		t.Fatalf("%d handlers started and Running = %d with instances = 1, want 1 and 1", n, r.svc.Running())
	}
	fmt.Fprintln(c2, "two") // waits in the socket buffer
	fmt.Fprintln(c1, "one")
	if got := readAll(t, c1); got != "got:one\n" {
		t.Fatalf("first client got %q", got)
	}
	if got := readAll(t, c2); got != "got:two\n" {
		t.Fatalf("second client got %q", got)
	}
	e.rec.wait(t, match("exit", "remote", c2.LocalAddr().String()))
	// The second handler started after the first one exited.
	var order []string
	for _, l := range e.rec.all() {
		if l.msg == "start" || l.msg == "exit" {
			who := "c1"
			if l.attrs["remote"] == c2.LocalAddr().String() {
				who = "c2"
			}
			order = append(order, l.msg+":"+who)
		}
	}
	if strings.Join(order, " ") != "start:c1 exit:c1 start:c2 exit:c2" {
		t.Errorf("handler events %v, want c2 started only after c1 exited", order)
	}
	if st1.attrs["remote"] != c1.LocalAddr().String() {
		t.Errorf("first start %v", st1)
	}
}

// TestServeUpdate checks that Update applies to new connections only,
// while the running handler keeps its settings and its connection, and
// that a larger instances limit admits a client waiting in the backlog
// at once.
func TestServeUpdate(t *testing.T) {
	e := newEnv(t)
	sock := bindKey(t, tcpKey)
	old := helperService(t, "svc", tcpKey, "readline")
	old.Limits.Instances = 1
	r := e.serve(t, old, sock)

	c1 := dial(t, "tcp", sock.Addr().String())
	e.rec.wait(t, match("start", "remote", c1.LocalAddr().String()))
	c2 := dial(t, "tcp", sock.Addr().String()) // waits: instances = 1

	next := execService("svc", tcpKey, "/bin/echo", "v2")
	next.Limits.Instances = 2
	r.svc.Update(next)
	if got := readAll(t, c2); got != "v2\n" {
		t.Fatalf("client waiting through the update got %q, want the new handler's v2", got)
	}
	fmt.Fprintln(c1, "one")
	if got := readAll(t, c1); got != "got:one\n" {
		t.Errorf("client of the old handler got %q, want got:one", got)
	}
	c3 := dial(t, "tcp", sock.Addr().String())
	if got := readAll(t, c3); got != "v2\n" {
		t.Errorf("new client got %q, want v2", got)
	}
}

// TestServeCancel checks that cancelling Serve's context ends it
// promptly, even while it waits for a slot, leaves the socket open with
// its backlog, and that a new Service on the socket serves that backlog.
func TestServeCancel(t *testing.T) {
	e := newEnv(t)
	sock := bindKey(t, tcpKey)

	// Idle in accept.
	r := e.serve(t, execService("a", tcpKey, "/bin/echo", "first"), sock)
	c := dial(t, "tcp", sock.Addr().String())
	if got := readAll(t, c); got != "first\n" {
		t.Fatalf("got %q", got)
	}
	r.stop(t)

	// Waiting for a slot.
	svc := helperService(t, "b", tcpKey, "readline")
	svc.Limits.Instances = 1
	r = e.serve(t, svc, sock)
	held := dial(t, "tcp", sock.Addr().String())
	e.rec.wait(t, match("start", "service", "b"))
	r.stop(t)
	fmt.Fprintln(held, "still served")
	if got := readAll(t, held); got != "got:still served\n" {
		t.Errorf("handler after its Service stopped: %q, want it to keep running", got)
	}

	// The socket is still open: a client queues, and a new Service
	// serves it.
	queued := dial(t, "tcp", sock.Addr().String())
	e.serve(t, execService("c", tcpKey, "/bin/echo", "second"), sock)
	if got := readAll(t, queued); got != "second\n" {
		t.Errorf("client queued between two Services got %q, want second", got)
	}
}

// TestServeSocketClosed checks that Serve returns nil when its socket is
// closed under it, in each mode.
func TestServeSocketClosed(t *testing.T) {
	tests := []struct {
		name string
		svc  func(t *testing.T) *config.Service
	}{
		{"nowait", func(t *testing.T) *config.Service { return execService("s", tcpKey, "/bin/true") }},
		{"wait tcp", func(t *testing.T) *config.Service {
			s := helperService(t, "s", tcpKey, "tcp-accept")
			s.Wait = true
			return s
		}},
		{"wait udp", func(t *testing.T) *config.Service {
			s := helperService(t, "s", udpKey, "udp-reply")
			s.Wait = true
			return s
		}},
		{"builtin stream", func(*testing.T) *config.Service {
			return &config.Service{Name: "s", Listen: tcpKey, Builtin: "echo", Limits: config.Limits{Instances: 4}}
		}},
		{"builtin packet", func(*testing.T) *config.Service {
			return &config.Service{Name: "s", Listen: udpKey, Builtin: "echo", Limits: config.Limits{Instances: 4}}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			svc := tt.svc(t)
			sock := bindKey(t, svc.Listen)
			r := e.serve(t, svc, sock)
			// Serve must end wherever Close finds it; the pause only lets it
			// reach its wait, so that a wait service does not log its
			// setNonblock on an already closed socket.
			time.Sleep(50 * time.Millisecond)
			sock.Close()
			select {
			case err := <-r.done:
				if err != nil {
					t.Errorf("Serve after Close = %v, want nil", err)
				}
				r.done <- nil
			case <-time.After(3 * time.Second):
				t.Fatalf("Serve still running 3s after its socket was closed")
			}
			if n := e.rec.count(func(e entry) bool { return e.level >= 8 }); n != 0 {
				t.Errorf("%d error lines for a closed socket, want none", n)
			}
		})
	}
}

// TestServeCannotStart checks that a handler that cannot start is
// logged, its connection closed and its slot freed, and that Serve
// carries on.
func TestServeCannotStart(t *testing.T) {
	e := newEnv(t)
	sock := bindKey(t, tcpKey)
	svc := execService("broken", tcpKey, "/nonexistent/handler")
	svc.Limits.Instances = 1
	r := e.serve(t, svc, sock)
	for i := range 3 { // more than instances: the slot comes back
		c := dial(t, "tcp", sock.Addr().String())
		expectEOF(t, c)
		l := e.rec.waitN(t, i+1, match("start_failed"))[i]
		if l.attrs["path"] != "/nonexistent/handler" || l.attrs["remote"] != c.LocalAddr().String() ||
			!strings.Contains(l.attrs["err"], "no such file") || l.level.String() != "ERROR" {
			t.Errorf("log line %v, want ERROR with path, remote and the reason", l)
		}
	}
	fixed := execService("broken", tcpKey, "/bin/echo", "fixed")
	fixed.Limits.Instances = 1
	r.svc.Update(fixed)
	if got := readAll(t, dial(t, "tcp", sock.Addr().String())); got != "fixed\n" {
		t.Errorf("after fixing the path: %q, want fixed", got)
	}
	e.rec.wait(t, match("exit", "service", "broken"))
	r.stop(t)
	if got := r.svc.Running(); got != 0 {
		t.Errorf("Running after failed starts = %d, want 0 (every slot given back)", got)
	}
}

func TestServeTimeout(t *testing.T) {
	e := newEnv(t)
	sock := bindKey(t, tcpKey)
	svc := helperService(t, "slow", tcpKey, "readline")
	svc.Limits.Timeout = 200 * time.Millisecond
	e.serve(t, svc, sock)
	c := dial(t, "tcp", sock.Addr().String())
	expectEOF(t, c)
	to := e.rec.wait(t, match("timeout", "service", "slow"))
	ex := e.rec.wait(t, match("exit", "service", "slow"))
	if to.attrs["pid"] != ex.attrs["pid"] || ex.attrs["status"] != "signal:SIGTERM" || to.attrs["remote"] != c.LocalAddr().String() {
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
		sock := bindKey(t, tcpKey)
		svc := execService("acl", tcpKey, "/bin/echo", "welcome")
		svc.Access.OnlyFrom = []netip.Prefix{netip.MustParsePrefix("127.0.0.2/32")}
		r := e.serve(t, svc, sock)
		expectEOF(t, dialFrom(t, "127.0.0.1", sock.Addr().String()))
		l := e.rec.wait(t, match("refused", "reason", "access"))
		if l.attrs["count"] != "1" || l.attrs["service"] != "acl" {
			t.Errorf("refusal line %v, want count=1 service=acl", l)
		}
		if got := readAll(t, dialFrom(t, "127.0.0.2", sock.Addr().String())); got != "welcome\n" {
			t.Errorf("allowed client got %q, want welcome", got)
		}
		if n := e.rec.count(match("start")); n != 1 {
			t.Errorf("%d handlers started, want 1 (none for the refused client)", n)
		}
		e.rec.wait(t, match("exit"))
		r.stop(t)
		if got := r.svc.Running(); got != 0 {
			t.Errorf("Running = %d after a refusal, want 0 (slot given back)", got)
		}
	})
	t.Run("no_access", func(t *testing.T) {
		e := newEnv(t)
		sock := bindKey(t, tcpKey)
		svc := execService("acl", tcpKey, "/bin/echo", "welcome")
		svc.Access.OnlyFrom = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
		svc.Access.NoAccess = []netip.Prefix{netip.MustParsePrefix("127.0.0.3/32")}
		e.serve(t, svc, sock)
		expectEOF(t, dialFrom(t, "127.0.0.3", sock.Addr().String()))
		if got := readAll(t, dialFrom(t, "127.0.0.1", sock.Addr().String())); got != "welcome\n" {
			t.Errorf("allowed client got %q, want welcome", got)
		}
	})
	t.Run("per_source", func(t *testing.T) {
		e := newEnv(t)
		sock := bindKey(t, tcpKey)
		svc := helperService(t, "ps", tcpKey, "readline")
		svc.Limits.PerSource = 1
		r := e.serve(t, svc, sock)
		held := dialFrom(t, "127.0.0.1", sock.Addr().String())
		e.rec.wait(t, match("start", "remote", held.LocalAddr().String()))
		expectEOF(t, dialFrom(t, "127.0.0.1", sock.Addr().String()))
		if l := e.rec.wait(t, match("refused", "reason", "per_source")); l.attrs["count"] != "1" {
			t.Errorf("refusal line %v, want count=1", l)
		}
		other := dialFrom(t, "127.0.0.2", sock.Addr().String())
		fmt.Fprintln(other, "b")
		if got := readAll(t, other); got != "got:b\n" {
			t.Errorf("client from another address got %q, want got:b", got)
		}
		fmt.Fprintln(held, "a")
		if got := readAll(t, held); got != "got:a\n" {
			t.Errorf("first client got %q", got)
		}
		// Its place is free again once it was reaped.
		e.rec.wait(t, match("exit", "remote", held.LocalAddr().String()))
		again := dialFrom(t, "127.0.0.1", sock.Addr().String())
		fmt.Fprintln(again, "c")
		if got := readAll(t, again); got != "got:c\n" {
			t.Errorf("client after the first left got %q, want got:c", got)
		}
		e.rec.waitN(t, 3, match("exit"))
		r.stop(t)
		if got := r.svc.Running(); got != 0 {
			t.Errorf("Running = %d, want 0", got)
		}
	})
}

// TestServeConfine runs a handler through the trampoline (the test
// binary, see TestMain) and reads back umask, niceness and a limit.
func TestServeConfine(t *testing.T) {
	e := newEnv(t)
	sock := bindKey(t, tcpKey)
	svc := execService("confined", tcpKey, "/bin/sh", "-c", "umask; cut -d' ' -f19 /proc/self/stat; ulimit -n")
	svc.Exec.Umask = 0o027
	svc.Exec.SetNice, svc.Exec.Nice = true, 7
	svc.Exec.Rlimits = []config.Rlimit{{Name: "nofile", Resource: unix.RLIMIT_NOFILE, Value: 100}}
	e.serve(t, svc, sock)
	c := dial(t, "tcp", sock.Addr().String())
	if got := readAll(t, c); got != "0027\n7\n100\n" {
		t.Errorf("confined handler reported %q, want umask 0027, nice 7, nofile 100", got)
	}
}

func TestServeWaitUDP(t *testing.T) {
	e := newEnv(t)
	sock := bindKey(t, udpKey)
	// The handler leaves the socket non-blocking, as tftpd does; the next
	// one must still get it blocking.
	svc := helperService(t, "dgram", udpKey, "udp-reply", "set-nonblock")
	svc.Wait = true
	r := e.serve(t, svc, sock)
	if r.svc.Mode() != ModeWait {
		t.Fatalf("Mode = %d, want ModeWait", r.svc.Mode())
	}
	c := dial(t, "udp", sock.Addr().String())
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
	e.rec.waitN(t, 8, match("exit", "status", "0"))
	if st := e.rec.wait(t, match("start")); st.attrs["remote"] != "" {
		t.Errorf("wait-mode start line %v, want no remote", st)
	}
}

func TestServeWaitTCP(t *testing.T) {
	e := newEnv(t)
	sock := bindKey(t, tcpKey)
	svc := helperService(t, "selfaccept", tcpKey, "tcp-accept")
	svc.Wait = true
	e.serve(t, svc, sock)
	for i := range 3 {
		if got := readAll(t, dial(t, "tcp", sock.Addr().String())); got != "accepted\n" {
			t.Fatalf("client %d got %q, want accepted by the wait handler", i, got)
		}
	}
	e.rec.waitN(t, 3, match("exit", "status", "0"))
}

// TestServeWaitLoop checks the loop guard: a wait handler that exits
// without taking its datagram is restarted with an exponential back-off
// (no spin), the loop is logged, and the service still stops promptly
// when asked.
func TestServeWaitLoop(t *testing.T) {
	e := newEnv(t)
	sock := bindKey(t, udpKey)
	svc := execService("loop", udpKey, "/bin/true")
	svc.Wait = true
	r := e.serve(t, svc, sock)
	c := dial(t, "udp", sock.Addr().String())
	if _, err := c.Write([]byte("never read")); err != nil {
		t.Fatal(err)
	}
	began := time.Now()
	l := e.rec.wait(t, match("looping"))
	want := (firstLoopPause << (loopLogAfter - 1)).String()
	if l.attrs["unproductive_starts"] != strconv.Itoa(loopLogAfter) || l.attrs["pause"] != want {
		t.Errorf("looping line %v, want unproductive_starts=%d pause=%s", l, loopLogAfter, want)
	}
	time.Sleep(2*time.Second - time.Since(began))
	// Back-offs of 10ms, 20ms, 40ms ... leave room for about 9 starts in
	// 2 seconds; a spinning service starts hundreds.
	if n := e.rec.count(match("start")); n > 12 {
		t.Errorf("%d starts within 2s of a handler that never reads, want at most 12", n)
	}
	stopped := time.Now()
	r.stop(t)
	if took := time.Since(stopped); took > time.Second {
		t.Errorf("stop during a pause took %v", took)
	}
}

// TestServeWaitNoFalseLoop checks that a wait handler that takes its
// datagram is never paused, however fast datagrams come.
func TestServeWaitNoFalseLoop(t *testing.T) {
	e := newEnv(t)
	sock := bindKey(t, udpKey)
	svc := execService("reader", udpKey, "/bin/sh", "-c", "head -c 1 >/dev/null")
	svc.Wait = true
	e.serve(t, svc, sock)
	c := dial(t, "udp", sock.Addr().String())
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
	e.rec.waitN(t, n, match("exit", "status", "0"))
	if l := e.rec.filter(match("looping")); len(l) > 0 {
		t.Errorf("a handler that reads its datagram was taken for a loop: %v", l)
	}
}

// TestServeRunning checks Running against its doc: the handlers (or
// built-in connections) that hold a slot, and nothing else.
func TestServeRunning(t *testing.T) {
	t.Run("nowait", func(t *testing.T) {
		e := newEnv(t)
		sock := bindKey(t, tcpKey)
		r := e.serve(t, helperService(t, "run", tcpKey, "readline"), sock)
		c := dial(t, "tcp", sock.Addr().String())
		e.rec.wait(t, match("start"))
		if got := r.svc.Running(); got != 1 {
			t.Errorf("Running with one handler = %d, want 1", got)
		}
		fmt.Fprintln(c, "x")
		readAll(t, c)
		e.rec.wait(t, match("exit"))
		if got := r.svc.Running(); got != 0 {
			t.Errorf("Running with no handler, Serve waiting for a client = %d, want 0", got)
		}
	})
	t.Run("builtin stream", func(t *testing.T) {
		e := newEnv(t)
		sock := bindKey(t, tcpKey)
		r := e.serve(t, &config.Service{Name: "echo", Listen: tcpKey, Builtin: "echo", Limits: config.Limits{Instances: 4}}, sock)
		c := dial(t, "tcp", sock.Addr().String())
		fmt.Fprintln(c, "ping")
		readLine(t, bufio.NewReader(c))
		if got := r.svc.Running(); got != 1 {
			t.Errorf("Running with one echo connection = %d, want 1", got)
		}
	})
}

// TestServeBuiltin runs the in-process echo over TCP and UDP.
func TestServeBuiltin(t *testing.T) {
	t.Run("stream", func(t *testing.T) {
		e := newEnv(t)
		sock := bindKey(t, tcpKey)
		r := e.serve(t, &config.Service{Name: "echo", Listen: tcpKey, Builtin: "echo", Limits: config.Limits{Instances: 4}}, sock)
		c := dial(t, "tcp", sock.Addr().String())
		br := bufio.NewReader(c)
		fmt.Fprintln(c, "ping")
		if got := readLine(t, br); got != "ping\n" {
			t.Fatalf("echo got %q", got)
		}
		// Stopping the Service ends its built-in connections.
		r.stop(t)
		if _, err := br.ReadString('\n'); !isEOF(err) {
			t.Errorf("read after Serve ended = %v, want EOF", err)
		}
		if got := r.svc.Running(); got != 0 {
			t.Errorf("Running after Serve ended = %d, want 0", got)
		}
	})
	t.Run("packet", func(t *testing.T) {
		e := newEnv(t)
		sock := bindKey(t, udpKey)
		e.serve(t, &config.Service{Name: "echo", Listen: udpKey, Builtin: "echo"}, sock)
		c := dial(t, "udp", sock.Addr().String())
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
	sock := bindKey(t, udpKey)
	r := e.serve(t, &config.Service{Name: "u", Listen: udpKey, Builtin: "echo"}, sock)
	c := dial(t, "udp", sock.Addr().String())
	if got := udpExchange(t, c, "before"); got != "before" {
		t.Fatalf("echo got %q", got)
	}
	r.svc.Update(&config.Service{Name: "u", Listen: udpKey, Builtin: "daytime"})
	if got := udpExchange(t, c, "after"); got == "after" || !strings.HasSuffix(got, "\r\n") {
		t.Errorf("after Update to daytime the service answered %q, want a daytime line", got)
	}
}

// TestServeBuiltinPacketAccess checks that only_from and no_access hold
// for datagram built-ins, which config accepts without a warning.
func TestServeBuiltinPacketAccess(t *testing.T) {
	e := newEnv(t)
	sock := bindKey(t, udpKey)
	svc := &config.Service{Name: "u", Listen: udpKey, Builtin: "echo"}
	svc.Access.NoAccess = []netip.Prefix{netip.MustParsePrefix("127.0.0.2/32")}
	e.serve(t, svc, sock)
	denied, err := net.DialUDP("udp", &net.UDPAddr{IP: net.ParseIP("127.0.0.2")}, sock.Addr().(*net.UDPAddr))
	if err != nil {
		t.Fatal(err)
	}
	defer denied.Close()
	if _, err := denied.Write([]byte("denied")); err != nil {
		t.Fatal(err)
	}
	// The server answers in order: once the allowed client has its
	// answer, a reply to the denied one would be there already.
	if got := udpExchange(t, dial(t, "udp", sock.Addr().String()), "allowed"); got != "allowed" {
		t.Fatalf("allowed client got %q", got)
	}
	denied.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	buf := make([]byte, 64)
	if n, err := denied.Read(buf); err == nil {
		t.Errorf("a source in no_access got the answer %q, want none", buf[:n])
	}
}

// TestServeModeSwitchFromWait replaces a wait-mode Service whose handler
// still holds the socket by a nowait Service on the same socket, as a
// reload that turns wait off does. The handler left the shared file
// description blocking; the new Service must not accept on it while the
// handler owns the socket, must find it non-blocking afterwards, and
// must stop promptly when cancelled.
func TestServeModeSwitchFromWait(t *testing.T) {
	e := newEnv(t)
	sock := bindKey(t, tcpKey)
	release := filepath.Join(t.TempDir(), "release")
	waitSvc := helperService(t, "sw", tcpKey, "wait-file", release)
	waitSvc.Wait = true
	w := e.serve(t, waitSvc, sock)
	c1 := dial(t, "tcp", sock.Addr().String())
	e.rec.wait(t, match("start", "service", "sw"))
	w.stop(t) // the handler keeps running and holds the socket

	nowait := execService("sw", tcpKey, "/bin/echo", "nowait")
	n := e.serve(t, nowait, sock)
	time.Sleep(100 * time.Millisecond)
	if got := e.rec.count(match("start")); got != 1 {
		t.Errorf("%d handlers started while the wait handler owned the socket, want 1 (the new Service must wait for the socket)", got)
	}

	if err := os.WriteFile(release, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	e.rec.wait(t, match("exit", "service", "sw"))
	if got := readAll(t, c1); got != "nowait\n" {
		t.Errorf("client queued during the switch got %q, want the nowait handler's reply", got)
	}
	e.rec.waitN(t, 2, match("exit"))
	if fdFlags(t, sock)&unix.O_NONBLOCK == 0 {
		t.Errorf("the socket is blocking after the wait handler exited and a nowait Service took over, want non-blocking")
	}

	n.cancel()
	select {
	case <-n.done:
		n.done <- nil
	case <-time.After(3 * time.Second):
		t.Errorf("nowait Serve still running 3s after cancel: blocked in accept4 on a blocking socket")
		// Unblock it so the test can end: one more connection.
		c := dial(t, "tcp", sock.Addr().String())
		readAll(t, c)
	}
}

// TestServeLateInterrupt checks that an interrupt meant for a previous
// Service on the same socket (its context.AfterFunc can fire after the
// new Service started) does not stop the new one: it clears the deadline
// and keeps serving.
func TestServeLateInterrupt(t *testing.T) {
	waitUDP := func(t *testing.T) *config.Service {
		s := helperService(t, "late", udpKey, "udp-reply")
		s.Wait = true
		return s
	}
	tests := []struct {
		name  string
		svc   func(t *testing.T) *config.Service
		check func(t *testing.T, sock *Socket)
	}{
		{"nowait", func(*testing.T) *config.Service { return execService("late", tcpKey, "/bin/echo", "ok") },
			func(t *testing.T, sock *Socket) {
				if got := readAll(t, dial(t, "tcp", sock.Addr().String())); got != "ok\n" {
					t.Errorf("got %q, want ok", got)
				}
			}},
		{"wait udp", waitUDP, func(t *testing.T, sock *Socket) {
			if got := udpExchange(t, dial(t, "udp", sock.Addr().String()), "x"); got != "reply:x nonblock=false" {
				t.Errorf("got %q", got)
			}
		}},
		{"builtin stream", func(*testing.T) *config.Service {
			return &config.Service{Name: "late", Listen: tcpKey, Builtin: "echo", Limits: config.Limits{Instances: 4}}
		}, func(t *testing.T, sock *Socket) {
			c := dial(t, "tcp", sock.Addr().String())
			fmt.Fprintln(c, "x")
			if got := readLine(t, bufio.NewReader(c)); got != "x\n" {
				t.Errorf("got %q", got)
			}
		}},
		{"builtin packet", func(*testing.T) *config.Service {
			return &config.Service{Name: "late", Listen: udpKey, Builtin: "echo"}
		}, func(t *testing.T, sock *Socket) {
			if got := udpExchange(t, dial(t, "udp", sock.Addr().String()), "x"); got != "x" {
				t.Errorf("got %q", got)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			svc := tt.svc(t)
			sock := bindKey(t, svc.Listen)
			r := e.serve(t, svc, sock)
			tt.check(t, sock)
			sock.interrupt()
			tt.check(t, sock)
			sock.interrupt()
			sock.interrupt()
			tt.check(t, sock)
			r.stop(t)
			if n := e.rec.count(func(e entry) bool { return e.level >= 8 }); n != 0 {
				t.Errorf("%d error lines after late interrupts, want none", n)
			}
		})
	}
}

// TestServeAcceptBackoff makes accept4 fail with EMFILE and checks that
// the shortage is logged once (descriptors_exhausted, not an
// accept_failed per retry) and that the client waiting in the backlog is
// served once descriptors are available again.
func TestServeAcceptBackoff(t *testing.T) {
	e := newEnv(t)
	sock := bindKey(t, tcpKey)
	c := dial(t, "tcp", sock.Addr().String()) // waits in the backlog

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
	e.serve(t, execService("emfile", tcpKey, "/bin/echo", "served"), sock)
	l := e.rec.wait(t, match("descriptors_exhausted", "service", "emfile"))
	restore()
	if !strings.Contains(l.attrs["err"], "too many open files") || l.level.String() != "ERROR" {
		t.Errorf("shortage line %v, want ERROR with EMFILE", l)
	}
	if got := readAll(t, c); got != "served\n" {
		t.Errorf("client waiting through EMFILE got %q, want served", got)
	}
	e.rec.wait(t, match("exit", "status", "0"))
	if n := e.rec.count(match("descriptors_exhausted")); n != 1 {
		t.Errorf("%d descriptors_exhausted lines for one shortage, want 1", n)
	}
	if n := e.rec.count(match("accept_failed")); n != 0 {
		t.Errorf("%d accept_failed lines for a shortage of descriptors, want 0", n)
	}
}

// TestServeWaitCannotStart checks that a wait-mode handler that cannot
// start gives the socket back each time and does not make superd spin:
// the loop guard pauses the service.
func TestServeWaitCannotStart(t *testing.T) {
	e := newEnv(t)
	sock := bindKey(t, udpKey)
	svc := execService("broken", udpKey, "/nonexistent/handler")
	svc.Wait = true
	r := e.serve(t, svc, sock)
	if _, err := dial(t, "udp", sock.Addr().String()).Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	l := e.rec.wait(t, match("start_failed"))
	if l.attrs["path"] != "/nonexistent/handler" || !strings.Contains(l.attrs["err"], "no such file") {
		t.Errorf("failure line %v", l)
	}
	e.rec.wait(t, match("looping", "service", "broken"))
	r.stop(t)
	// A failed start takes nothing from the socket: it backs off like a
	// handler that does not read.
	if n := e.rec.count(match("start_failed")); n < loopLogAfter || n > loopLogAfter+1 {
		t.Errorf("%d failed starts by the first looping line's pause, want %d", n, loopLogAfter)
	}
}

// TestBindErrors checks that Bind reports what stops it.
func TestBindErrors(t *testing.T) {
	tcp := bind(t, "tcp", "127.0.0.1:0")
	udp := bind(t, "udp", "127.0.0.1:0")
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
		if s, err := Bind(tt.key, 0, tt.mode); err == nil {
			s.Close()
			t.Errorf("Bind(%s) succeeded, want an error", tt.key)
		}
	}
}
