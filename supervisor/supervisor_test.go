package supervisor_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/superd/superd/config"
	"github.com/superd/superd/internal/metrics"
	"github.com/superd/superd/internal/testkit"
	"github.com/superd/superd/services"
	"github.com/superd/superd/services/proc"
	"github.com/superd/superd/supervisor"
)

// testTimeout bounds every wait in these tests.
const testTimeout = 10 * time.Second

func TestMain(m *testing.M) {
	// As superd's main does: nothing this process inherited may reach a
	// handler.
	if err := testkit.CloseOnExecInherited(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Exit(m.Run())
}

var (
	match  = testkit.Match
	prefix = testkit.Prefix
)

// run is a Supervisor running in a goroutine, its log, its sd_notify
// states, and the configuration its Load returns next.
type run struct {
	log   *testkit.Recorder // the log
	notes *testkit.Recorder // the sd_notify states, as messages
	next  atomic.Pointer[config.Config]
	fail  atomic.Pointer[error]
	loads atomic.Int32
	// gate, when set, makes Load tell entered and then wait until gate
	// is closed: a reload held under way.
	gate    atomic.Pointer[chan struct{}]
	entered chan struct{}
	procs   *proc.Table
	sup     *supervisor.Supervisor
	cancel  context.CancelFunc
	done    chan error
}

// newProcs returns a new process table.
func newProcs(t *testing.T) *proc.Table {
	t.Helper()
	procs, err := proc.New()
	if err != nil {
		t.Fatal(err)
	}
	return procs
}

// start runs a Supervisor on cfg until the end of the test and waits for
// its first READY=1.
func start(t *testing.T, cfg *config.Config, watchdog time.Duration) *run {
	t.Helper()
	return startWith(t, cfg, watchdog, nil)
}

// startWith is start with reg (nil: none) as the Runtime's metrics.
func startWith(t *testing.T, cfg *config.Config, watchdog time.Duration, reg *metrics.Registry) *run {
	t.Helper()
	r := &run{log: testkit.NewRecorder(t), notes: testkit.NewRecorder(t), procs: newProcs(t), done: make(chan error, 1), entered: make(chan struct{}, 100)}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	s := supervisor.New(cfg, supervisor.Options{
		Load: func() (*config.Config, error) {
			r.loads.Add(1)
			if g := r.gate.Load(); g != nil {
				r.entered <- struct{}{}
				<-*g
			}
			if err := r.fail.Load(); err != nil {
				return nil, *err
			}
			return r.next.Load(), nil
		},
		Log:      r.log.Logger(),
		Runtime:  &services.Runtime{Procs: r.procs, Self: self, Euid: os.Geteuid(), Metrics: reg},
		Notify:   func(state string) { r.notes.Add(testkit.Entry{Msg: state}) },
		Watchdog: watchdog,
	})
	r.sup = s
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	go func() { r.done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-r.done:
			if err != nil {
				t.Errorf("Run at cleanup = %v, want nil", err)
			}
			r.done <- err
		case <-time.After(testTimeout):
			t.Errorf("Run still running %v after cancel", testTimeout)
		}
	})
	r.notes.Wait(t, prefix("READY=1"))
	return r
}

// stop cancels Run and checks that it returns nil.
func (r *run) stop(t *testing.T) {
	t.Helper()
	r.cancel()
	select {
	case err := <-r.done:
		r.done <- err
		if err != nil {
			t.Fatalf("Run after cancel = %v, want nil", err)
		}
	case <-time.After(testTimeout):
		t.Fatalf("Run still running %v after cancel", testTimeout)
	}
}

// reload makes Load return next, asks for a reload and waits for the
// READY=1 that ends it. It returns that state.
func (r *run) reload(t *testing.T, next *config.Config) string {
	t.Helper()
	r.next.Store(next)
	n := r.notes.Count(prefix("READY=1"))
	loads := r.loads.Load()
	r.sup.Reload()
	st := r.notes.WaitN(t, n+1, prefix("READY=1"))[n].Msg
	if got := r.loads.Load(); got != loads+1 {
		t.Fatalf("Load called %d times for one Reload, want once", got-loads)
	}
	return st
}

