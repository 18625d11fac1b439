package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
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

// upgradeConfig has a nowait handler (cat), a built-in (echo), and a
// session that lasts until its client says so, with instances = 1.
const upgradeConfig = `
[superd]
metrics = "127.0.0.1:0"
shutdown_grace = "2s"
upgrade_timeout = "%s"

[defaults]
address = "127.0.0.1"
user = "root"

[services.cat]
port = %d
path = "/bin/cat"

[services.echo]
builtin = "echo"
port = %d

[services.session]
port = %d
path = "/bin/sh"
args = ["-c", 'echo started; read x; echo "finished $x"']
instances = 1
`

// waitPidExit waits until pid has exited (a zombie counts), through a
// pidfd, which names that very process; false after testkit.Timeout.
func waitPidExit(t *testing.T, pid int) bool {
	t.Helper()
	fd, err := unix.PidfdOpen(pid, 0)
	if err == unix.ESRCH {
		return true
	}
	if err != nil {
		t.Fatalf("pidfd_open %d: %v", pid, err)
	}
	defer unix.Close(fd)
	deadline := time.Now().Add(testkit.Timeout)
	for {
		ms := int(time.Until(deadline) / time.Millisecond)
		if ms <= 0 {
			return false
		}
		n, err := unix.Poll([]unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}, ms)
		if err == unix.EINTR {
			continue
		}
		return err == nil && n == 1
	}
}

// running reports whether pid is a live process (not a zombie).
func running(pid int) bool {
	f, err := statFields(pid)
	return err == nil && f[0] != "Z"
}

// stopOnCleanup stops the new superd of an upgrade at the end of the
// test: it is not the test's child, so the harness cannot.
func stopOnCleanup(t *testing.T, pid int) {
	t.Cleanup(func() {
		fd, err := unix.PidfdOpen(pid, 0)
		if err != nil {
			return
		}
		unix.PidfdSendSignal(fd, syscall.SIGTERM, nil, 0)
		unix.Close(fd)
		if !waitPidExit(t, pid) {
			if fd, err := unix.PidfdOpen(pid, 0); err == nil {
				unix.PidfdSendSignal(fd, syscall.SIGKILL, nil, 0)
				unix.Close(fd)
			}
		}
	})
}

// load is a bounded set of clients that each connect, send a line and
// check that it comes back, over and over, until stop.
type load struct {
	stop   chan struct{}
	wg     sync.WaitGroup
	ok     atomic.Int64
	mu     sync.Mutex
	failed []string
}

// maxLoadConns bounds each load client's connections.
const maxLoadConns = 20000

func startLoad(t *testing.T, clients int, ports ...int) *load {
	l := &load{stop: make(chan struct{})}
	for i := range clients {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for n := 0; n < maxLoadConns; n++ {
				select {
				case <-l.stop:
					return
				default:
				}
				port := ports[(i+n)%len(ports)]
				// Varied sources, so that ephemeral ports never run out.
				src := fmt.Sprintf("127.0.%d.%d", 10+i, 1+n%250)
				want := fmt.Sprintf("client %d connection %d\n", i, n)
				c, err := dialFrom(src, "tcp", fmt.Sprintf("127.0.0.1:%d", port), testkit.Timeout)
				var got string
				if err == nil {
					got, err = exchange(c, want, time.Now().Add(testkit.Timeout))
					c.Close()
				}
				if err == nil && got != want {
					err = fmt.Errorf("reply %q, want %q", got, want)
				}
				if err != nil {
					l.mu.Lock()
					l.failed = append(l.failed, fmt.Sprintf("port %d: %v", port, err))
					l.mu.Unlock()
					continue
				}
				l.ok.Add(1)
			}
		}()
	}
	t.Cleanup(l.end)
	return l
}

// waitOK waits until n more connections than now have succeeded.
func (l *load) waitOK(t *testing.T, n int64) {
	t.Helper()
	target := l.ok.Load() + n
	testkit.WaitFor(t, fmt.Sprintf("%d successful connections", target), func() bool { return l.ok.Load() >= target })
}

func (l *load) end() {
	select {
	case <-l.stop:
	default:
		close(l.stop)
	}
	l.wg.Wait()
}

