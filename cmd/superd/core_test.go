package main

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/superd/superd/internal/testkit"
)

// describeOutput parses the describe helper's key=value lines.
type describeOutput struct {
	kv  map[string]string
	env map[string]string
}

func parseDescribe(t *testing.T, s string) describeOutput {
	t.Helper()
	d := describeOutput{kv: map[string]string{}, env: map[string]string{}}
	for _, l := range strings.Split(strings.TrimSpace(s), "\n") {
		if e, ok := strings.CutPrefix(l, "env:"); ok {
			k, v, _ := strings.Cut(e, "=")
			d.env[k] = v
			continue
		}
		k, v, ok := strings.Cut(l, "=")
		if !ok {
			t.Fatalf("describe output line %q", l)
		}
		d.kv[k] = v
	}
	if len(d.kv) == 0 {
		t.Fatalf("no describe output, got %q", s)
	}
	return d
}

func TestBuiltinsTCP(t *testing.T) {
	ports := map[string]int{}
	var cfg strings.Builder
	for _, name := range []string{"echo", "discard", "daytime", "chargen", "time"} {
		ports[name] = testkit.FreePort(t, "tcp")
		fmt.Fprintf(&cfg, "[services.%s]\nbuiltin = %q\nport = %d\naddress = \"127.0.0.1\"\n", name, name, ports[name])
	}
	startDaemon(t, cfg.String())

	if got := roundTrip(t, ports["echo"], "hello\nworld\n"); got != "hello\nworld\n" {
		t.Errorf("echo = %q, want the input back", got)
	}
	if got := roundTrip(t, ports["discard"], "ignored"); got != "" {
		t.Errorf("discard = %q, want nothing", got)
	}
	if got := roundTrip(t, ports["daytime"], ""); !regexp.MustCompile(`^\w+, \w+ \d+, \d{4} \d\d:\d\d:\d\d-UTC\r\n$`).MatchString(got) {
		t.Errorf("daytime = %q", got)
	}
	// RFC 868 time is whole seconds: it must lie between the second
	// the request began and the moment the answer came, however long
	// the round trip took.
	before := time.Now().Unix()
	got := roundTrip(t, ports["time"], "")
	after := time.Now().Unix()
	if len(got) != 4 {
		t.Fatalf("time = %d bytes, want 4", len(got))
	}
	secs := int64(binary.BigEndian.Uint32([]byte(got))) - 2208988800
	if secs < before || secs > after {
		t.Errorf("time = %v, want between %v and %v", time.Unix(secs, 0).UTC(), time.Unix(before, 0).UTC(), time.Unix(after, 0).UTC())
	}
	c := dial(t, ports["chargen"])
	line, err := bufio.NewReader(c).ReadString('\n')
	c.Close()
	if err != nil || len(line) != 74 || !strings.HasSuffix(line, "\r\n") {
		t.Errorf("chargen line = %q, %v; want 72 characters and CRLF", line, err)
	}
}

func TestBuiltinsUDP(t *testing.T) {
	ports := map[string]int{}
	var cfg strings.Builder
	for _, name := range []string{"echo", "daytime", "chargen", "time"} {
		ports[name] = testkit.FreePort(t, "udp")
		fmt.Fprintf(&cfg, "[services.%s]\nbuiltin = %q\nport = %d\nprotocol = \"udp\"\naddress = \"127.0.0.1\"\n", name, name, ports[name])
	}
	startDaemon(t, cfg.String())
	ask := func(name, req string) string {
		t.Helper()
		c, err := net.Dial("udp", "127.0.0.1:"+strconv.Itoa(ports[name]))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(testkit.Timeout))
		c.Write([]byte(req))
		buf := make([]byte, 2048)
		n, err := c.Read(buf)
		if err != nil {
			t.Fatalf("%s over udp: %v", name, err)
		}
		return string(buf[:n])
	}
	if got := ask("echo", "ping"); got != "ping" {
		t.Errorf("udp echo = %q", got)
	}
	if got := ask("daytime", "x"); !strings.HasSuffix(got, "-UTC\r\n") {
		t.Errorf("udp daytime = %q", got)
	}
	if got := ask("time", "x"); len(got) != 4 {
		t.Errorf("udp time = %d bytes", len(got))
	}
	if got := ask("chargen", "x"); len(got) > 512 {
		t.Errorf("udp chargen = %d bytes, want at most 512", len(got))
	}
}

