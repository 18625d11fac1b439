package services

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/superd/superd/config"
	"github.com/superd/superd/internal/testkit"
	"github.com/superd/superd/services/confine"
	"github.com/superd/superd/services/proc"
)

// testTimeout bounds every wait in these tests: a bound for "never",
// not a speed requirement.
const testTimeout = testkit.Timeout

// TestMain lets the test binary act as a handler (argv0 "helper", as
// net/http/cgi's host_test.go does) and as the confinement trampoline
// (argv[1] == confine.Command), so the tests need no prebuilt programs.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == confine.Command {
		err := confine.Run(os.Args[2:])
		fmt.Fprintln(os.Stderr, err)
		os.Exit(111)
	}
	newHelpers().Dispatch()
	// As superd's main does: nothing this process inherited (the shell's
	// or go test's descriptors) may reach a handler.
	if err := testkit.CloseOnExecInherited(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Exit(m.Run())
}

// newHelpers returns the handler programs the tests run as the test
// binary with argv ["helper", NAME, ARGS...]. They use raw system calls
// on fds 0 and 1, so that a socket left non-blocking shows up as EAGAIN.
func newHelpers() *testkit.Helpers {
	h := testkit.NewHelpers()
	for name, fn := range map[string]func([]string) int{
		"readline":   testkit.Readline,
		"udp-reply":  testkit.UDPReplyMode,
		"tcp-accept": testkit.TCPAccept,
		"wait-file":  testkit.WaitFile,
		"fds":        testkit.FDs,
	} {
		h.Register(name, fn)
	}
	return h
}

var match = testkit.Match

// testEnv is a Runtime with its own process table and a recording
// logger. At cleanup every handler still running is killed and reaped.
type testEnv struct {
	rec *testkit.Recorder
	log *slog.Logger
	rt  *Runtime
}

func newEnv(t *testing.T) *testEnv {
	t.Helper()
	rec := testkit.NewRecorder(t)
	exe, err := confine.OpenExecutable()
	if err != nil {
		t.Fatal(err)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	procs, err := proc.New()
	if err != nil {
		t.Fatal(err)
	}
	e := &testEnv{rec: rec, log: rec.Logger(), rt: &Runtime{Procs: procs, Self: self, Exe: exe, Euid: os.Geteuid()}}
	t.Cleanup(func() {
		defer exe.Close()
		e.rt.Procs.Signal(unix.SIGKILL)
		ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
		defer cancel()
		if err := e.rt.Procs.Wait(ctx); err != nil {
			t.Errorf("process table's Wait at cleanup: %v", err)
		}
	})
	return e
}

// listen starts a Listener for svc, closed at the end of the test.
func (e *testEnv) listen(t *testing.T, svc *config.Service) *Listener {
	t.Helper()
	l, err := Listen(svc, e.rt, e.log)
	if err != nil {
		t.Fatalf("Listen(%s): %v", svc.Listen, err)
	}
	t.Cleanup(func() { closeListener(t, l) })
	return l
}

// closeListener closes l and fails the test if Close fails or never
// returns.
func closeListener(t *testing.T, l *Listener) {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- l.Close() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Close of %s: %v", l.Key(), err)
		}
	case <-time.After(testTimeout):
		t.Fatalf("Close of %s still running after %v", l.Key(), testTimeout)
	}
}

// update applies svc to l and fails the test on an error.
func update(t *testing.T, l *Listener, svc *config.Service) {
	t.Helper()
	if err := l.Update(svc); err != nil {
		t.Fatalf("Update(%s): %v", svc.Name, err)
	}
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
func helperService(t *testing.T, name string, key config.ListenKey, helper string, args ...string) *config.Service {
	t.Helper()
	svc := execService(name, key, "")
	svc.Exec.Path, svc.Exec.Argv = newHelpers().Cmd(helper, args...)
	return svc
}

// dial connects to addr with a deadline for the whole exchange.
func dial(t *testing.T, network, addr string) net.Conn {
	t.Helper()
	return testkit.DialNetwork(t, network, addr)
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

// errorLines counts the log lines at level ERROR or above.
func errorLines(e *testEnv) int {
	return e.rec.Count(func(en testkit.Entry) bool { return en.Level >= slog.LevelError })
}

// nonblocking reports whether the Listener's socket (its shared file
// description) is in non-blocking mode. It goes through a RawConn, since
// (*os.File).Fd would itself make the descriptor blocking.
func nonblocking(t *testing.T, l *Listener) bool {
	t.Helper()
	var c syscall.Conn
	if ln := l.sock.Listener(); ln != nil {
		c = ln.(syscall.Conn)
	} else {
		c = l.sock.PacketConn().(syscall.Conn)
	}
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var fl int
	var ferr error
	if err := rc.Control(func(fd uintptr) { fl, ferr = unix.FcntlInt(fd, unix.F_GETFL, 0) }); err != nil || ferr != nil {
		t.Fatalf("F_GETFL on %s: %v %v", l.Key(), err, ferr)
	}
	return fl&unix.O_NONBLOCK != 0
}