// listenSampler reads /proc/net/tcp over and over while an upgrade runs
// and records the fewest listening sockets it saw on port, and their
// inodes.
type listenSampler struct {
	port    int
	stop    chan struct{}
	done    chan struct{}
	samples int
	fewest  int
	inodes  map[uint64]bool
	err     error
}

func sampleListening(port int) *listenSampler {
	s := &listenSampler{port: port, stop: make(chan struct{}), done: make(chan struct{}), fewest: -1, inodes: map[uint64]bool{}}
	go func() {
		defer close(s.done)
		for s.samples < 1_000_000 {
			select {
			case <-s.stop:
				return
			default:
			}
			inodes, err := procNetListening(port)
			if err != nil {
				s.err = err
				return
			}
			n := len(inodes)
			for _, inode := range inodes {
				s.inodes[inode] = true
			}
			if s.fewest < 0 || n < s.fewest {
				s.fewest = n
			}
			s.samples++
		}
	}()
	return s
}

func (s *listenSampler) end() {
	close(s.stop)
	<-s.done
}

// readLine reads one line from c within testkit.Timeout.
func readLine(t *testing.T, r *bufio.Reader, c net.Conn) string {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(testkit.Timeout))
	s, err := r.ReadString('\n')
	if err != nil {
		t.Fatalf("reading from %s: %v (got %q)", c.RemoteAddr(), err, s)
	}
	return s
}

// TestUpgradeUnderLoad sends SIGUSR2 while clients keep connecting to a
// nowait handler and a built-in: none fails, the listening socket never
// leaves /proc/net/tcp (the very same socket serves throughout), the new
// process tells systemd it is the main one, a session started before
// the upgrade finishes normally on the old process, which exits only
// after it, and instances counts that old session in the new process.
func TestUpgradeUnderLoad(t *testing.T) {
	skipIfShort(t, "upgrade under load")
	catPort, echoPort, sessPort := testkit.FreePort(t, "tcp"), testkit.FreePort(t, "tcp"), testkit.FreePort(t, "tcp")
	d := startMetricsDaemon(t, fmt.Sprintf(upgradeConfig, "30s", catPort, echoPort, sessPort))
	oldPid := d.pid()

	sess := dial(t, sessPort)
	sr := bufio.NewReader(sess)
	if got := readLine(t, sr, sess); got != "started\n" {
		t.Fatalf("session said %q", got)
	}

	l := startLoad(t, 4, catPort, echoPort)
	l.waitOK(t, 100)
	sampler := sampleListening(catPort)
	syscall.Kill(oldPid, syscall.SIGUSR2)
	m := d.waitLog(`event=upgraded new_pid=(\d+) handlers=[1-9]\d* `)
	newPid, _ := strconv.Atoi(m[1])
	stopOnCleanup(t, newPid)
	// The old process hands MAINPID over (all NotifyAccess=main takes),
	// then the new one says it too, with READY=1.
	if note := d.waitNotify("MAINPID="); note != fmt.Sprintf("MAINPID=%d", newPid) {
		t.Errorf("sd_notify at the handover: %q, want MAINPID=%d", note, newPid)
	}
	if note := d.waitNotify("MAINPID="); !strings.HasPrefix(note, fmt.Sprintf("MAINPID=%d\nREADY=1\n", newPid)) {
		t.Errorf("sd_notify of the new process: %q, want MAINPID=%d and READY=1", note, newPid)
	}
	d.waitLog(fmt.Sprintf(`event=took_over old_pid=%d old_clients=[1-9]\d*`, oldPid))
	// The new process serves: its metrics count connections of both.
	d.waitValueAtLeast(1, "superd_connections_accepted_total", "service", "cat")
	d.waitValueAtLeast(1, "superd_connections_accepted_total", "service", "echo")
	l.waitOK(t, 400)
	l.end()
	sampler.end()
	f := d.scrape()
	byNew := f.Value(t, "superd_connections_accepted_total", "service", "cat") + f.Value(t, "superd_connections_accepted_total", "service", "echo")
	t.Logf("%d connections, %d failed, %v of them served by the new process; /proc/net/tcp sampled %d times",
		l.ok.Load(), len(l.failed), byNew, sampler.samples)
	if len(l.failed) > 0 {
		t.Errorf("%d connections failed across the upgrade, first: %s", len(l.failed), l.failed[0])
	}
	if sampler.err != nil {
		t.Error(sampler.err)
	}
	if sampler.fewest < 1 || len(sampler.inodes) != 1 {
		t.Errorf("listening sockets on the port: fewest %d in a sample, inodes %v; want always 1, the same", sampler.fewest, sampler.inodes)
	}

	// The old session holds the only instance: a second session waits
	// in the new process until it ends.
	sess2 := dial(t, sessPort)
	d.waitInstancesHeld("session")
	if !running(oldPid) {
		t.Fatal("the old superd exited while its session still runs")
	}
	fmt.Fprintln(sess, "bye")
	if got := readLine(t, sr, sess); got != "finished bye\n" {
		t.Errorf("old session ended with %q, want %q", got, "finished bye\n")
	}
	if !waitPidExit(t, oldPid) {
		t.Fatal("the old superd still runs after its last handler ended")
	}
	d.waitLog(`service=session event=exit pid=\d+ remote=\S+ status=0 `)
	d.waitLog(fmt.Sprintf(`event=handed_over new_pid=%d`, newPid))
	d.waitLog(fmt.Sprintf(`event=predecessor_done old_pid=%d`, oldPid))

	r2 := bufio.NewReader(sess2)
	if got := readLine(t, r2, sess2); got != "started\n" {
		t.Errorf("second session said %q", got)
	}
	if !running(newPid) {
		t.Error("the new superd is not running")
	}
}