func TestNowaitHandlerContract(t *testing.T) {
	port := testkit.FreePort(t, "tcp")
	os.Setenv("SUPERD_TEST_PASS", "passed")
	defer os.Unsetenv("SUPERD_TEST_PASS")
	d := startDaemon(t, fmt.Sprintf(`
[services.describe]
port = %d
address = "127.0.0.1"
user = "root"
path = "%%HELPER%%"
args = ["describe"]
env = { EXTRA = "x y", PATH = "/bin:/usr/bin" }
pass_env = ["SUPERD_TEST_PASS", "SUPERD_TEST_UNSET"]
working_dir = "/tmp"
`, port))
	c := dial(t, port)
	local := c.LocalAddr().(*net.TCPAddr)
	out, err := io.ReadAll(c)
	c.Close()
	if err != nil {
		t.Fatal(err)
	}
	got := parseDescribe(t, string(out))
	want := map[string]string{
		"fd0-nonblock":   "false",
		"fd0-peer":       local.String(),
		"fd0-sotype":     strconv.Itoa(syscall.SOCK_STREAM),
		"extra-fds":      "[]",
		"session-leader": "true",
		"cwd":            "/tmp",
	}
	for k, v := range want {
		if got.kv[k] != v {
			t.Errorf("%s = %q, want %q", k, got.kv[k], v)
		}
	}
	if !strings.Contains(got.kv["fd2"], "pipe:") {
		t.Errorf("fd 2 = %q, want the log pipe (stderr = \"log\")", got.kv["fd2"])
	}
	wantEnv := map[string]string{
		"PATH": "/bin:/usr/bin", "PROTO": "TCP",
		"TCPLOCALIP": "127.0.0.1", "TCPLOCALPORT": strconv.Itoa(port),
		"TCPREMOTEIP": "127.0.0.1", "TCPREMOTEPORT": strconv.Itoa(local.Port),
		"REMOTE_ADDR": "127.0.0.1", "REMOTE_PORT": strconv.Itoa(local.Port),
		"SUPERD_SERVICE": "describe", "SUPERD_TEST_PASS": "passed", "EXTRA": "x y",
	}
	// The handler runs as superd's own user (root in CI): its passwd
	// entry fills these.
	if me, err := user.Current(); err == nil {
		for k, v := range map[string]string{"HOME": me.HomeDir, "USER": me.Username, "LOGNAME": me.Username} {
			wantEnv[k] = v
		}
		wantEnv["SHELL"] = got.env["SHELL"]
	}
	for k, v := range wantEnv {
		if got.env[k] != v {
			t.Errorf("env %s = %q, want %q", k, got.env[k], v)
		}
	}
	for k := range got.env {
		if _, ok := wantEnv[k]; !ok {
			t.Errorf("unexpected variable %s=%q in the handler's environment", k, got.env[k])
		}
	}
	d.waitLog(`service=describe event=exit pid=\d+ remote=127\.0\.0\.1:\d+ status=0 duration=`)
}

func TestNowaitBlockingRead(t *testing.T) {
	port := testkit.FreePort(t, "tcp")
	d := startDaemon(t, fmt.Sprintf(`
[services.readline]
port = %d
address = "127.0.0.1"
user = "root"
path = "%%HELPER%%"
args = ["readline"]
`, port))
	c := dial(t, port)
	defer c.Close()
	// The line must arrive when the handler is already blocked in
	// read(2): a non-blocking socket fails that read with EAGAIN. Wait
	// until the kernel shows it blocked there (or until it has exited,
	// which its reply then explains), however long its start takes.
	m := d.waitLog(`service=readline event=start pid=(\d+)`)
	pid, _ := strconv.Atoi(m[1])
	testkit.WaitFor(t, "the handler blocked in read(2) on fd 0, or its exit", func() bool {
		blocked, err := blockedReadingFD0(pid)
		if errors.Is(err, fs.ErrPermission) {
			t.Skipf("cannot see what the handler waits for: %v", err)
		}
		return blocked || d.countLog(`service=readline event=exit `) > 0
	})
	io.WriteString(c, "slow line\n")
	b, _ := io.ReadAll(c)
	if string(b) != "got:slow line\n" {
		t.Errorf("reply = %q, want got:slow line", b)
	}
}