// addr returns the address service name was bound to, from its
// "listening" line; n selects the n-th binding (0 is the first).
func (r *run) addr(t *testing.T, name string, n int) string {
	t.Helper()
	return r.log.WaitN(t, n+1, match("listening", "service", name))[n].Attrs["addr"]
}

func cfgOf(svcs ...*config.Service) *config.Config {
	return &config.Config{Global: config.Global{ShutdownGrace: 500 * time.Millisecond}, Services: svcs}
}

func key(address string) config.ListenKey { return config.ListenKey{Network: "tcp", Address: address} }

func builtinSvc(name, address, builtin string) *config.Service {
	return &config.Service{Name: name, Listen: key(address), Builtin: builtin, Limits: config.Limits{Instances: 16}}
}

func execSvc(name, address, path string, args ...string) *config.Service {
	return &config.Service{
		Name:   name,
		Listen: key(address),
		Exec:   config.Exec{Path: path, Argv: append([]string{path}, args...), Dir: "/", Stderr: "log", Umask: -1},
		Limits: config.Limits{Instances: 16},
	}
}

func dial(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, testTimeout)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(testTimeout))
	return c
}

func readAll(t *testing.T, c net.Conn) string {
	t.Helper()
	b, err := io.ReadAll(c)
	if err != nil && !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("read after %q: %v", b, err)
	}
	return string(b)
}

// echoOnce sends line over an echo connection and checks the answer.
func echoOnce(t *testing.T, c net.Conn, br *bufio.Reader, line string) {
	t.Helper()
	if _, err := fmt.Fprintln(c, line); err != nil {
		t.Fatalf("write %q: %v", line, err)
	}
	got, err := br.ReadString('\n')
	if err != nil || got != line+"\n" {
		t.Fatalf("echo of %q: %q, %v", line, got, err)
	}
}

// refused checks that nothing listens on addr any more.
func refused(t *testing.T, addr string) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err == nil {
		c.Close()
		t.Fatalf("dial %s succeeded, want the port closed", addr)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("dial %s: %v, want connection refused", addr, err)
	}
}

// TestRunReadyAndShutdown checks start-up (READY=1 with STATUS, disabled
// services not bound) and a shutdown by context: STOPPING=1, sockets
// closed, handlers sent SIGTERM and reaped, nil returned.
func TestRunReadyAndShutdown(t *testing.T) {
	off := builtinSvc("off", "127.0.0.3:0", "echo")
	off.Disabled = true
	r := start(t, cfgOf(
		builtinSvc("echo", "127.0.0.1:0", "echo"),
		execSvc("hold", "127.0.0.2:0", "/bin/sh", "-c", "read x; echo never"),
		off,
	), 0)
	if got, want := r.notes.All()[0].Msg, "READY=1\nSTATUS=2 services running, 0 handlers"; got != want {
		t.Errorf("first state = %q, want %q", got, want)
	}
	if l := r.log.Wait(t, match("ready")); l.Attrs["services"] != "2" || l.Attrs["pending"] != "0" {
		t.Errorf("ready line %v, want services=2 pending=0", l)
	}
	if n := r.log.Count(match("listening", "service", "off")); n != 0 {
		t.Errorf("disabled service bound %d times, want never", n)
	}
	echoAddr, holdAddr := r.addr(t, "echo", 0), r.addr(t, "hold", 0)
	c := dial(t, echoAddr)
	echoOnce(t, c, bufio.NewReader(c), "hi")

	held := dial(t, holdAddr)
	r.log.Wait(t, match("start", "service", "hold"))

	r.stop(t)
	if !slices.ContainsFunc(r.notes.All(), func(e testkit.Entry) bool { return e.Msg == "STOPPING=1" }) {
		t.Errorf("states %v, want STOPPING=1", r.notes.All())
	}
	if ex := r.log.Wait(t, match("exit", "service", "hold")); ex.Attrs["status"] != "signal:SIGTERM" {
		t.Errorf("handler exit at shutdown %v, want status=signal:SIGTERM", ex)
	}
	if got := readAll(t, held); got != "" {
		t.Errorf("client of the terminated handler got %q", got)
	}
	r.log.Wait(t, match("stopped"))
	if n := r.procs.Count(); n != 0 {
		t.Errorf("%d handlers left after shutdown", n)
	}
	refused(t, echoAddr)
	refused(t, holdAddr)
}