// waitInstancesHeld waits until the new process of an upgrade defers
// clients of service for want of an instance slot, and checks that it
// has accepted none: the old process's client holds the only slot. (A
// new process that did not count it would accept one client and only
// then wait, so the wait alone proves nothing.)
func (d *metricsDaemon) waitInstancesHeld(service string) {
	d.t.Helper()
	d.waitValue(1, "superd_admission_waits_total", "service", service, "reason", "instances")
	if f := d.scrape(); f.Has("superd_connections_accepted_total", "service", service) {
		if n := f.Value(d.t, "superd_connections_accepted_total", "service", service); n != 0 {
			d.t.Errorf("the new process accepted %v clients of %s while the old one's held the only instance", n, service)
		}
	}
}

// waitValueAtLeast scrapes until the series is at least want.
func (d *metricsDaemon) waitValueAtLeast(want float64, name string, labels ...string) {
	d.t.Helper()
	testkit.WaitFor(d.t, fmt.Sprintf("%s%v >= %v", name, labels, want), func() bool {
		f := d.scrape()
		return f.Has(name, labels...) && f.Value(d.t, name, labels...) >= want
	})
}

// TestUpgradeFailures replaces the binary at superd's path with one
// that exits 1, then with one that never becomes ready: each upgrade
// fails, logged with its reason, the new process is stopped and reaped,
// and the old one goes on serving; a second SIGUSR2 during an upgrade
// is refused. With the real binary back, the upgrade succeeds.
func TestUpgradeFailures(t *testing.T) {
	skipIfShort(t, "upgrade failures")
	catPort, echoPort, sessPort := testkit.FreePort(t, "tcp"), testkit.FreePort(t, "tcp"), testkit.FreePort(t, "tcp")
	dir := t.TempDir()
	os.Chmod(dir, 0o755)
	path := filepath.Join(dir, "superd")
	install := func(content []byte) {
		tmp := path + ".new"
		if err := os.WriteFile(tmp, content, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, path); err != nil {
			t.Fatal(err)
		}
	}
	real, err := os.ReadFile(bin.superd)
	if err != nil {
		t.Fatal(err)
	}
	install(real)
	d := newDaemon(t, fmt.Sprintf(upgradeConfig, "30s", catPort, echoPort, sessPort))
	d.binary = path
	d.start()
	d.waitNotify("READY=1")
	oldPid := d.pid()
	served := func() {
		t.Helper()
		if got := roundTrip(t, catPort, "still here\n"); got != "still here\n" {
			t.Errorf("cat answered %q", got)
		}
	}
	// reaped checks that the new process a failure names is gone: not
	// left a zombie (superd logs the failure once it has reaped it).
	reaped := func(m []string) {
		t.Helper()
		if _, err := os.Stat("/proc/" + m[1]); err == nil {
			t.Errorf("the failed new process %s is still there", m[1])
		}
	}

	// A binary that exits 1: its own words reach the log.
	install([]byte("#!/bin/sh\necho 'broken-superd: cannot start' >&2\nexit 1\n"))
	syscall.Kill(oldPid, syscall.SIGUSR2)
	d.waitLog(`broken-superd: cannot start`)
	reaped(d.waitLog(`event=upgrade_failed reason="the new process \(pid (\d+)\) exited with status 1 before it was ready`))
	served()

	// A binary that hangs: a second SIGUSR2 meanwhile is refused; the
	// test ends the hang by killing it.
	install([]byte("#!/bin/sh\nexec sleep 3600\n"))
	syscall.Kill(oldPid, syscall.SIGUSR2)
	d.waitLogN(`event=upgrading `, 2)
	syscall.Kill(oldPid, syscall.SIGUSR2)
	d.waitLog(`event=upgrade_refused reason="an upgrade is under way"`)
	served() // and it serves meanwhile
	var hung []int
	testkit.WaitFor(t, "the hanging new process", func() bool {
		hung = nil
		for _, pid := range childrenOf(oldPid) {
			if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid)); err == nil && strings.TrimSpace(string(b)) == "sleep" {
				hung = append(hung, pid)
			}
		}
		return len(hung) == 1
	})
	syscall.Kill(hung[0], syscall.SIGKILL)
	reaped(d.waitLog(`event=upgrade_failed reason="the new process \(pid (\d+)\) was killed`))
	served()

	// Not ready within upgrade_timeout: stopped.
	d.writeConfig(fmt.Sprintf(upgradeConfig, "1s", catPort, echoPort, sessPort))
	syscall.Kill(oldPid, syscall.SIGHUP)
	d.waitLog(`event=reloaded `)
	syscall.Kill(oldPid, syscall.SIGUSR2)
	reaped(d.waitLog(`event=upgrade_failed reason="the new process \(pid (\d+)\) was not ready within 1s \(upgrade_timeout\): stopped it"`))
	served()
	if n := d.countLog(`event=upgraded `); n != 0 {
		t.Fatalf("%d upgrades happened", n)
	}

	// The real binary again, but writable by everyone: root does not run
	// what any user could have replaced.
	install(real)
	if os.Geteuid() == 0 {
		os.Chmod(path, 0o777)
		syscall.Kill(oldPid, syscall.SIGUSR2)
		d.waitLog(`event=upgrade_failed reason="not running \S+ as root: .*writable`)
		served()
		os.Chmod(path, 0o755)
	}

	// As it should be: the upgrade goes through.
	syscall.Kill(oldPid, syscall.SIGUSR2)
	m := d.waitLog(`event=upgraded new_pid=(\d+) `)
	newPid, _ := strconv.Atoi(m[1])
	stopOnCleanup(t, newPid)
	if !waitPidExit(t, oldPid) {
		t.Fatal("the old superd, with no handler, did not exit")
	}
	if got := roundTrip(t, catPort, "new one\n"); got != "new one\n" {
		t.Errorf("cat answered %q after the upgrade", got)
	}
}

