package services

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/superd/superd/config"
)

// testTimeout bounds every wait in these tests; -race makes handler
// starts slow, so it is generous.
const testTimeout = 10 * time.Second

// TestMain lets the test binary act as a handler (argv0 "helper", as
// net/http/cgi's host_test.go does) and as the confinement trampoline
// (argv[1] == ConfineCommand), so the tests need no prebuilt programs.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == ConfineCommand {
		err := Confine(os.Args[2:])
		fmt.Fprintln(os.Stderr, err)
		os.Exit(111)
	}
	if len(os.Args) > 1 && filepath.Base(os.Args[0]) == "helper" {
		// syscall.Exit, not os.Exit: a -race binary would sleep a second
		// at exit (GORACE atexit_sleep_ms), and handlers exit a lot.
		syscall.Exit(runHelper(os.Args[1], os.Args[2:]))
	}
	// As superd's main does: nothing this process inherited (the shell's
	// or go test's descriptors) may reach a handler.
	if err := unix.CloseRange(3, math.MaxUint32, unix.CLOSE_RANGE_CLOEXEC); err != nil {
		fmt.Fprintln(os.Stderr, "close_range:", err)
		os.Exit(1)
	}
	os.Exit(m.Run())
}

// helpers are the handler programs the tests run as the test binary with
// argv ["helper", NAME, ARGS...]. They use raw system calls on fds 0 and
// 1, so that a socket left non-blocking shows up as EAGAIN.
var helpers = map[string]func(args []string) int{
	"readline":   helperReadline,
	"udp-reply":  helperUDPReply,
	"tcp-accept": helperTCPAccept,
	"wait-file":  helperWaitFile,
	"fds":        helperFDs,
}

func runHelper(name string, args []string) int {
	h, ok := helpers[name]
	if !ok {
		fmt.Fprintf(os.Stderr, "no helper %q\n", name)
		return 2
	}
	return h(args)
}

// say writes s to fd 1 with one blocking write(2).
func say(s string) error {
	_, err := unix.Write(1, []byte(s))
	return err
}

func nonblock(fd int) bool {
	fl, err := unix.FcntlInt(uintptr(fd), unix.F_GETFL, 0)
	return err == nil && fl&unix.O_NONBLOCK != 0
}

// helperReadline reads one line from fd 0 with blocking reads and answers
// "got:LINE".
func helperReadline([]string) int {
	var line []byte
	buf := make([]byte, 1)
	for {
		n, err := unix.Read(0, buf)
		if err != nil {
			say("error:" + err.Error() + "\n")
			return 1
		}
		if n == 0 || buf[0] == '\n' {
			break
		}
		line = append(line, buf[0])
	}
	say("got:" + string(line) + "\n")
	return 0
}

// helperUDPReply takes one datagram from the bound socket (wait mode) and
// answers "reply:DATA nonblock=BOOL", BOOL being fd 0's mode at start.
// With the argument "set-nonblock" it then leaves the socket
// non-blocking, as tftpd does.
func helperUDPReply(args []string) int {
	nb := nonblock(0)
	buf := make([]byte, 2048)
	n, from, err := unix.Recvfrom(0, buf, 0)
	if err != nil {
		fmt.Fprintln(os.Stderr, "recvfrom:", err)
		return 1
	}
	msg := fmt.Sprintf("reply:%s nonblock=%v", buf[:n], nb)
	if err := unix.Sendto(1, []byte(msg), 0, from); err != nil {
		fmt.Fprintln(os.Stderr, "sendto:", err)
		return 1
	}
	if len(args) > 0 && args[0] == "set-nonblock" {
		unix.SetNonblock(0, true)
	}
	return 0
}

// helperTCPAccept accepts one connection on the listening socket (wait
// mode) with a blocking accept and writes "accepted" to it.
func helperTCPAccept([]string) int {
	nfd, _, err := unix.Accept(0)
	if err != nil {
		fmt.Fprintln(os.Stderr, "accept:", err)
		return 1
	}
	unix.Write(nfd, []byte("accepted\n"))
	unix.Close(nfd)
	return 0
}

// helperWaitFile holds its descriptors until the file args[0] exists (at
// most 20 s) and exits without touching them.
func helperWaitFile(args []string) int {
	for range 2000 {
		if _, err := os.Stat(args[0]); err == nil {
			return 0
		}
		time.Sleep(10 * time.Millisecond)
	}
	return 1
}