// TestShutdownKillsAfterGrace checks that a handler that ignores SIGTERM
// is killed, with its process group, once the grace is over.
func TestShutdownKillsAfterGrace(t *testing.T) {
	cfg := cfgOf(execSvc("stubborn", "127.0.0.1:0", "/bin/sh", "-c", `trap "" TERM; echo ready; while :; do sleep 1; done`))
	cfg.Global.ShutdownGrace = 200 * time.Millisecond
	r := start(t, cfg, 0)
	c := dial(t, r.addr(t, "stubborn", 0))
	br := bufio.NewReader(c)
	if l, err := br.ReadString('\n'); err != nil || l != "ready\n" {
		t.Fatalf("handler said %q, %v", l, err)
	}
	began := time.Now()
	r.stop(t)
	took := time.Since(began)
	if l := r.log.Wait(t, match("kill_after_grace")); l.Attrs["count"] != "1" {
		t.Errorf("kill line %v, want count=1", l)
	}
	if ex := r.log.Wait(t, match("exit", "service", "stubborn")); ex.Attrs["status"] != "signal:SIGKILL" {
		t.Errorf("exit %v, want signal:SIGKILL", ex)
	}
	if took < 200*time.Millisecond {
		t.Errorf("shutdown took %v, less than the 200ms grace", took)
	}
	// The whole group is gone: nobody holds the connection any more.
	if got := readAll(t, c); got != "" {
		t.Errorf("got %q after the kill", got)
	}
}

// TestReload checks a reload's effects: an unchanged address keeps its
// socket, its backlog and its open connections; a removed service's port
// closes while its running handler is left alone; a new service is bound;
// a moved service follows its address.
func TestReload(t *testing.T) {
	keep := builtinSvc("keep", "127.0.0.1:0", "echo")
	keep.Limits.Instances = 1
	r := start(t, cfgOf(
		keep,
		builtinSvc("gone", "127.0.0.2:0", "echo"),
		execSvc("gonehandler", "127.0.0.3:0", "/bin/sh", "-c", `read x; echo "got $x"`),
		builtinSvc("moves", "127.0.0.4:0", "echo"),
	), 0)
	keepAddr, goneAddr := r.addr(t, "keep", 0), r.addr(t, "gone", 0)
	handlerAddr, movesAddr := r.addr(t, "gonehandler", 0), r.addr(t, "moves", 0)

	c1 := dial(t, keepAddr)
	br1 := bufio.NewReader(c1)
	echoOnce(t, c1, br1, "before") // c1 holds the only slot
	c2 := dial(t, keepAddr)        // waits in the backlog
	if _, err := fmt.Fprintln(c2, "queued"); err != nil {
		t.Fatal(err)
	}
	h := dial(t, handlerAddr)
	r.log.Wait(t, match("start", "service", "gonehandler"))

	keep2 := builtinSvc("keep", "127.0.0.1:0", "echo")
	keep2.Limits.Instances = 1
	st := r.reload(t, cfgOf(keep2, builtinSvc("new", "127.0.0.5:0", "daytime"), builtinSvc("moves", "127.0.0.6:0", "echo")))
	if want := "READY=1\nSTATUS=3 services running, 1 handlers"; st != want {
		t.Errorf("state after reload = %q, want %q", st, want)
	}
	// The reloaded line names what the reload did; moves moved, so its
	// old identity closed and its new one was bound.
	r.log.Wait(t, match("reloaded", "added", "moves,new", "removed", "gone,gonehandler,moves", "changed", "-"))

	// keep: same socket, never re-bound, connections intact.
	if n := r.log.Count(match("listening", "service", "keep")); n != 1 {
		t.Errorf("keep bound %d times, want once (socket kept)", n)
	}
	echoOnce(t, c1, br1, "after")
	c1.Close()
	if got, err := bufio.NewReader(c2).ReadString('\n'); err != nil || got != "queued\n" {
		t.Errorf("client queued across the reload got %q, %v; want its echo", got, err)
	}

	// gone: port closed; its running handler still runs and is reaped.
	refused(t, goneAddr)
	refused(t, handlerAddr)
	if l := r.log.Wait(t, match("closed", "service", "gone", "listen", "tcp/127.0.0.2:0")); l.Level != slog.LevelInfo {
		t.Errorf("closed line %v", l)
	}
	fmt.Fprintln(h, "late")
	if got := readAll(t, h); got != "got late\n" {
		t.Errorf("handler of a removed service answered %q, want it untouched", got)
	}
	if ex := r.log.Wait(t, match("exit", "service", "gonehandler")); ex.Attrs["status"] != "0" {
		t.Errorf("exit of the removed service's handler %v, want status=0", ex)
	}

	// new and moved services.
	if got := readAll(t, dial(t, r.addr(t, "new", 0))); !strings.HasSuffix(got, "\r\n") {
		t.Errorf("new daytime service answered %q", got)
	}
	refused(t, movesAddr)
	mc := dial(t, r.addr(t, "moves", 1))
	echoOnce(t, mc, bufio.NewReader(mc), "moved")
}