// TestUpgradeStopEndsOldHandlers: stopping the new process (systemctl
// stop) also stops the old one, which still runs a session: its handler
// gets SIGTERM from the old superd, and both exit.
func TestUpgradeStopEndsOldHandlers(t *testing.T) {
	skipIfShort(t, "upgrade then stop")
	catPort, echoPort, sessPort := testkit.FreePort(t, "tcp"), testkit.FreePort(t, "tcp"), testkit.FreePort(t, "tcp")
	d := startDaemon(t, fmt.Sprintf(upgradeConfig, "30s", catPort, echoPort, sessPort))
	oldPid := d.pid()
	sess := dial(t, sessPort)
	if got := readLine(t, bufio.NewReader(sess), sess); got != "started\n" {
		t.Fatalf("session said %q", got)
	}
	syscall.Kill(oldPid, syscall.SIGUSR2)
	m := d.waitLog(`event=upgraded new_pid=(\d+) `)
	newPid, _ := strconv.Atoi(m[1])
	stopOnCleanup(t, newPid)
	d.waitLog(`event=took_over `)
	syscall.Kill(newPid, syscall.SIGTERM)
	d.waitLog(fmt.Sprintf(`event=stopping_predecessor old_pid=%d`, oldPid))
	if !waitPidExit(t, newPid) || !waitPidExit(t, oldPid) {
		t.Fatal("superd still runs after the stop")
	}
	d.waitLog(`service=session event=exit pid=\d+ remote=\S+ status=signal:SIGTERM `)
}