// helperFDs describes fd 0 and the other open descriptors:
// "nonblock=BOOL fds=[...]".
func helperFDs([]string) int {
	var fds []int
	for fd := 0; fd < 256; fd++ {
		if _, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0); err != nil {
			continue
		}
		// The Go runtime may read the cgroup CPU quota at start.
		if l, _ := os.Readlink(fmt.Sprintf("/proc/self/fd/%d", fd)); !strings.HasPrefix(l, "/sys/fs/cgroup/") {
			fds = append(fds, fd)
		}
	}
	say(fmt.Sprintf("nonblock=%v fds=%v\n", nonblock(0), fds))
	return 0
}

// self is the path of the test binary, run as handler and trampoline.
func self(t *testing.T) string {
	t.Helper()
	p, err := os.Executable()
	if err != nil {
		t.Fatalf("os.Executable: %v", err)
	}
	return p
}

// entry is one captured log record, with the logger's attributes.
type entry struct {
	level slog.Level
	msg   string
	attrs map[string]string
}

func (e entry) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %q", e.level, e.msg)
	keys := make([]string, 0, len(e.attrs))
	for k := range e.attrs {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		fmt.Fprintf(&b, " %s=%s", k, e.attrs[k])
	}
	return b.String()
}

// recorder is a slog handler that keeps every record, so that tests
// wait for log events instead of sleeping.
type recorder struct {
	mu      sync.Mutex
	entries []entry
	changed chan struct{} // closed and replaced on every record
}

type recHandler struct {
	r     *recorder
	attrs []slog.Attr
}

func (h *recHandler) Enabled(context.Context, slog.Level) bool { return true }

func (h *recHandler) Handle(_ context.Context, rec slog.Record) error {
	e := entry{level: rec.Level, msg: rec.Message, attrs: make(map[string]string)}
	for _, a := range h.attrs {
		e.attrs[a.Key] = a.Value.Resolve().String()
	}
	rec.Attrs(func(a slog.Attr) bool {
		e.attrs[a.Key] = a.Value.Resolve().String()
		return true
	})
	h.r.mu.Lock()
	h.r.entries = append(h.r.entries, e)
	close(h.r.changed)
	h.r.changed = make(chan struct{})
	h.r.mu.Unlock()
	return nil
}

func (h *recHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &recHandler{r: h.r, attrs: append(append([]slog.Attr(nil), h.attrs...), as...)}
}

func (h *recHandler) WithGroup(string) slog.Handler { return h }

// newRecorder returns a recorder and a logger writing to it; the log is
// printed when the test fails.
func newRecorder(t *testing.T) (*recorder, *slog.Logger) {
	r := &recorder{changed: make(chan struct{})}
	t.Cleanup(func() {
		if t.Failed() {
			for _, e := range r.all() {
				t.Logf("log: %s", e)
			}
		}
	})
	return r, slog.New(&recHandler{r: r})
}

func (r *recorder) all() []entry {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]entry(nil), r.entries...)
}

// match selects entries with message msg and the given key, value pairs.
func match(msg string, kv ...string) func(entry) bool {
	return func(e entry) bool {
		if e.msg != msg {
			return false
		}
		for i := 0; i+1 < len(kv); i += 2 {
			if e.attrs[kv[i]] != kv[i+1] {
				return false
			}
		}
		return true
	}
}

func (r *recorder) filter(f func(entry) bool) []entry {
	var out []entry
	for _, e := range r.all() {
		if f(e) {
			out = append(out, e)
		}
	}
	return out
}

func (r *recorder) count(f func(entry) bool) int { return len(r.filter(f)) }

// waitN waits until n entries match f and returns them.
func (r *recorder) waitN(t *testing.T, n int, f func(entry) bool) []entry {
	t.Helper()
	deadline := time.NewTimer(testTimeout)
	defer deadline.Stop()
	for {
		r.mu.Lock()
		ch := r.changed
		r.mu.Unlock()
		if got := r.filter(f); len(got) >= n {
			return got
		}
		select {
		case <-ch:
		case <-deadline.C:
			t.Fatalf("got %d matching log records after %v, want %d", r.count(f), testTimeout, n)
		}
	}
}