// blockedReadingFD0 reports whether a thread of process pid is blocked
// in read(2) on its fd 0, from /proc/PID/task/TID/syscall (the system
// call number, then its arguments in hex). A process gone is not blocked.
func blockedReadingFD0(pid int) (bool, error) {
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		return false, nil
	}
	want := fmt.Sprintf("%d 0x0 ", unix.SYS_READ)
	for _, task := range tasks {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/syscall", pid, task.Name()))
		if errors.Is(err, fs.ErrPermission) {
			return false, fmt.Errorf("reading what handler %d waits for: %w", pid, err)
		}
		if err == nil && strings.HasPrefix(string(b), want) {
			return true, nil
		}
	}
	return false, nil
}

func TestDgramWaitService(t *testing.T) {
	port := testkit.FreePort(t, "udp")
	d := startDaemon(t, fmt.Sprintf(`
[services.udpwait]
port = %d
protocol = "udp"
address = "127.0.0.1"
user = "root"
path = "%%HELPER%%"
args = ["udp-reply"]
`, port))
	c, err := net.Dial("udp", "127.0.0.1:"+strconv.Itoa(port))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	buf := make([]byte, 100)
	for i := range 5 {
		msg := fmt.Sprint("ping", i)
		c.SetDeadline(time.Now().Add(10 * time.Second))
		c.Write([]byte(msg))
		n, err := c.Read(buf)
		if err != nil {
			t.Fatalf("datagram %d: %v", i, err)
		}
		if string(buf[:n]) != "reply:"+msg {
			t.Fatalf("reply %d = %q", i, buf[:n])
		}
	}
	// Datagrams sent together are queued while a handler runs, and each
	// starts the next handler: none is lost.
	for i := range 5 {
		c.Write([]byte(fmt.Sprint("burst", i)))
	}
	seen := map[string]bool{}
	for range 5 {
		c.SetDeadline(time.Now().Add(10 * time.Second))
		n, err := c.Read(buf)
		if err != nil {
			t.Fatalf("burst: got %v before all replies: %v", seen, err)
		}
		seen[string(buf[:n])] = true
	}
	if len(seen) != 5 {
		t.Errorf("burst replies = %v, want 5 distinct", seen)
	}
	testkit.WaitFor(t, "10 clean exits logged", func() bool {
		return d.countLog(`service=udpwait event=exit .*status=0`) == 10
	})
}

func TestStreamWaitService(t *testing.T) {
	port := testkit.FreePort(t, "tcp")
	startDaemon(t, fmt.Sprintf(`
[services.selfaccept]
port = %d
address = "127.0.0.1"
wait = true
user = "root"
path = "%%HELPER%%"
args = ["tcp-accept"]
`, port))
	pids := map[string]bool{}
	for range 3 {
		got := roundTrip(t, port, "")
		if !strings.HasPrefix(got, "accepted by ") {
			t.Fatalf("reply = %q", got)
		}
		pids[got] = true
	}
	if len(pids) != 3 {
		t.Errorf("replies %v: want three handlers, one per connection", pids)
	}
}

func TestUnixSocketService(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "describe.sock")
	startDaemon(t, fmt.Sprintf(`
[services.unixdescribe]
protocol = "unix"
address = %q
socket_mode = "0600"
user = "root"
path = "%%HELPER%%"
args = ["describe"]
`, sock))
	fi, err := os.Stat(sock)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("socket mode = %v, want 0600", fi.Mode().Perm())
	}
	c, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	out, _ := io.ReadAll(c)
	c.Close()
	got := parseDescribe(t, string(out))
	want := map[string]string{
		"PROTO":          "UNIX",
		"UNIXREMOTEEUID": strconv.Itoa(os.Geteuid()),
		"UNIXREMOTEEGID": strconv.Itoa(os.Getegid()),
		"UNIXREMOTEPID":  strconv.Itoa(os.Getpid()),
	}
	for k, v := range want {
		if got.env[k] != v {
			t.Errorf("env %s = %q, want %q", k, got.env[k], v)
		}
	}
	if got.kv["fd0-nonblock"] != "false" || got.kv["extra-fds"] != "[]" {
		t.Errorf("fd0-nonblock=%s extra-fds=%s", got.kv["fd0-nonblock"], got.kv["extra-fds"])
	}
}

