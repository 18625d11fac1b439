package services

import (
	"bufio"
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/superd/superd/config"
	"github.com/superd/superd/internal/metrics"
	"github.com/superd/superd/internal/metrics/metricstest"
	"github.com/superd/superd/internal/testkit"
)

// withMetrics gives e's Runtime a metrics Registry and returns it.
func withMetrics(e *testEnv) *metrics.Registry {
	reg := metrics.New("test", "test")
	e.rt.Metrics = reg
	return reg
}

// series is one series and the value it should have: a metric name and
// label pairs as metricstest.Families.Value takes them.
type series struct {
	name   string
	labels []string
	want   float64
}

// checkSeries checks the value of every series in want.
func checkSeries(t *testing.T, reg *metrics.Registry, want []series) {
	t.Helper()
	f := metricstest.Gather(t, reg.Gatherer())
	for _, s := range want {
		if got := f.Value(t, s.name, s.labels...); got != s.want {
			t.Errorf("%s%v = %v, want %v", s.name, s.labels, got, s.want)
		}
	}
}

// svcSeries is a series of service svc with more label pairs.
func svcSeries(name, svc string, want float64, labels ...string) series {
	return series{name, append([]string{"service", svc}, labels...), want}
}

// TestMetricsNowait counts a known mix of connections on nowait
// services: admitted ones whose handlers exit 0, exit 3, die of SIGKILL
// and outlive their timeout, refusals by per_source and only_from, and
// a handler that cannot start (directly and through the trampoline).
func TestMetricsNowait(t *testing.T) {
	e := newEnv(t)
	reg := withMetrics(e)
	// The client's line picks the handler's end.
	svc := execService("mix", tcpKey, "/bin/sh", "-c",
		`read x; case "$x" in ok) exit 0;; fail) exit 3;; sig) kill -KILL $$;; esac; exit 9`)
	svc.Limits.PerSource = 1
	svc.Access.OnlyFrom = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}
	l := e.listen(t, svc)
	addr := l.Addr().String()

	held := dialFrom(t, "127.0.0.1", addr)
	e.rec.Wait(t, match("start", "service", "mix"))
	expectEOF(t, dialFrom(t, "127.0.0.1", addr)) // per_source
	expectEOF(t, dialFrom(t, "127.0.0.1", addr)) // per_source
	expectEOF(t, dialFrom(t, "127.0.0.2", addr)) // only_from
	fmt.Fprintln(held, "ok")
	expectEOF(t, held)
	e.rec.WaitN(t, 1, match("exit", "service", "mix"))
	for i, line := range []string{"fail", "sig"} {
		c := dialFrom(t, "127.0.0.1", addr)
		fmt.Fprintln(c, line)
		expectEOF(t, c)
		e.rec.WaitN(t, i+2, match("exit", "service", "mix"))
	}

	slow := helperService(t, "slow", config.ListenKey{Network: "tcp", Address: "127.0.0.1:0"}, "readline")
	slow.Limits.Timeout = 50 * time.Millisecond
	ls := e.listen(t, slow)
	expectEOF(t, dial(t, "tcp", ls.Addr().String()))
	e.rec.Wait(t, match("exit", "service", "slow"))

	broken := e.listen(t, execService("broken", tcpKey, "/nonexistent/handler"))
	expectEOF(t, dial(t, "tcp", broken.Addr().String()))
	e.rec.Wait(t, match("start_failed", "service", "broken"))
	trampoline := execService("confined-broken", tcpKey, "/nonexistent/handler")
	trampoline.Exec.Umask = 0o022 // through the trampoline, which reports the failure
	lt := e.listen(t, trampoline)
	expectEOF(t, dial(t, "tcp", lt.Addr().String()))
	e.rec.Wait(t, match("exit", "service", "confined-broken"))

	const (
		acc  = "superd_connections_accepted_total"
		ref  = "superd_connections_refused_total"
		exit = "superd_handler_exits_total"
		run  = "superd_handlers_running"
		st   = "superd_handler_start_seconds"
		dur  = "superd_handler_duration_seconds"
	)
	checkSeries(t, reg, []series{
		svcSeries(acc, "mix", 6),
		svcSeries(ref, "mix", 2, "reason", "per_source"),
		svcSeries(ref, "mix", 1, "reason", "access"),
		svcSeries(ref, "mix", 0, "reason", "start_failed"),
		svcSeries(exit, "mix", 1, "outcome", "success"),
		svcSeries(exit, "mix", 1, "outcome", "failure"),
		svcSeries(exit, "mix", 1, "outcome", "signal"),
		svcSeries(exit, "mix", 0, "outcome", "timeout"),
		svcSeries(run, "mix", 0),
		svcSeries(st, "mix", 3),
		svcSeries(dur, "mix", 3),

		svcSeries(acc, "slow", 1),
		svcSeries(exit, "slow", 1, "outcome", "timeout"),
		svcSeries(exit, "slow", 0, "outcome", "signal"),
		svcSeries(run, "slow", 0),

		svcSeries(acc, "broken", 1),
		svcSeries(ref, "broken", 1, "reason", "start_failed"),
		svcSeries(run, "broken", 0),
		svcSeries(st, "broken", 0),

		// The trampoline ran, but never the handler: a failed start, no
		// exit.
		svcSeries(acc, "confined-broken", 1),
		svcSeries(ref, "confined-broken", 1, "reason", "start_failed"),
		svcSeries(exit, "confined-broken", 0, "outcome", "failure"),
		svcSeries(run, "confined-broken", 0),
		svcSeries(dur, "confined-broken", 0),
	})
	f := metricstest.Gather(t, reg.Gatherer())
	if ts := f.Value(t, "superd_handler_last_exit_timestamp_seconds", "service", "mix"); ts < float64(time.Now().Add(-time.Hour).Unix()) {
		t.Errorf("last exit timestamp of mix = %v, want about now", ts)
	}
	if ts := f.Value(t, "superd_handler_last_exit_timestamp_seconds", "service", "broken"); ts != 0 {
		t.Errorf("last exit timestamp of a service without exits = %v, want 0", ts)
	}
}