// wait waits for the first entry matching f.
func (r *recorder) wait(t *testing.T, f func(entry) bool) entry {
	t.Helper()
	return r.waitN(t, 1, f)[0]
}

// testEnv is a Runtime with its own Procs and a recording logger. At
// cleanup every handler still running is killed and reaped.
type testEnv struct {
	rec *recorder
	log *slog.Logger
	rt  *Runtime
}

func newEnv(t *testing.T) *testEnv {
	t.Helper()
	rec, log := newRecorder(t)
	exe, err := OpenExecutable()
	if err != nil {
		t.Fatal(err)
	}
	e := &testEnv{rec: rec, log: log, rt: &Runtime{Procs: NewProcs(), Self: self(t), Exe: exe, Euid: os.Geteuid()}}
	t.Cleanup(func() {
		defer exe.Close()
		e.rt.Procs.Signal(unix.SIGKILL)
		ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
		defer cancel()
		if err := e.rt.Procs.Wait(ctx); err != nil {
			t.Errorf("Procs.Wait at cleanup: %v", err)
		}
	})
	return e
}

// serving is a Service whose Serve runs in a goroutine.
type serving struct {
	svc    *Service
	cancel context.CancelFunc
	done   chan error
}

// serve runs Serve until stop or the end of the test.
func (e *testEnv) serve(t *testing.T, cfg *config.Service, sock *Socket) *serving {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := &serving{svc: New(cfg, sock, e.rt, e.log), cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- r.svc.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-r.done:
		case <-time.After(testTimeout):
			t.Errorf("Serve of %s still running %v after cancel", cfg.Name, testTimeout)
		}
	})
	return r
}

// stop cancels Serve and checks that it returns nil promptly.
func (r *serving) stop(t *testing.T) {
	t.Helper()
	r.cancel()
	select {
	case err := <-r.done:
		if err != nil {
			t.Fatalf("Serve returned %v, want nil", err)
		}
		r.done <- nil // for the cleanup
	case <-time.After(3 * time.Second):
		t.Fatalf("Serve still running 3s after its context was cancelled")
	}
}

// bind binds key and closes the socket at cleanup.
func bind(t *testing.T, network, address string) *Socket {
	t.Helper()
	s, err := Bind(config.ListenKey{Network: network, Address: address}, 0, 0)
	if err != nil {
		t.Fatalf("Bind(%s, %s): %v", network, address, err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// sockDir returns a directory whose paths fit in a sockaddr_un.
func sockDir(t *testing.T) string {
	t.Helper()
	if d := t.TempDir(); len(d) < 80 {
		return d
	}
	d, err := os.MkdirTemp("", "sd")
	if err != nil {
		t.Fatalf("MkdirTemp: %v", err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

// execService is a nowait handler service with the defaults config.Load
// would give it, no user switch, and 16 instances.
func execService(name string, key config.ListenKey, path string, args ...string) *config.Service {
	return &config.Service{
		Name:   name,
		Listen: key,
		Exec: config.Exec{
			Path:   path,
			Argv:   append([]string{filepath.Base(path)}, args...),
			Dir:    "/",
			Stderr: "log",
			Umask:  -1,
		},
		Limits: config.Limits{Instances: 16},
	}
}

// helperService runs the helper NAME ARGS as its handler.
func helperService(t *testing.T, name string, key config.ListenKey, args ...string) *config.Service {
	t.Helper()
	svc := execService(name, key, self(t))
	svc.Exec.Argv = append([]string{"helper"}, args...)
	return svc
}

// dial connects to addr with a deadline for the whole exchange.
func dial(t *testing.T, network, addr string) net.Conn {
	t.Helper()
	c, err := net.DialTimeout(network, addr, testTimeout)
	if err != nil {
		t.Fatalf("dial %s %s: %v", network, addr, err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(testTimeout))
	return c
}

// readAll reads c until EOF.
func readAll(t *testing.T, c net.Conn) string {
	t.Helper()
	var b strings.Builder
	buf := make([]byte, 4096)
	for {
		n, err := c.Read(buf)
		b.Write(buf[:n])
		if err != nil {
			if isEOF(err) {
				return b.String()
			}
			t.Fatalf("read after %q: %v", b.String(), err)
		}
	}
}

func isEOF(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET)
}