// TestUpgradeUnixSocket: a unix socket superd bound keeps its file
// across an upgrade (the old process must not remove it under the new
// one), takes the new configuration's socket_mode once the old process
// has handed over, and the new process removes it when it stops, as the
// old one would have.
func TestUpgradeUnixSocket(t *testing.T) {
	skipIfShort(t, "upgrade with a unix socket")
	d := newDaemon(t, "")
	path := filepath.Join(d.dir, "cat.sock")
	config := `
[services.cat]
protocol = "unix"
address = %q
socket_mode = %q
path = "/bin/cat"
user = "root"
`
	d.writeConfig(fmt.Sprintf(config, path, "0666"))
	d.start()
	d.waitNotify("READY=1")
	ask := func() {
		t.Helper()
		c, err := net.DialTimeout("unix", path, testkit.Timeout)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(testkit.Timeout))
		io.WriteString(c, "over unix\n")
		c.(*net.UnixConn).CloseWrite()
		if got, err := io.ReadAll(c); err != nil || string(got) != "over unix\n" {
			t.Fatalf("cat over %s: %q, %v", path, got, err)
		}
	}
	ask()
	mode := func() os.FileMode {
		t.Helper()
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		return fi.Mode().Perm()
	}
	if m := mode(); m != 0o666 {
		t.Fatalf("socket mode %v before the upgrade, want 0666", m)
	}
	d.writeConfig(fmt.Sprintf(config, path, "0600"))
	oldPid := d.pid()
	syscall.Kill(oldPid, syscall.SIGUSR2)
	m := d.waitLog(`event=upgraded new_pid=(\d+) `)
	newPid, _ := strconv.Atoi(m[1])
	stopOnCleanup(t, newPid)
	d.waitLogN(`event=ready `, 2) // the new process says it after took_over
	if !waitPidExit(t, oldPid) {
		t.Fatal("the old superd did not exit")
	}
	if m := mode(); m != 0o600 {
		t.Errorf("socket mode %v after the upgrade, want the new configuration's 0600", m)
	}
	ask()
	syscall.Kill(newPid, syscall.SIGTERM)
	if !waitPidExit(t, newPid) {
		t.Fatal("the new superd did not stop")
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("%s after the new superd stopped: %v, want it removed", path, err)
	}
}

// TestUpgradeWaitHandler: a wait-mode handler of the old process that
// blocks in accept keeps serving across the upgrade (the new process
// does not make the shared socket non-blocking under it), also when the
// new configuration makes the service nowait; once it has exited, the
// new process adopts the socket and serves it its way.
func TestUpgradeWaitHandler(t *testing.T) {
	skipIfShort(t, "upgrade with a wait-mode handler")
	const config = `
[services.acceptor]
port = %d
address = "127.0.0.1"
user = "root"
%s
`
	const wait = `wait = true
path = "%HELPER%"
args = ["accept-loop"]`
	for _, tc := range []struct {
		name, next string
		served     func(got, first string) bool
	}{
		{"still wait", wait, func(got, first string) bool { return strings.HasPrefix(got, "accepted by ") && got != first }},
		{"now nowait", `path = "/bin/cat"`, func(got, _ string) bool { return got == "new\n" }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			port := testkit.FreePort(t, "tcp")
			d := startDaemon(t, fmt.Sprintf(config, port, wait))
			ask := func(line string) string {
				t.Helper()
				c := dial(t, port)
				defer c.Close()
				got, err := exchange(c, line, time.Now().Add(testkit.Timeout))
				if err != nil {
					t.Fatalf("%q: %v", line, err)
				}
				return got
			}
			first := ask("hello\n")
			if !strings.HasPrefix(first, "accepted by ") {
				t.Fatalf("wait handler said %q", first)
			}
			d.writeConfig(fmt.Sprintf(config, port, tc.next))
			oldPid := d.pid()
			syscall.Kill(oldPid, syscall.SIGUSR2)
			m := d.waitLog(`event=upgraded new_pid=(\d+) `)
			newPid, _ := strconv.Atoi(m[1])
			stopOnCleanup(t, newPid)
			d.waitLog(`event=took_over `)
			d.waitLog(`event=waiting_for_old_handler service=acceptor `)
			// The old handler still accepts, blocking: no EAGAIN under it.
			for i := range 5 {
				if got := ask(fmt.Sprintf("after %d\n", i)); got != first {
					t.Fatalf("after the upgrade: %q, want the old handler's %q", got, first)
				}
			}
			if got := ask("quit\n"); got != first {
				t.Fatalf("quit answered %q", got)
			}
			d.waitLog(`service=acceptor event=exit pid=\d+ status=0 `)
			d.waitLog(`event=adopted service=acceptor `)
			if got := ask("new\n"); !tc.served(got, first) {
				t.Errorf("after the old handler exited: %q, want the new process's", got)
			}
			if !waitPidExit(t, oldPid) {
				t.Error("the old superd did not exit after its handler")
			}
		})
	}
}