// TestReloadModeChange switches a port from the built-in echo to a
// handler: the socket stays, and a client waiting in its backlog during
// the reload is served by the handler.
func TestReloadModeChange(t *testing.T) {
	svc := builtinSvc("m", "127.0.0.1:0", "echo")
	svc.Limits.Instances = 1
	r := start(t, cfgOf(svc), 0)
	addr := r.addr(t, "m", 0)
	c1 := dial(t, addr)
	echoOnce(t, c1, bufio.NewReader(c1), "builtin")
	c2 := dial(t, addr) // in the backlog: the only slot is c1's

	r.reload(t, cfgOf(execSvc("m", "127.0.0.1:0", "/bin/echo", "handler")))
	if n := r.log.Count(match("listening", "service", "m")); n != 1 {
		t.Errorf("m bound %d times, want once (socket kept across the mode change)", n)
	}
	if got := readAll(t, c2); got != "handler\n" {
		t.Errorf("client queued across the mode change got %q, want the handler's answer", got)
	}
	if got := readAll(t, dial(t, addr)); got != "handler\n" {
		t.Errorf("new client got %q, want handler", got)
	}
	// The built-in's connection ended with its Service.
	if got := readAll(t, c1); got != "" {
		t.Errorf("built-in connection after the mode change got %q, want EOF", got)
	}
}

// TestBindRetry checks that a service whose port is busy waits, the
// others run, and it is bound by the retry once the port is free.
func TestBindRetry(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	busy := ln.Addr().String()
	r := start(t, cfgOf(builtinSvc("busy", busy, "echo"), builtinSvc("free", "127.0.0.2:0", "echo")), 0)
	if got, want := r.notes.All()[0].Msg, "READY=1\nSTATUS=1 services running, 1 waiting for their socket, 0 handlers"; got != want {
		t.Errorf("first state = %q, want %q", got, want)
	}
	if l := r.log.Wait(t, match("bind_failed", "service", "busy")); !strings.Contains(l.Attrs["err"], "address already in use") || l.Level != slog.LevelError {
		t.Errorf("bind failure line %v", l)
	}
	if l := r.log.Wait(t, match("bind_retry", "service", "busy")); l.Attrs["in"] != "1s" {
		t.Errorf("retry line %v, want in=1s", l)
	}
	if l := r.log.Wait(t, match("ready")); l.Attrs["pending"] != "1" {
		t.Errorf("ready line %v, want pending=1", l)
	}
	fc := dial(t, r.addr(t, "free", 0))
	echoOnce(t, fc, bufio.NewReader(fc), "free")

	// Still busy at the first retry: the delay doubles.
	if l := r.log.WaitN(t, 2, match("bind_retry", "service", "busy"))[1]; l.Attrs["in"] != "2s" {
		t.Errorf("second retry line %v, want in=2s", l)
	}
	if n := r.log.Count(match("listening", "service", "busy")); n != 0 {
		t.Fatalf("busy bound %d times while its port was taken", n)
	}
	ln.Close()
	if got := r.addr(t, "busy", 0); got != busy {
		t.Errorf("busy bound to %s, want %s", got, busy)
	}
	if st := r.notes.Wait(t, prefix("STATUS=2 services")); st.Msg != "STATUS=2 services running, 0 handlers" {
		t.Errorf("state after the retry = %q", st.Msg)
	}
	c := dial(t, busy)
	echoOnce(t, c, bufio.NewReader(c), "bound at last")
}