func TestUserSwitch(t *testing.T) {
	requireRoot(t)
	nobody, err := user.Lookup("nobody")
	if err != nil {
		t.Skip("no user nobody on this machine")
	}
	port := testkit.FreePort(t, "tcp")
	startDaemon(t, fmt.Sprintf(`
[services.asnobody]
port = %d
address = "127.0.0.1"
user = "nobody"
path = "%%HELPER%%"
args = ["describe"]
`, port))
	got := parseDescribe(t, roundTrip(t, port, ""))
	if got.kv["uid"] != nobody.Uid || got.kv["gid"] != nobody.Gid {
		t.Errorf("uid/gid = %s/%s, want %s/%s", got.kv["uid"], got.kv["gid"], nobody.Uid, nobody.Gid)
	}
	if got.env["USER"] != "nobody" || got.env["LOGNAME"] != "nobody" || got.env["HOME"] != nobody.HomeDir {
		t.Errorf("USER=%q LOGNAME=%q HOME=%q", got.env["USER"], got.env["LOGNAME"], got.env["HOME"])
	}
	if got.kv["groups"] == "[0]" {
		t.Errorf("groups = %s: root's group kept", got.kv["groups"])
	}
}

func TestReloadKeepsSocketUnderLoad(t *testing.T) {
	port := testkit.FreePort(t, "tcp")
	gone := testkit.FreePort(t, "tcp")
	base := fmt.Sprintf(`
[services.steady]
builtin = "echo"
port = %d
address = "127.0.0.1"
`, port)
	d := startDaemon(t, base+fmt.Sprintf("[services.gone]\nbuiltin = \"echo\"\nport = %d\naddress = \"127.0.0.1\"\n", gone))

	var ok, failed atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	// The clients end when the test does, even when it fails half-way.
	stopLoad := sync.OnceFunc(func() { close(stop); wg.Wait() })
	defer stopLoad()
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				c, err := net.DialTimeout("tcp", addrOf(port), testkit.Timeout)
				if err != nil {
					failed.Add(1)
					continue
				}
				c.SetDeadline(time.Now().Add(testkit.Timeout))
				io.WriteString(c, "x")
				c.(*net.TCPConn).CloseWrite()
				b, err := io.ReadAll(c)
				c.Close()
				if err != nil || string(b) != "x" {
					failed.Add(1)
					continue
				}
				ok.Add(1)
			}
		})
	}
	// Let connections through before, between and after the reloads, so
	// that the load overlaps every one of them: counted, not slept for
	// (a sleep may let none through on a slow machine).
	served := func() int64 { return ok.Load() + failed.Load() }
	someServed := func(what string) {
		t.Helper()
		before := served()
		testkit.WaitFor(t, "10 connections "+what, func() bool { return served() >= before+10 })
	}
	for i := range 5 {
		someServed(fmt.Sprint("before reload ", i+1))
		d.writeConfig(base + fmt.Sprintf("instances = %d\n", 100+i))
		d.cmd.Process.Signal(syscall.SIGHUP)
		d.waitNotify("READY=1")
	}
	someServed("after the last reload")
	stopLoad()
	if failed.Load() != 0 || ok.Load() == 0 {
		t.Errorf("during 5 reloads: %d connections ok, %d failed; want none failed", ok.Load(), failed.Load())
	}
	if _, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(gone), time.Second); err == nil {
		t.Errorf("removed service still accepts connections")
	}
}

func TestBadReloadKeepsConfig(t *testing.T) {
	port := testkit.FreePort(t, "tcp")
	cfg := fmt.Sprintf("[services.echo]\nbuiltin = \"echo\"\nport = %d\naddress = \"127.0.0.1\"\n", port)
	d := startDaemon(t, cfg)
	d.writeConfig(cfg + "[services.broken]\nport = 0\nbogus = 1\n")
	d.cmd.Process.Signal(syscall.SIGHUP)
	d.waitNotify("READY=1")
	d.waitLog(`event=reload_failed.*bogus`)
	if got := roundTrip(t, port, "still"); got != "still" {
		t.Errorf("after a bad reload echo = %q", got)
	}
}