// TestMetricsInstancesWait checks that the accept loop counts each stop
// for want of an instances slot: with instances = 1, every admitted
// client whose handler still runs makes the loop wait once.
func TestMetricsInstancesWait(t *testing.T) {
	e := newEnv(t)
	reg := withMetrics(e)
	svc := helperService(t, "one", tcpKey, "readline")
	svc.Limits.Instances = 1
	l := e.listen(t, svc)
	waits := func() float64 {
		return metricstest.Gather(t, reg.Gatherer()).Value(t, "superd_admission_waits_total", "service", "one", "reason", "instances")
	}
	first := dial(t, "tcp", l.Addr().String())
	testkit.WaitFor(t, "a wait for a slot", func() bool { return waits() == 1 })
	second := dial(t, "tcp", l.Addr().String())
	fmt.Fprintln(first, "a")
	readAll(t, first)
	// The second client is admitted once the first handler is gone, and
	// the loop stops again while its handler runs.
	e.rec.WaitN(t, 2, match("start"))
	testkit.WaitFor(t, "a second wait for a slot", func() bool { return waits() == 2 })
	fmt.Fprintln(second, "b")
	readAll(t, second)
	e.rec.WaitN(t, 2, match("exit"))
	checkSeries(t, reg, []series{
		svcSeries("superd_admission_waits_total", "one", 2, "reason", "instances"),
		svcSeries("superd_admission_waits_total", "one", 0, "reason", "rate"),
		svcSeries("superd_connections_accepted_total", "one", 2),
	})
}