// TestReloadNotify checks the sd_notify states of a reload: RELOADING=1
// with the current CLOCK_MONOTONIC in microseconds, then READY=1.
func TestReloadNotify(t *testing.T) {
	cfg := cfgOf(builtinSvc("echo", "127.0.0.1:0", "echo"))
	r := start(t, cfg, 0)
	before := monotonicUsec(t)
	next := cfgOf(builtinSvc("echo", "127.0.0.1:0", "echo"))
	next.Warnings = []*config.Error{{File: "x.toml", Service: "echo", Key: "only_from", Err: errors.New("has no effect")}}
	r.reload(t, next)
	after := monotonicUsec(t)

	var states []string
	for _, e := range r.notes.All() {
		states = append(states, strings.SplitN(e.Msg, "\n", 2)[0])
	}
	if want := []string{"READY=1", "RELOADING=1", "READY=1"}; !slices.Equal(states, want) {
		t.Fatalf("states %q, want %q", states, want)
	}
	reloading := r.notes.All()[1].Msg
	v, ok := strings.CutPrefix(reloading, "RELOADING=1\nMONOTONIC_USEC=")
	usec, err := strconv.ParseInt(v, 10, 64)
	if !ok || err != nil || usec < before || usec > after {
		t.Errorf("reloading state %q, want MONOTONIC_USEC between %d and %d", reloading, before, after)
	}
	if l := r.log.Wait(t, match("config_warning")); l.Attrs["warning"] != `x.toml: service "echo": key "only_from": has no effect` {
		t.Errorf("warning line %v", l)
	}
	// reloading is logged before reloaded.
	var order []string
	for _, e := range r.log.All() {
		if e.Msg == "reloading" || e.Msg == "reloaded" {
			order = append(order, e.Msg)
		}
	}
	if !slices.Equal(order, []string{"reloading", "reloaded"}) {
		t.Errorf("reload lines %q, want reloading then reloaded", order)
	}
}

func monotonicUsec(t *testing.T) int64 {
	t.Helper()
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		t.Fatal(err)
	}
	return ts.Nano() / 1000
}

// TestReloadFails checks that a configuration that does not load keeps
// the running set whole, logs each error, and still answers READY=1.
func TestReloadFails(t *testing.T) {
	r := start(t, cfgOf(builtinSvc("echo", "127.0.0.1:0", "echo")), 0)
	addr := r.addr(t, "echo", 0)
	c := dial(t, addr)
	br := bufio.NewReader(c)
	echoOnce(t, c, br, "before")

	bad := errors.Join(
		&config.Error{File: "s.toml", Line: 3, Key: "port", Err: errors.New("port 70000 out of range 1..65535")},
		&config.Error{File: "s.toml", Line: 9, Service: "x", Key: "user", Err: errors.New(`unknown user "0day"`)},
	)
	r.fail.Store(&bad)
	st := r.reload(t, nil)
	if want := "READY=1\nSTATUS=1 services running, 0 handlers (last reload failed)"; st != want {
		t.Errorf("state after a failed reload = %q, want %q", st, want)
	}
	lines := r.log.WaitN(t, 2, match("reload_failed"))
	if lines[0].Attrs["err"] != `s.toml:3: key "port": port 70000 out of range 1..65535` ||
		lines[1].Attrs["err"] != `s.toml:9: service "x": key "user": unknown user "0day"` {
		t.Errorf("failure lines %v, want one per error", lines)
	}
	if n := r.log.Count(match("reloaded")); n != 0 {
		t.Errorf("%d reloaded lines after a failed reload", n)
	}
	echoOnce(t, c, br, "after")
	c2 := dial(t, addr)
	echoOnce(t, c2, bufio.NewReader(c2), "new client")

	// A plain error is logged as is.
	plain := error(errors.New("open /etc/superd/services.toml: permission denied"))
	r.fail.Store(&plain)
	r.reload(t, nil)
	if l := r.log.WaitN(t, 3, match("reload_failed"))[2]; l.Attrs["err"] != plain.Error() {
		t.Errorf("failure line %v, want err=%q", l, plain)
	}

	// The next good reload works.
	r.fail.Store(nil)
	st = r.reload(t, cfgOf(builtinSvc("echo", "127.0.0.1:0", "echo"), builtinSvc("two", "127.0.0.2:0", "echo")))
	if want := "READY=1\nSTATUS=2 services running, 0 handlers"; st != want {
		t.Errorf("state after the good reload = %q, want %q", st, want)
	}
}

