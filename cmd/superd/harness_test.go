package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The integration tests build the real superd binary once, start it on
// loopback with a configuration of their own, and talk to it over real
// sockets. Handlers are this test binary itself, run with argv[0]
// "helper" (see helpers_test.go).

// bin holds the paths TestMain prepared; set once before any test runs.
var bin struct {
	dir    string // world-readable folder holding both binaries
	superd string // the superd binary
	helper string // a copy of this test binary, run as a handler
}

func TestMain(m *testing.M) {
	if len(os.Args) > 1 && filepath.Base(os.Args[0]) == "helper" {
		os.Exit(runHelper(os.Args[1], os.Args[2:]))
	}
	os.Exit(testMain(m))
}

func testMain(m *testing.M) int {
	dir, err := os.MkdirTemp("", "superd-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	// Handlers may run as nobody: they must reach the binaries.
	os.Chmod(dir, 0o755)
	bin.dir = dir
	bin.superd = filepath.Join(dir, "superd")
	bin.helper = filepath.Join(dir, "helper")
	build := exec.Command("go", "build", "-o", bin.superd, ".")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building superd:", err)
		return 1
	}
	if err := copyFile(os.Args[0], bin.helper, 0o755); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return m.Run()
}

func copyFile(from, to string, mode os.FileMode) error {
	b, err := os.ReadFile(from)
	if err != nil {
		return err
	}
	return os.WriteFile(to, b, mode)
}

// superdProc is a running superd started by a test.
type superdProc struct {
	t      *testing.T
	cmd    *exec.Cmd
	dir    string // holds services.toml
	config string
	env    []string // extra environment for superd
	wrap   []string // command (and arguments) superd runs under, e.g. unshare
	notify *net.UnixConn

	// notes holds every sd_notify message received, in order, and
	// notesRead how many waitNotify has consumed. A goroutine drains the
	// socket at once: a datagram socket left unread fills up, and then
	// superd's next sd_notify waits for room.
	notesMu   sync.Mutex
	notes     []string
	notesRead int
	notesC    chan struct{} // closed and replaced on every new message

	mu   sync.Mutex
	logs bytes.Buffer
	logC chan struct{} // closed and replaced on every new log line

	waitOnce sync.Once
	waitErr  error
	exited   chan struct{}
}

// startDaemon writes config (with %HELPER% replaced by the helper path)
// and starts superd on it, returning once superd has sent READY=1.
func startDaemon(t *testing.T, config string) *superdProc {
	t.Helper()
	d := newDaemon(t, config)
	d.start()
	d.waitNotify("READY=1", 20*time.Second)
	return d
}

func newDaemon(t *testing.T, config string) *superdProc {
	t.Helper()
	dir := t.TempDir()
	os.Chmod(dir, 0o755)
	d := &superdProc{t: t, dir: dir, config: filepath.Join(dir, "services.toml"), logC: make(chan struct{}), exited: make(chan struct{})}
	d.writeConfig(config)
	addr := &net.UnixAddr{Name: filepath.Join(dir, "notify.sock"), Net: "unixgram"}
	nc, err := net.ListenUnixgram("unixgram", addr)
	if err != nil {
		t.Fatal(err)
	}
	d.notify = nc
	d.notesC = make(chan struct{})
	drained := make(chan struct{})
	go func() {
		defer close(drained)
		buf := make([]byte, 4096)
		for {
			n, err := nc.Read(buf)
			if err != nil {
				return
			}
			d.notesMu.Lock()
			d.notes = append(d.notes, string(buf[:n]))
			close(d.notesC)
			d.notesC = make(chan struct{})
			d.notesMu.Unlock()
		}
	}()
	t.Cleanup(func() {
		nc.Close()
		<-drained
	})
	return d
}

// writeConfig replaces services.toml, e.g. before a reload.
func (d *superdProc) writeConfig(config string) {
	d.t.Helper()
	config = strings.ReplaceAll(config, "%HELPER%", bin.helper)
	if uid := os.Geteuid(); uid != 0 {
		// Not root: superd may only run handlers as its own user, which
		// is what the tests' user = "root" means.
		config = strings.ReplaceAll(config, `user = "root"`, fmt.Sprintf(`user = "%d"`, uid))
	}
	config = strings.ReplaceAll(config, "%DIR%", d.dir)
	tmp := d.config + ".tmp"
	if err := os.WriteFile(tmp, []byte(config), 0o644); err != nil {
		d.t.Fatal(err)
	}
	if err := os.Rename(tmp, d.config); err != nil {
		d.t.Fatal(err)
	}
}

// start starts superd; args replace the default "--log stderr".
func (d *superdProc) start(args ...string) {
	d.t.Helper()
	if len(args) == 0 {
		args = []string{"--log", "stderr"}
	}
	args = append([]string{"run", "--config", d.config}, args...)
	argv := append(append(append([]string{}, d.wrap...), bin.superd), args...)
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), "NOTIFY_SOCKET="+d.notify.LocalAddr().String(), "SUPERD_LEAK_CHECK=leaked")
	cmd.Env = append(cmd.Env, d.env...)
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
}