// TestUpgradeLimitsAcrossRespelledKey: the handshake names sockets by
// the descriptor they were passed on, so instances still counts the old
// process's session when the new configuration spells the same socket
// differently (tcp4 then tcp, both on 127.0.0.1).
func TestUpgradeLimitsAcrossRespelledKey(t *testing.T) {
	skipIfShort(t, "upgrade limits")
	port := testkit.FreePort(t, "tcp")
	const config = `
[superd]
metrics = "127.0.0.1:0"

[services.session]
protocol = %q
address = "127.0.0.1"
port = %d
user = "root"
path = "/bin/sh"
args = ["-c", 'echo started; read x; echo "finished $x"']
instances = 1
`
	d := startMetricsDaemon(t, fmt.Sprintf(config, "tcp4", port))
	sess := dial(t, port)
	sr := bufio.NewReader(sess)
	if got := readLine(t, sr, sess); got != "started\n" {
		t.Fatalf("session said %q", got)
	}
	d.writeConfig(fmt.Sprintf(config, "tcp", port))
	oldPid := d.pid()
	syscall.Kill(oldPid, syscall.SIGUSR2)
	m := d.waitLog(`event=upgraded new_pid=(\d+) `)
	newPid, _ := strconv.Atoi(m[1])
	stopOnCleanup(t, newPid)
	d.waitLog(fmt.Sprintf(`event=took_over old_pid=%d old_clients=1`, oldPid))
	sess2 := dial(t, port)
	d.waitInstancesHeld("session")
	fmt.Fprintln(sess, "bye")
	if got := readLine(t, sr, sess); got != "finished bye\n" {
		t.Errorf("old session ended with %q", got)
	}
	if got := readLine(t, bufio.NewReader(sess2), sess2); got != "started\n" {
		t.Errorf("second session said %q", got)
	}
}

// TestUpgradeWatchdog: under systemd's watchdog the handover pings it
// from both sides, so that the new process's first regular ping (half
// WatchdogSec after its start) cannot come too late: the old process
// with its MAINPID=, the new one with its READY=1.
func TestUpgradeWatchdog(t *testing.T) {
	skipIfShort(t, "upgrade with the watchdog")
	port := testkit.FreePort(t, "tcp")
	d := newDaemon(t, fmt.Sprintf(`
[services.echo]
builtin = "echo"
address = "127.0.0.1"
port = %d
`, port))
	// An hour: no regular ping comes during the test.
	d.env = append(d.env, "WATCHDOG_USEC=3600000000")
	d.start()
	d.waitNotify("READY=1")
	syscall.Kill(d.pid(), syscall.SIGUSR2)
	m := d.waitLog(`event=upgraded new_pid=(\d+) `)
	newPid, _ := strconv.Atoi(m[1])
	stopOnCleanup(t, newPid)
	if note := d.waitNotify("MAINPID="); note != fmt.Sprintf("WATCHDOG=1\nMAINPID=%d", newPid) {
		t.Errorf("sd_notify at the handover: %q", note)
	}
	if note := d.waitNotify("MAINPID="); !strings.Contains(note, "READY=1\nWATCHDOG=1\n") {
		t.Errorf("sd_notify of the new process: %q, want READY=1 and WATCHDOG=1", note)
	}
}
