package main

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/superd/superd/internal/testkit"
)

// Socket activation: superd started as systemd starts it, with listening
// sockets from fd 3 on and LISTEN_FDS, LISTEN_PID and LISTEN_FDNAMES,
// serves each service on the socket meant for it instead of binding.

// listenPIDWrap runs superd under sh, which sets LISTEN_PID to its own
// pid and execs superd in its place: the pid stays, so LISTEN_PID is
// superd's, as systemd sets it after the fork.
var listenPIDWrap = []string{"sh", "-c", `LISTEN_PID=$$ exec "$@"`, "sh"}

// activationSocket is a listening socket the test passes to superd, as
// systemd would: its file (a duplicate, passed as an ExtraFile), its
// port and its inode, which tells superd's socket apart from one it
// would bind itself.
type activationSocket struct {
	file  *os.File
	port  int
	inode uint64
}

// newActivationSocket listens on a free loopback port. The test keeps
// nothing open once superd started: closeOwn closes the test's copies.
func newActivationSocket(t *testing.T) *activationSocket {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close() // f is a duplicate
	f, err := ln.(*net.TCPListener).File()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	var st syscall.Stat_t
	if err := syscall.Fstat(int(f.Fd()), &st); err != nil {
		t.Fatal(err)
	}
	return &activationSocket{file: f, port: ln.Addr().(*net.TCPAddr).Port, inode: st.Ino}
}

// startActivated starts superd as start does, with files as fds 3, 4, …
// and LISTEN_FDS set to their number; d.env adds LISTEN_FDNAMES. It
// returns once superd is ready, and closes the test's copies of files.
func startActivated(d *superdProc, files ...*os.File) {
	d.t.Helper()
	d.wrap = listenPIDWrap
	d.env = append(d.env, fmt.Sprintf("LISTEN_FDS=%d", len(files)))
	args := []string{"run", "--config", d.config, "--log", "stderr"}
	argv := append(append(append([]string{}, d.wrap...), bin.superd), args...)
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), "NOTIFY_SOCKET="+d.notify.LocalAddr().String(), "SUPERD_LEAK_CHECK=leaked")
	cmd.Env = append(cmd.Env, d.env...)
	cmd.ExtraFiles = files
	stderr, err := cmd.StderrPipe()
	if err != nil {
		d.t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		d.t.Fatal(err)
	}
	d.cmd = cmd
	go d.readLogs(stderr)
	d.t.Cleanup(d.kill)
	for _, f := range files {
		f.Close()
	}
	d.waitNotify("READY=1")
}

// listeningInodes returns the inodes of the TCP sockets listening on
// 127.0.0.1:port, from /proc/net/tcp.
func listeningInodes(t *testing.T, port int) []uint64 {
	t.Helper()
	inodes, err := procNetListening(port)
	if err != nil {
		t.Fatal(err)
	}
	return inodes
}

// procNetListening is listeningInodes for any goroutine.
func procNetListening(port int) ([]uint64, error) {
	b, err := os.ReadFile("/proc/net/tcp")
	if err != nil {
		return nil, err
	}
	local := fmt.Sprintf("0100007F:%04X", port)
	var inodes []uint64
	for _, line := range strings.Split(string(b), "\n")[1:] {
		f := strings.Fields(line)
		if len(f) < 10 || f[1] != local || f[3] != "0A" { // 0A: TCP_LISTEN
			continue
		}
		ino, err := strconv.ParseUint(f[9], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("/proc/net/tcp inode %q: %w", f[9], err)
		}
		inodes = append(inodes, ino)
	}
	return inodes, nil
}

// holdsSocket reports whether process pid has the socket of inode open.
func holdsSocket(t *testing.T, pid int, inode uint64) bool {
	t.Helper()
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("socket:[%d]", inode)
	for _, e := range ents {
		if link, err := os.Readlink(filepath.Join(dir, e.Name())); err == nil && link == want {
			return true
		}
	}
	return false
}

// checkServesInherited checks that the one socket listening on s.port is
// the inherited one, held by superd, and that echo answers on it.
func checkServesInherited(t *testing.T, d *superdProc, s *activationSocket) {
	t.Helper()
	if got := listeningInodes(t, s.port); len(got) != 1 || got[0] != s.inode {
		t.Errorf("sockets listening on port %d: inodes %v, want only the inherited %d (superd bound its own?)", s.port, got, s.inode)
	}
	if !holdsSocket(t, d.pid(), s.inode) {
		t.Errorf("superd does not hold the inherited socket %d", s.inode)
	}
	if got := roundTrip(t, s.port, "hello\n"); got != "hello\n" {
		t.Errorf("echo on the inherited socket answered %q, want %q", got, "hello\n")
	}
}

func echoOn(name string, port int) string {
	return fmt.Sprintf("[services.%s]\nbuiltin = \"echo\"\nport = %d\naddress = \"127.0.0.1\"\n", name, port)
}

// TestActivationByName: the socket named after the service (systemd's
// FileDescriptorName=) is adopted, and superd binds nothing itself.
func TestActivationByName(t *testing.T) {
	s := newActivationSocket(t)
	d := newDaemon(t, echoOn("echo", s.port))
	d.env = []string{"LISTEN_FDNAMES=echo"}
	startActivated(d, s.file)
	d.waitLog(`event=adopted service=echo listen=tcp/127\.0\.0\.1:\d+ fd=3 name=echo`)
	checkServesInherited(t, d, s)
	if n := d.countLog(`event=bind_failed`); n != 0 {
		t.Errorf("%d bind_failed lines, want none", n)
	}
}