// TestWatchdog checks WATCHDOG=1 at half the interval.
func TestWatchdog(t *testing.T) {
	r := start(t, cfgOf(), 100*time.Millisecond)
	began := time.Now()
	r.notes.WaitN(t, 3, match("WATCHDOG=1"))
	if took := time.Since(began); took < 100*time.Millisecond {
		t.Errorf("3 watchdog pings within %v, want them 50ms apart", took)
	}
}

// TestRunNoServices checks that an empty configuration still gets ready
// and shuts down.
func TestRunNoServices(t *testing.T) {
	r := start(t, cfgOf(), 0)
	if got, want := r.notes.All()[0].Msg, "READY=1\nSTATUS=0 services running, 0 handlers"; got != want {
		t.Errorf("state = %q, want %q", got, want)
	}
	r.stop(t)
	if got := r.notes.All(); got[len(got)-1].Msg != "STOPPING=1" {
		t.Errorf("last state %q, want STOPPING=1", got[len(got)-1].Msg)
	}
}

// TestReloadSwap swaps the addresses of two services in one reload: both
// sockets stay, and each now serves the other service.
func TestReloadSwap(t *testing.T) {
	r := start(t, cfgOf(builtinSvc("a", "127.0.0.1:0", "echo"), builtinSvc("b", "127.0.0.2:0", "daytime")), 0)
	aAddr, bAddr := r.addr(t, "a", 0), r.addr(t, "b", 0)
	r.reload(t, cfgOf(builtinSvc("a", "127.0.0.2:0", "echo"), builtinSvc("b", "127.0.0.1:0", "daytime")))
	if n := r.log.Count(match("listening")); n != 2 {
		t.Errorf("%d sockets bound in all, want 2 (both kept)", n)
	}
	if got := readAll(t, dial(t, aAddr)); !strings.HasSuffix(got, "\r\n") {
		t.Errorf("a's old address answered %q, want daytime", got)
	}
	c := dial(t, bAddr)
	echoOnce(t, c, bufio.NewReader(c), "swapped")
}

// TestReloadNetworkChange moves a service from tcp to tcp4 on the same
// port: the new socket can only be bound once the old one is closed, and
// apply does that within the same reload.
func TestReloadNetworkChange(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	r := start(t, cfgOf(builtinSvc("n", addr, "echo")), 0)
	r.addr(t, "n", 0)
	next := builtinSvc("n", addr, "daytime")
	next.Listen.Network = "tcp4"
	st := r.reload(t, cfgOf(next))
	if want := "READY=1\nSTATUS=1 services running, 0 handlers"; st != want {
		t.Errorf("state after the reload = %q, want %q (nothing pending)", st, want)
	}
	if got := r.addr(t, "n", 1); got != addr {
		t.Errorf("rebound to %s, want %s", got, addr)
	}
	if got := readAll(t, dial(t, addr)); !strings.HasSuffix(got, "\r\n") {
		t.Errorf("after the move the port answered %q, want daytime", got)
	}
}

