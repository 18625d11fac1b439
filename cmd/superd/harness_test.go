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

	"github.com/superd/superd/internal/testkit"
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
	newHelpers().Dispatch() // never returns when superd runs us as a handler
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
	binary string   // the superd binary to run; bin.superd when empty
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
	d.waitNotify("READY=1")
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
	binary := d.binary
	if binary == "" {
		binary = bin.superd
	}
	argv := append(append(append([]string{}, d.wrap...), binary), args...)
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
// It fails the test after testkit.Timeout, or at once if superd exits.
func (d *superdProc) waitLog(re string) []string {
	d.t.Helper()
	rx := regexp.MustCompile(re)
	var m []string
	d.waitLogs(fmt.Sprintf("a log line matching %q", re), func(logs string) bool {
		m = rx.FindStringSubmatch(logs)
		return m != nil
	})
	return m
}

// waitLogN waits until n log lines match re.
func (d *superdProc) waitLogN(re string, n int) {
	d.t.Helper()
	rx := regexp.MustCompile("(?m)" + re)
	d.waitLogs(fmt.Sprintf("%d log lines matching %q", n, re), func(logs string) bool {
		return len(rx.FindAllStringIndex(logs, -1)) >= n
	})
}

// waitLogs waits, woken by every new log line, until cond holds for the
// whole log.
func (d *superdProc) waitLogs(what string, cond func(logs string) bool) {
	d.t.Helper()
	deadline := time.NewTimer(testkit.Timeout)
	defer deadline.Stop()
	for {
		d.mu.Lock()
		ok := cond(d.logs.String())
		c := d.logC
		d.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-c:
		case <-d.exited:
			d.t.Fatalf("superd exited while waiting for %s", what)
		case <-deadline.C:
			d.t.Fatalf("no %s within %v", what, testkit.Timeout)
		}
	}
}

// countLog counts the log lines matching re.
func (d *superdProc) countLog(re string) int {
	return len(regexp.MustCompile("(?m)"+re).FindAllString(d.Logs(), -1))
}

// waitNotify consumes sd_notify messages, in the order superd sent
// them, until one contains state, and returns it. It fails the test
// after testkit.Timeout.
func (d *superdProc) waitNotify(state string) string {
	d.t.Helper()
	deadline := time.NewTimer(testkit.Timeout)
	defer deadline.Stop()
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
		case <-deadline.C:
			d.t.Fatalf("waiting for sd_notify %q: none within %v\nlog:\n%s", state, testkit.Timeout, d.Logs())
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

// dial connects to a loopback port (see testkit.Dial).
func dial(t *testing.T, port int) net.Conn {
	t.Helper()
	return testkit.Dial(t, addrOf(port))
}

// roundTrip sends req to a loopback port, closing the write side, and
// reads all the reply (see testkit.RoundTrip).
func roundTrip(t *testing.T, port int, req string) string {
	t.Helper()
	return testkit.RoundTrip(t, addrOf(port), req)
}

// skipIfShort skips a test that go test -short leaves out: the floods,
// the figure scenarios of docs/reliability.md and the real programs,
// which make most of this package's run time.
func skipIfShort(t *testing.T, what string) {
	t.Helper()
	if testing.Short() {
		t.Skipf("-short: skipping %s (plain go test runs it)", what)
	}
}

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (CI runs as root): switching users and binding as another user")
	}
}