// TestActivationByAddress: without a name that is a service's, the
// socket whose protocol, address and port fit a service is adopted.
func TestActivationByAddress(t *testing.T) {
	for _, names := range []string{"", "LISTEN_FDNAMES=web"} {
		t.Run(names, func(t *testing.T) {
			s := newActivationSocket(t)
			d := newDaemon(t, echoOn("echo", s.port))
			if names != "" {
				d.env = []string{names}
			}
			startActivated(d, s.file)
			d.waitLog(`event=adopted service=echo listen=tcp/127\.0\.0\.1:\d+ fd=3 name=(LISTEN_FD_3|web)\n`)
			checkServesInherited(t, d, s)
		})
	}
}

// TestActivationUnused: an inherited socket no service fits is closed,
// with a warning; the one that fits is still adopted. A socket named
// after a service whose address it does not fit is closed too, and the
// service binds its own.
func TestActivationUnused(t *testing.T) {
	used, spare, misnamed := newActivationSocket(t), newActivationSocket(t), newActivationSocket(t)
	other := testkit.FreePort(t, "tcp")
	d := newDaemon(t, echoOn("echo", used.port)+echoOn("other", other))
	d.env = []string{"LISTEN_FDNAMES=spare:echo:other"}
	startActivated(d, spare.file, used.file, misnamed.file)
	d.waitLog(`event=adopted service=echo listen=tcp/127\.0\.0\.1:\d+ fd=4 name=echo`)
	d.waitLog(`level=WARN event=inherited_unused fd=3 name=spare`)
	d.waitLog(`level=ERROR event=inherited_mismatch service=other .*fd=5 name=other`)
	checkServesInherited(t, d, used)
	// READY=1 came after the unused sockets were closed, and the test
	// closed its copies: nothing listens on them any more.
	for _, s := range []*activationSocket{spare, misnamed} {
		if got := listeningInodes(t, s.port); len(got) != 0 {
			t.Errorf("port %d still has listening sockets %v, want the unused inherited one closed", s.port, got)
		}
	}
	if got := roundTrip(t, other, "own\n"); got != "own\n" {
		t.Errorf("other, on its own socket, answered %q", got)
	}
}

// TestActivationReloadKeeps: a reload keeps the adopted socket, and the
// client waiting in its backlog.
func TestActivationReloadKeeps(t *testing.T) {
	s := newActivationSocket(t)
	config := echoOn("echo", s.port) + "instances = 1\n"
	d := newDaemon(t, config)
	d.env = []string{"LISTEN_FDNAMES=echo"}
	startActivated(d, s.file)
	d.waitLog(`event=adopted service=echo`)

	c1 := dial(t, s.port)
	br1 := bufio.NewReader(c1)
	fmt.Fprintln(c1, "first")
	if got, err := br1.ReadString('\n'); err != nil || got != "first\n" {
		t.Fatalf("first client got %q, %v", got, err)
	}
	c2 := dial(t, s.port) // waits in the backlog: c1 holds the one slot
	fmt.Fprintln(c2, "queued")

	other := testkit.FreePort(t, "tcp")
	d.writeConfig(config + echoOn("added", other))
	d.cmd.Process.Signal(syscall.SIGHUP)
	d.waitLog(`event=reloaded .*added=added removed=- changed=-`)
	if n := d.countLog(`event=listening service=echo`); n != 1 {
		t.Errorf("echo bound %d times, want once (the adopted socket kept)", n)
	}
	c1.Close()
	if got, err := bufio.NewReader(c2).ReadString('\n'); err != nil || got != "queued\n" {
		t.Errorf("client queued across the reload got %q, %v; want its echo", got, err)
	}
	c2.Close()
	checkServesInherited(t, d, s)
}

// TestActivationRealTool runs superd under systemd's own
// systemd-socket-activate, which listens, waits for the first
// connection, and then execs superd with the socket as fd 3: that first
// connection must be served.
func TestActivationRealTool(t *testing.T) {
	tool := ""
	for _, p := range []string{"systemd-socket-activate", "/usr/bin/systemd-socket-activate", "/lib/systemd/systemd-socket-activate"} {
		if path, err := exec.LookPath(p); err == nil {
			tool = path
			break
		}
	}
	if tool == "" {
		why := "systemd-socket-activate not installed (it ships with systemd)"
		if os.Getenv("SUPERD_REQUIRE_PROGRAMS") == "1" {
			t.Fatalf("%s, and SUPERD_REQUIRE_PROGRAMS=1 requires it", why)
		}
		t.Skip(why)
	}
	port := testkit.FreePort(t, "tcp")
	d := newDaemon(t, echoOn("echo", port))
	// The tool passes on only the variables -E names.
	d.wrap = []string{tool, "-l", fmt.Sprintf("127.0.0.1:%d", port), "--fdname=echo",
		"-E", "NOTIFY_SOCKET", "-E", "SUPERD_LEAK_CHECK"}
	d.start()
	d.waitLog(`Listening on 127\.0\.0\.1:\d+ as 3`)
	if got := roundTrip(t, port, "first\n"); got != "first\n" {
		t.Errorf("the connection that started superd got %q, want its echo", got)
	}
	d.waitNotify("READY=1")
	d.waitLog(`event=adopted service=echo listen=tcp/127\.0\.0\.1:\d+ fd=3 name=echo`)
	if got := listeningInodes(t, port); len(got) != 1 {
		t.Errorf("sockets listening on port %d: %v, want only the one the tool passed", port, got)
	}
	if got := roundTrip(t, port, "second\n"); got != "second\n" {
		t.Errorf("second connection got %q", got)
	}
	if n := d.countLog(`event=listening service=echo`); n != 1 {
		t.Errorf("%d listening lines for echo, want 1", n)
	}
}