// TestReloadWaitToNowait turns wait off for a port while its wait-mode
// handler runs. The handler's blocking mode stays on the shared socket;
// the new nowait Service must not be stuck in a blocking accept4, or the
// shutdown that follows never ends (Close waits for the accept).
func TestReloadWaitToNowait(t *testing.T) {
	w := execSvc("w", "127.0.0.1:0", "/bin/sh", "-c", "exec sleep 2")
	w.Wait = true
	r := start(t, cfgOf(w), 0)
	addr := r.addr(t, "w", 0)
	c1 := dial(t, addr)
	r.log.Wait(t, match("start", "service", "w"))
	r.reload(t, cfgOf(execSvc("w", "127.0.0.1:0", "/bin/echo", "nowait")))
	if got := readAll(t, c1); got != "nowait\n" {
		t.Errorf("client got %q, want the nowait handler's answer", got)
	}
	r.log.WaitN(t, 2, match("start", "service", "w"))

	r.cancel()
	select {
	case err := <-r.done:
		r.done <- err
		if err != nil {
			t.Errorf("Run = %v, want nil", err)
		}
	case <-time.After(5 * time.Second):
		t.Errorf("shutdown still running 5s after cancel: Serve is blocked in accept4 on a socket left blocking by the wait handler, and Socket.Close waits for it")
		// One more client unblocks accept4 so that the test can end.
		dial(t, addr)
		select {
		case err := <-r.done:
			r.done <- err
		case <-time.After(testTimeout):
			t.Fatalf("Run still running after the unblocking connection")
		}
	}
}

// TestRunWithoutNotify checks that Notify may be nil (not under systemd).
func TestRunWithoutNotify(t *testing.T) {
	rec := testkit.NewRecorder(t)
	s := supervisor.New(cfgOf(builtinSvc("echo", "127.0.0.1:0", "echo")), supervisor.Options{
		Load:    func() (*config.Config, error) { return nil, errors.New("unused") },
		Log:     rec.Logger(),
		Runtime: &services.Runtime{Procs: newProcs(t)},
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	addr := rec.Wait(t, match("listening", "service", "echo")).Attrs["addr"]
	rec.Wait(t, match("ready"))
	c := dial(t, addr)
	echoOnce(t, c, bufio.NewReader(c), "no systemd")
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run = %v, want nil", err)
		}
	case <-time.After(testTimeout):
		t.Fatalf("Run still running after cancel")
	}
}

// holdReload starts a reload and returns once its Load is under way;
// the reload goes on when the returned function is called.
func (r *run) holdReload(t *testing.T) (release func()) {
	t.Helper()
	gate := make(chan struct{})
	r.gate.Store(&gate)
	r.sup.Reload()
	select {
	case <-r.entered:
	case <-time.After(testTimeout):
		t.Fatal("Load not called after Reload")
	}
	var once sync.Once
	release = func() {
		once.Do(func() {
			r.gate.Store(nil)
			close(gate)
		})
	}
	t.Cleanup(release)
	return release
}

// TestReloadCoalesces checks that reload requests made while a reload is
// under way cause exactly one more reload, not one each.
func TestReloadCoalesces(t *testing.T) {
	cfg := cfgOf(builtinSvc("echo", "127.0.0.1:0", "echo"))
	r := start(t, cfg, 0)
	r.next.Store(cfg)
	release := r.holdReload(t)
	for range 50 {
		r.sup.Reload()
	}
	n := r.notes.Count(prefix("READY=1"))
	release()
	r.notes.WaitN(t, n+2, prefix("READY=1"))
	// Whatever is still to come would be a third reload: a reload
	// request of our own after it shows whether one was queued.
	r.reload(t, cfg)
	if got := r.loads.Load(); got != 3 {
		t.Errorf("Load called %d times for 1 + 50 coalesced requests and one more, want 3", got)
	}
}

// TestStopBeatsReloads checks that a stop requested during a reload,
// with more reloads requested after it, ends Run as soon as the reload
// under way ends: the queued request runs no further reload.
func TestStopBeatsReloads(t *testing.T) {
	cfg := cfgOf(builtinSvc("echo", "127.0.0.1:0", "echo"))
	r := start(t, cfg, 0)
	r.next.Store(cfg)
	release := r.holdReload(t)
	r.sup.Reload()
	r.cancel()
	r.sup.Reload()
	release()
	select {
	case err := <-r.done:
		r.done <- err
		if err != nil {
			t.Fatalf("Run after cancel = %v, want nil", err)
		}
	case <-time.After(testTimeout):
		t.Fatal("Run still running after cancel")
	}
	if got := r.loads.Load(); got != 1 {
		t.Errorf("Load called %d times, want 1: a stop must not wait behind queued reloads", got)
	}
}