func (d *superdProc) readLogs(r io.Reader) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		d.mu.Lock()
		d.logs.Write(sc.Bytes())
		d.logs.WriteByte('\n')
		close(d.logC)
		d.logC = make(chan struct{})
		d.mu.Unlock()
	}
	d.waitOnce.Do(func() { d.waitErr = d.cmd.Wait(); close(d.exited) })
}

// kill stops superd if the test did not, and reports its log on failure.
func (d *superdProc) kill() {
	select {
	case <-d.exited:
	default:
		d.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-d.exited:
		case <-time.After(15 * time.Second):
			d.cmd.Process.Kill()
			<-d.exited
		}
	}
	if d.t.Failed() {
		d.t.Logf("superd log:\n%s", d.Logs())
	}
}

// stop sends sig and waits for superd to exit, returning its error.
func (d *superdProc) stop(sig syscall.Signal, within time.Duration) error {
	d.t.Helper()
	d.cmd.Process.Signal(sig)
	select {
	case <-d.exited:
		return d.waitErr
	case <-time.After(within):
		d.t.Fatalf("superd did not exit within %v of %v", within, sig)
		return nil
	}
}

// Logs returns everything superd logged so far.
func (d *superdProc) Logs() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.logs.String()
}

// waitLog waits until a log line matches re and returns the submatches.
func (d *superdProc) waitLog(re string, within time.Duration) []string {
	d.t.Helper()
	rx := regexp.MustCompile(re)
	deadline := time.After(within)
	for {
		d.mu.Lock()
		m := rx.FindStringSubmatch(d.logs.String())
		c := d.logC
		d.mu.Unlock()
		if m != nil {
			return m
		}
		select {
		case <-c:
		case <-d.exited:
			d.t.Fatalf("superd exited while waiting for log %q", re)
		case <-deadline:
			d.t.Fatalf("no log line matching %q within %v", re, within)
		}
	}
}

// countLog counts the log lines matching re.
func (d *superdProc) countLog(re string) int {
	return len(regexp.MustCompile("(?m)"+re).FindAllString(d.Logs(), -1))
}

// waitNotify consumes sd_notify messages, in the order superd sent
// them, until one contains state, and returns it.
func (d *superdProc) waitNotify(state string, within time.Duration) string {
	d.t.Helper()
	deadline := time.After(within)
	for {
		d.notesMu.Lock()
		for d.notesRead < len(d.notes) {
			msg := d.notes[d.notesRead]
			d.notesRead++
			if strings.Contains(msg, state) {
				d.notesMu.Unlock()
				return msg
			}
		}
		c := d.notesC
		d.notesMu.Unlock()
		select {
		case <-c:
		case <-deadline:
			d.t.Fatalf("waiting for sd_notify %q: none within %v\nlog:\n%s", state, within, d.Logs())
		}
	}
}

// pid returns superd's process id.
func (d *superdProc) pid() int { return d.cmd.Process.Pid }

// fdCount counts superd's open descriptors.
func (d *superdProc) fdCount() int {
	d.t.Helper()
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", d.pid()))
	if err != nil {
		d.t.Fatal(err)
	}
	return len(ents)
}

// children returns the pids whose parent is superd, zombies included.
func (d *superdProc) children() []int {
	return childrenOf(d.pid())
}

func childrenOf(ppid int) []int {
	var kids []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue
		}
		// Fields after the command, which is in parentheses: state ppid ...
		s := string(b)
		f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
		if len(f) > 1 && f[1] == strconv.Itoa(ppid) {
			kids = append(kids, pid)
		}
	}
	return kids
}

// freePort returns a loopback port that was free a moment ago.
func freePort(t *testing.T, network string) int {
	t.Helper()
	if strings.HasPrefix(network, "udp") {
		c, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		return c.LocalAddr().(*net.UDPAddr).Port
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// dial connects to a loopback port, failing the test on error.
func dial(t *testing.T, port int) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(port), 5*time.Second)
	if err != nil {
		t.Fatalf("dial %d: %v", port, err)
	}
	c.SetDeadline(time.Now().Add(20 * time.Second))
	return c
}

// roundTrip sends req (closing the write side) and reads all the reply.
func roundTrip(t *testing.T, port int, req string) string {
	t.Helper()
	c := dial(t, port)
	defer c.Close()
	if req != "" {
		if _, err := io.WriteString(c, req); err != nil {
			t.Fatalf("write: %v", err)
		}
	}
	c.(*net.TCPConn).CloseWrite()
	b, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("read from port %d: %v", port, err)
	}
	return string(b)
}

// waitFor polls cond until it holds, for state that no log line or
// notification announces (a process count, say).
func waitFor(t *testing.T, what string, within time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", within, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (CI runs as root): switching users and binding as another user")
	}
}