func TestShutdownKillsStubbornHandler(t *testing.T) {
	port := testkit.FreePort(t, "tcp")
	d := startDaemon(t, fmt.Sprintf(`
[superd]
shutdown_grace = "1s"
[services.stubborn]
port = %d
address = "127.0.0.1"
user = "root"
path = "%%HELPER%%"
args = ["ignore-term"]
`, port))
	c := dial(t, port)
	defer c.Close()
	line, _ := bufio.NewReader(c).ReadString('\n')
	if line != "ready\n" {
		t.Fatalf("handler said %q", line)
	}
	m := d.waitLog(`service=stubborn event=start pid=(\d+)`)
	pid, _ := strconv.Atoi(m[1])
	start := time.Now()
	if err := d.stop(syscall.SIGTERM, 15*time.Second); err != nil {
		t.Errorf("superd exit: %v, want status 0", err)
	}
	if took := time.Since(start); took < time.Second {
		t.Errorf("exited after %v, before the 1s grace", took)
	}
	if err := syscall.Kill(pid, 0); err == nil {
		t.Errorf("handler %d still alive after shutdown", pid)
	}
	if !strings.Contains(d.Logs(), "signal:SIGKILL") {
		t.Errorf("no SIGKILL exit logged")
	}
}

func TestNoLeaksAfterManyConnections(t *testing.T) {
	port := testkit.FreePort(t, "tcp")
	d := startDaemon(t, fmt.Sprintf(`
[services.hello]
port = %d
address = "127.0.0.1"
user = "root"
path = "/bin/echo"
args = ["hi"]
`, port))
	roundTrip(t, port, "")
	testkit.WaitFor(t, "the first handler to be reaped", func() bool { return len(d.children()) == 0 })
	baseFDs := d.fdCount()
	n := 2000
	if testing.Short() {
		n = 200 // -short: still hundreds of handlers, a tenth of the time
	}
	for i := range n {
		if got := roundTrip(t, port, ""); got != "hi\n" {
			t.Fatalf("connection %d: %q", i, got)
		}
	}
	testkit.WaitFor(t, "every handler to be reaped", func() bool { return len(d.children()) == 0 })
	// stderr pipes close when their reader sees EOF, just after the reap.
	testkit.WaitFor(t, "fd count back at baseline", func() bool { return d.fdCount() <= baseFDs })
	testkit.WaitFor(t, fmt.Sprint(n+1, " exits logged"), func() bool {
		return d.countLog(`event=exit .*status=0`) == n+1
	})
}

func TestSdNotifyStates(t *testing.T) {
	port := testkit.FreePort(t, "tcp")
	cfg := fmt.Sprintf("[services.echo]\nbuiltin = \"echo\"\nport = %d\naddress = \"127.0.0.1\"\n", port)
	d := newDaemon(t, cfg)
	d.env = []string{"WATCHDOG_USEC=200000"}
	d.start()
	if msg := d.waitNotify("READY=1"); !strings.Contains(msg, "STATUS=1 services running") {
		t.Errorf("READY message %q, want STATUS with the number of services", msg)
	}
	d.waitNotify("WATCHDOG=1")
	d.cmd.Process.Signal(syscall.SIGHUP)
	msg := d.waitNotify("RELOADING=1")
	if !regexp.MustCompile(`MONOTONIC_USEC=\d+`).MatchString(msg) {
		t.Errorf("RELOADING message %q lacks MONOTONIC_USEC", msg)
	}
	d.waitNotify("READY=1")
	d.cmd.Process.Signal(syscall.SIGTERM)
	d.waitNotify("STOPPING=1")
}

func TestBindRetry(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := busy.Addr().(*net.TCPAddr).Port
	other := testkit.FreePort(t, "tcp")
	d := startDaemon(t, fmt.Sprintf(`
[services.blocked]
builtin = "echo"
port = %d
address = "127.0.0.1"
[services.free]
builtin = "echo"
port = %d
address = "127.0.0.1"
`, port, other))
	d.waitLog(`event=bind_failed service=blocked`)
	if got := roundTrip(t, other, "ok"); got != "ok" {
		t.Errorf("the other service answered %q while one was blocked", got)
	}
	busy.Close()
	d.waitLog(`event=listening service=blocked`)
	if got := roundTrip(t, port, "late"); got != "late" {
		t.Errorf("after the retry: %q", got)
	}
}