// TestReloadWarnsClosing checks that a reload that closes services names
// them in a config_warning, and says so when nothing is left.
func TestReloadWarnsClosing(t *testing.T) {
	a := builtinSvc("a", "127.0.0.1:0", "echo")
	b := builtinSvc("b", "127.0.0.1:0", "daytime")
	b.Listen = key("127.0.0.2:0")
	r := start(t, cfgOf(a, b), 0)
	r.reload(t, cfgOf(a))
	w := r.log.Wait(t, match("config_warning"))
	if w.Attrs["closing"] != "b" || !strings.Contains(w.Attrs["warning"], "closes 1 service(s): b") {
		t.Errorf("warning %v, want one naming service b", w)
	}
	r.reload(t, cfgOf())
	ws := r.log.WaitN(t, 2, match("config_warning"))
	if w := ws[1]; w.Attrs["closing"] != "a" || !strings.Contains(w.Attrs["warning"], "no enabled services") {
		t.Errorf("warning %v, want one naming service a and saying nothing is left", w)
	}
	if n := r.log.Count(match("config_warning")); n != 2 {
		t.Errorf("%d config_warning lines, want 2", n)
	}
}

// TestReloadRollback makes one Listener refuse its new settings in the
// middle of a reload (a unix socket's new socket_mode cannot be applied:
// its file was replaced by a symlink). The reload is undone: the service
// updated before it gets its old settings back, the service bound for it
// is closed again, reload_failed names the service, and the running
// configuration stays the one to diff against.
func TestReloadRollback(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "u.sock")
	u := &config.Service{Name: "u", Listen: config.ListenKey{Network: "unix", Address: path}, Builtin: "echo",
		SocketMode: 0o600, Limits: config.Limits{Instances: 16}}
	a := builtinSvc("a", "127.0.0.1:0", "echo")
	r := start(t, cfgOf(a, u), 0)
	aAddr := r.addr(t, "a", 0)
	r.addr(t, "u", 0)
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(dir, "elsewhere"), path); err != nil {
		t.Fatal(err)
	}

	u2 := *u
	u2.SocketMode = 0o660
	st := r.reload(t, cfgOf(builtinSvc("a", "127.0.0.1:0", "daytime"), builtinSvc("n", "127.0.0.2:0", "echo"), &u2))
	if want := "READY=1\nSTATUS=2 services running, 0 handlers (last reload failed)"; st != want {
		t.Errorf("state after the rolled back reload = %q, want %q", st, want)
	}
	if l := r.log.Wait(t, match("reload_failed", "service", "u")); !strings.Contains(l.Attrs["err"], "socket mode") ||
		l.Attrs["keeping"] != "the running configuration" || l.Level != slog.LevelError {
		t.Errorf("failure line %v, want ERROR naming service u and the socket mode", l)
	}
	if n := r.log.Count(match("reloaded")); n != 0 {
		t.Errorf("%d reloaded lines after a rolled back reload", n)
	}
	// a was updated to daytime and back: it echoes.
	c := dial(t, aAddr)
	echoOnce(t, c, bufio.NewReader(c), "still echo")
	// n was bound for the reload and closed again.
	nAddr := r.addr(t, "n", 0)
	r.log.Wait(t, match("closed", "listen", "tcp/127.0.0.2:0"))
	refused(t, nAddr)

	// The running configuration is still the old one: reloading it
	// changes nothing.
	st = r.reload(t, cfgOf(a, u))
	if want := "READY=1\nSTATUS=2 services running, 0 handlers"; st != want {
		t.Errorf("state after reloading the running configuration = %q, want %q", st, want)
	}
	if n := r.log.Count(match("listening", "service", "a")); n != 1 {
		t.Errorf("a bound %d times, want once", n)
	}
	echoOnce(t, c, bufio.NewReader(c), "echo after all")
}