// TestMetricsBuiltins counts a stream built-in's connections (running
// while open) and a datagram built-in's datagrams, refused ones
// included.
func TestMetricsBuiltins(t *testing.T) {
	e := newEnv(t)
	reg := withMetrics(e)
	ls := e.listen(t, &config.Service{Name: "echo", Listen: tcpKey, Builtin: "echo", Limits: config.Limits{Instances: 4}})
	c := dial(t, "tcp", ls.Addr().String())
	fmt.Fprintln(c, "ping")
	readLine(t, bufio.NewReader(c))
	checkSeries(t, reg, []series{svcSeries("superd_handlers_running", "echo", 1), svcSeries("superd_connections_accepted_total", "echo", 1)})
	c.Close()
	testkit.WaitFor(t, "the echo connection's end", func() bool {
		return metricstest.Gather(t, reg.Gatherer()).Value(t, "superd_handlers_running", "service", "echo") == 0
	})

	udp := &config.Service{Name: "echo-udp", Listen: udpKey, Builtin: "echo"}
	udp.Access.NoAccess = []netip.Prefix{netip.MustParsePrefix("127.0.0.2/32")}
	lu := e.listen(t, udp)
	denied, err := net.DialUDP("udp", &net.UDPAddr{IP: net.ParseIP("127.0.0.2")}, lu.Addr().(*net.UDPAddr))
	if err != nil {
		t.Fatal(err)
	}
	defer denied.Close()
	if _, err := denied.Write([]byte("denied")); err != nil {
		t.Fatal(err)
	}
	// Datagrams are answered in order: once the first answer is in, the
	// denied datagram has been judged.
	u := dial(t, "udp", lu.Addr().String())
	for i := range 3 {
		if got := udpExchange(t, u, fmt.Sprint(i)); got != fmt.Sprint(i) {
			t.Fatalf("echo-udp answered %q to %d", got, i)
		}
	}
	checkSeries(t, reg, []series{
		svcSeries("superd_datagrams_total", "echo-udp", 4),
		svcSeries("superd_connections_refused_total", "echo-udp", 1, "reason", "access"),
		svcSeries("superd_datagrams_total", "echo", 0),
	})
}

// TestMetricsWait counts wait-mode handlers: starts and exits, no
// accepted connections (superd never sees them).
func TestMetricsWait(t *testing.T) {
	e := newEnv(t)
	reg := withMetrics(e)
	svc := helperService(t, "dgram", udpKey, "udp-reply")
	svc.Wait = true
	l := e.listen(t, svc)
	c := dial(t, "udp", l.Addr().String())
	for i := range 2 {
		udpExchange(t, c, fmt.Sprint(i))
		e.rec.WaitN(t, i+1, match("exit", "service", "dgram"))
	}
	checkSeries(t, reg, []series{
		svcSeries("superd_handler_exits_total", "dgram", 2, "outcome", "success"),
		svcSeries("superd_handler_start_seconds", "dgram", 2),
		svcSeries("superd_handlers_running", "dgram", 0),
		svcSeries("superd_connections_accepted_total", "dgram", 0),
	})
}

// TestMetricsRename checks that an Update that renames a service counts
// from then on under the new name, while the old name keeps what it
// counted (the supervisor drops it), and that one keeping the name keeps
// counting on the same series.
func TestMetricsRename(t *testing.T) {
	e := newEnv(t)
	reg := withMetrics(e)
	l := e.listen(t, execService("old", tcpKey, "/bin/echo", "x"))
	readAll(t, dial(t, "tcp", l.Addr().String()))
	update(t, l, execService("old", tcpKey, "/bin/echo", "y"))
	readAll(t, dial(t, "tcp", l.Addr().String()))
	update(t, l, execService("new", tcpKey, "/bin/echo", "z"))
	readAll(t, dial(t, "tcp", l.Addr().String()))
	e.rec.WaitN(t, 3, match("exit"))
	checkSeries(t, reg, []series{
		svcSeries("superd_connections_accepted_total", "old", 2),
		svcSeries("superd_connections_accepted_total", "new", 1),
		svcSeries("superd_handler_exits_total", "old", 2, "outcome", "success"),
		svcSeries("superd_handler_exits_total", "new", 1, "outcome", "success"),
	})
}