// TestDualStackEnv checks the default address (one socket for IPv4 and
// IPv6): an IPv4 client appears as plain IPv4, not ::ffff:127.0.0.1.
func TestDualStackEnv(t *testing.T) {
	port := testkit.FreePort(t, "tcp")
	startDaemon(t, fmt.Sprintf(`
[services.any]
port = %d
user = "root"
path = "%%HELPER%%"
args = ["describe"]
`, port))
	got := parseDescribe(t, roundTrip(t, port, ""))
	if got.env["TCPREMOTEIP"] != "127.0.0.1" || got.env["TCPLOCALIP"] != "127.0.0.1" {
		t.Errorf("IPv4 client: TCPREMOTEIP=%q TCPLOCALIP=%q, want 127.0.0.1", got.env["TCPREMOTEIP"], got.env["TCPLOCALIP"])
	}
	c, err := net.DialTimeout("tcp", fmt.Sprintf("[::1]:%d", port), 2*time.Second)
	if err != nil {
		t.Skipf("no IPv6 loopback here: %v", err)
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	out, _ := io.ReadAll(c)
	c.Close()
	got = parseDescribe(t, string(out))
	if got.env["TCPREMOTEIP"] != "::1" || got.env["REMOTE_ADDR"] != "::1" {
		t.Errorf("IPv6 client: TCPREMOTEIP=%q REMOTE_ADDR=%q, want ::1", got.env["TCPREMOTEIP"], got.env["REMOTE_ADDR"])
	}
}

// TestReapOrphansAsPID1 runs superd as PID 1 of a PID namespace, as in a
// container without an init: the grandchildren its handlers leave behind
// become its children, and it must reap them.
func TestReapOrphansAsPID1(t *testing.T) {
	requireRoot(t)
	unshare, err := exec.LookPath("unshare")
	if err != nil {
		t.Skip("unshare (util-linux) not installed")
	}
	port := testkit.FreePort(t, "tcp")
	d := newDaemon(t, fmt.Sprintf(`
[services.orphans]
port = %d
address = "127.0.0.1"
user = "root"
path = "%%HELPER%%"
args = ["grandchild", "50ms"]
env = { GORACE = "atexit_sleep_ms=0" }
`, port))
	d.wrap = []string{unshare, "--pid", "--fork", "--mount-proc", "--kill-child=SIGTERM"}
	d.start()
	d.waitNotify("READY=1")
	var superd int
	testkit.WaitFor(t, "superd under unshare", func() bool {
		kids := childrenOf(d.pid())
		if len(kids) == 1 {
			superd = kids[0]
		}
		return superd != 0
	})
	const n = 20
	for i := range n {
		if got := roundTrip(t, port, ""); !strings.HasPrefix(got, "forked ") {
			t.Fatalf("connection %d: %q", i, got)
		}
	}
	// The grandchildren sleep 50ms, exit, and are superd's to reap.
	testkit.WaitFor(t, "no zombie children of superd", func() bool {
		return len(zombiesOf(superd)) == 0 && len(childrenOf(superd)) == 0
	})
	// unshare ignores SIGTERM while its child runs: stop superd itself.
	syscall.Kill(superd, syscall.SIGTERM)
	select {
	case <-d.exited:
	case <-time.After(15 * time.Second):
		t.Fatal("superd as PID 1 did not stop on SIGTERM")
	}
}

// zombiesOf lists the zombie children of ppid.
func zombiesOf(ppid int) []int {
	var z []int
	for _, pid := range childrenOf(ppid) {
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		s := string(b)
		if i := strings.LastIndexByte(s, ')'); i > 0 && strings.HasPrefix(s[i+1:], " Z") {
			z = append(z, pid)
		}
	}
	return z
}

// TestTightLimitsStillStart checks that limits too tight for the Go
// trampoline itself (a small address space, a small nproc) still apply
// to the handler and never stop it from starting.
func TestTightLimitsStillStart(t *testing.T) {
	requireRoot(t)
	port := testkit.FreePort(t, "tcp")
	d := startDaemon(t, fmt.Sprintf(`
[services.tight]
port = %d
address = "127.0.0.1"
# A uid of its own: nproc counts every process of the user, and other
# tests run handlers as nobody at the same time.
user = "4000321"
group = "4000321"
path = "/bin/sh"
args = ["-c", "echo nproc=$(ulimit -p) as=$(ulimit -v)"]
limits = { as = "64M", nproc = 4 }
`, port))
	const n = 60
	for i := range n {
		if got := roundTrip(t, port, ""); got != "nproc=4 as=65536\n" {
			t.Fatalf("connection %d: %q, want the limits in force", i, got)
		}
	}
	if strings.Contains(d.Logs(), "start_failed") {
		t.Errorf("a start failed:\n%s", d.Logs())
	}
}
