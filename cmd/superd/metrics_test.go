package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/superd/superd/internal/metrics/metricstest"
	"github.com/superd/superd/internal/testkit"
)

// TestCheckMetricsGolden checks what superd check says of [superd]
// metrics: the address it will serve on, and a refusal naming the key
// for a remote address without metrics_allow_remote.
func TestCheckMetricsGolden(t *testing.T) {
	for _, name := range []string{"metrics", "metrics-allowed"} {
		out, errOut, status := superdCmd(t, "check", "--config", "testdata/check/"+name+".toml")
		if status != 0 {
			t.Fatalf("check %s: exit %d: %s", name, status, errOut)
		}
		golden(t, "check/"+name+".out", out)
	}
	out, errOut, status := superdCmd(t, "check", "--config", "testdata/check/metrics-remote.toml")
	if status != 1 || out != "" {
		t.Fatalf("check of a remote metrics address: exit %d, stdout %q; want 1 and nothing", status, out)
	}
	golden(t, "check/metrics-remote.out", errOut)
}

// TestStatusGolden checks superd status's table for a fixture scrape,
// read as superd status reads one.
func TestStatusGolden(t *testing.T) {
	f, err := os.Open("testdata/status/fixture.prom")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	families, err := p.TextToMetricFamilies(f)
	if err != nil {
		t.Fatalf("parsing the fixture: %v", err)
	}
	st, err := statusOf(families)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	printStatus(&b, st, time.Unix(1767323045, 0))
	golden(t, "status/fixture.out", b.String())
}

// TestStatusAge checks the LAST-EXIT column's ages.
func TestStatusAge(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	for _, tt := range []struct {
		ago  time.Duration
		want string
	}{
		{0, "0s ago"}, {3*time.Second + 900*time.Millisecond, "3s ago"}, {59 * time.Second, "59s ago"},
		{61 * time.Second, "1m1s ago"}, {2*time.Hour + 5*time.Minute + 9*time.Second, "2h5m ago"},
		{75 * time.Hour, "3d3h ago"}, {-time.Second, "0s ago"},
	} {
		ts := float64(now.Add(-tt.ago).UnixNano()) / 1e9
		if got := age(ts, now); got != tt.want {
			t.Errorf("age %v before now = %q, want %q", tt.ago, got, tt.want)
		}
	}
	if got := age(0, now); got != "-" {
		t.Errorf("age of no exit = %q, want -", got)
	}
}

// TestStatusUnreachable checks that superd status says what to check
// when nothing serves the metrics, and exits 1.
func TestStatusUnreachable(t *testing.T) {
	port := testkit.FreePort(t, "tcp")
	addr := "127.0.0.1:" + strconv.Itoa(port)
	out, errOut, status := superdCmd(t, "status", "--metrics", addr)
	if status != 1 || out != "" {
		t.Errorf("status with nothing at %s: exit %d, stdout %q; want 1 and nothing", addr, status, out)
	}
	want := fmt.Sprintf("superd status: cannot reach http://%s/metrics: dial tcp %s: connect: connection refused\nIs superd running with [superd] metrics = %q?\n", addr, addr, addr)
	if errOut != want {
		t.Errorf("stderr:\n%s\nwant:\n%s", errOut, want)
	}
}

// dialSource connects to addr from the loopback address src, for the
// whole test.
func dialSource(t *testing.T, src, addr string) net.Conn {
	t.Helper()
	c, err := dialFrom(src, "tcp", addr, testkit.Timeout)
	if err != nil {
		t.Fatalf("dial %s from %s: %v", addr, src, err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(testkit.Timeout))
	return c
}

// metricsDaemon is a superd started with metrics on a port of its
// choosing, and that address.
type metricsDaemon struct {
	*superdProc
	addr string
}

// startMetricsDaemon starts superd on config, which must set [superd]
// metrics = "127.0.0.1:0", and learns the port from its log.
func startMetricsDaemon(t *testing.T, config string) *metricsDaemon {
	t.Helper()
	d := startDaemon(t, config)
	m := d.waitLog(`event=metrics_listening addr=(127\.0\.0\.1:\d+) path=/metrics`)
	return &metricsDaemon{d, m[1]}
}

// get fetches path from the metrics server.
func (d *metricsDaemon) get(path string) (status int, body string) {
	d.t.Helper()
	c := &http.Client{Timeout: testkit.Timeout}
	resp, err := c.Get("http://" + d.addr + path)
	if err != nil {
		d.t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		d.t.Fatalf("GET %s: reading: %v", path, err)
	}
	return resp.StatusCode, string(b)
}

// scrape fetches /metrics and parses the whole exposition with the
// Prometheus text parser: an error in any line fails the test.
func (d *metricsDaemon) scrape() metricstest.Families {
	d.t.Helper()
	status, body := d.get("/metrics")
	if status != http.StatusOK {
		d.t.Fatalf("GET /metrics: %d %s", status, body)
	}
	return metricstest.Parse(d.t, strings.NewReader(body))
}

// waitValue scrapes until the series has want, bounded by
// testkit.Timeout.
func (d *metricsDaemon) waitValue(want float64, name string, labels ...string) {
	d.t.Helper()
	var got float64
	testkit.WaitFor(d.t, fmt.Sprintf("%s%v = %v", name, labels, want), func() bool {
		f := d.scrape()
		got = 0
		if f.Has(name, labels...) {
			got = f.Value(d.t, name, labels...)
		}
		return got == want
	})
}

// metricsConfig is the configuration of TestMetricsExact: a nowait
// service whose handler ends as the client's line says, with per_source
// and only_from; a handler that outlives its timeout; built-in echo
// over TCP and UDP; a wait-mode handler.
const metricsConfig = `
[superd]
metrics = "127.0.0.1:0"
shutdown_grace = "2s"

[defaults]
address = "127.0.0.1"
user = "root"

[services.mix]
port = %d
path = "/bin/sh"
args = ["-c", 'read x; case "$x" in ok) exit 0;; fail) exit 3;; sig) kill -KILL $$;; esac; exit 9']
per_source = 1
only_from = ["127.0.0.1/32"]

[services.slow]
port = %d
path = "%%HELPER%%"
args = ["sleep", "1h"]
timeout = "100ms"

[services.echo]
builtin = "echo"
port = %d

[services.echo-udp]
builtin = "echo"
protocol = "udp"
port = %d

[services.waiter]
protocol = "udp"
port = %d
wait = true
path = "%%HELPER%%"
args = ["udp-reply"]
`

// TestMetricsExact makes a known mix of connections against the real
// binary and checks every counter exactly: admitted connections whose
// handlers exit 0, exit 3, die of SIGKILL and outlive their timeout,
// refusals by per_source and by only_from, built-in connections and
// datagrams, wait-mode handlers. The whole exposition must parse. Then a
// reload removes one service and keeps the others: the removed one's
// series disappear, the kept ones' counts survive. superd status shows
// the numbers.
func TestMetricsExact(t *testing.T) {
	mix, slow, echo := testkit.FreePort(t, "tcp"), testkit.FreePort(t, "tcp"), testkit.FreePort(t, "tcp")
	echoUDP, waiter := testkit.FreePort(t, "udp"), testkit.FreePort(t, "udp")
	cfg := fmt.Sprintf(metricsConfig, mix, slow, echo, echoUDP, waiter)
	d := startMetricsDaemon(t, cfg)
	mixAddr := addrOf(mix)

	// mix: one handler held, then two per_source refusals and one
	// only_from refusal, then the other ends one after the other.
	held := dialSource(t, "127.0.0.1", mixAddr)
	d.waitLog(`service=mix event=start `)
	for _, src := range []string{"127.0.0.1", "127.0.0.1", "127.0.0.2"} {
		if got := testkit.ReadAll(t, dialSource(t, src, mixAddr)); got != "" {
			t.Fatalf("refused client from %s got %q", src, got)
		}
	}
	fmt.Fprintln(held, "ok")
	testkit.ReadAll(t, held)
	d.waitLogN(`service=mix event=exit `, 1)
	for i, line := range []string{"fail", "sig", "other"} {
		c := dialSource(t, "127.0.0.1", mixAddr)
		fmt.Fprintln(c, line)
		testkit.ReadAll(t, c)
		d.waitLogN(`service=mix event=exit `, i+2)
	}
	testkit.ReadAll(t, dial(t, slow))
	d.waitLog(`service=slow event=exit `)
	for i := range 3 {
		if got := roundTrip(t, echo, fmt.Sprint("e", i)); got != fmt.Sprint("e", i) {
			t.Fatalf("echo answered %q", got)
		}
	}
	u := testkit.DialNetwork(t, "udp", addrOf(echoUDP))
	w := testkit.DialNetwork(t, "udp", addrOf(waiter))
	buf := make([]byte, 512)
	for i := range 2 {
		for _, c := range []net.Conn{u, w} {
			fmt.Fprint(c, "d", i)
			if _, err := c.Read(buf); err != nil {
				t.Fatalf("reply %d from %s: %v", i, c.RemoteAddr(), err)
			}
		}
		d.waitLogN(`service=waiter event=exit `, i+1)
	}
	// A built-in connection counts as running until its goroutine ends.
	d.waitValue(0, "superd_handlers_running", "service", "echo")

	const (
		acc  = "superd_connections_accepted_total"
		ref  = "superd_connections_refused_total"
		exit = "superd_handler_exits_total"
		run  = "superd_handlers_running"
	)
	want := []struct {
		name   string
		labels []string
		value  float64
	}{
		{acc, []string{"service", "mix"}, 7},
		{ref, []string{"service", "mix", "reason", "per_source"}, 2},
		{ref, []string{"service", "mix", "reason", "access"}, 1},
		{ref, []string{"service", "mix", "reason", "start_failed"}, 0},
		{exit, []string{"service", "mix", "outcome", "success"}, 1},
		{exit, []string{"service", "mix", "outcome", "failure"}, 2},
		{exit, []string{"service", "mix", "outcome", "signal"}, 1},
		{exit, []string{"service", "mix", "outcome", "timeout"}, 0},
		{run, []string{"service", "mix"}, 0},
		{"superd_handler_start_seconds", []string{"service", "mix"}, 4},
		{"superd_handler_duration_seconds", []string{"service", "mix"}, 4},
		{acc, []string{"service", "slow"}, 1},
		{exit, []string{"service", "slow", "outcome", "timeout"}, 1},
		{exit, []string{"service", "slow", "outcome", "signal"}, 0},
		{acc, []string{"service", "echo"}, 3},
		{run, []string{"service", "echo"}, 0},
		{"superd_datagrams_total", []string{"service", "echo-udp"}, 2},
		{acc, []string{"service", "waiter"}, 0},
		{exit, []string{"service", "waiter", "outcome", "success"}, 2},
		{"superd_handler_start_seconds", []string{"service", "waiter"}, 2},
		{"superd_admission_waits_total", []string{"service", "mix", "reason", "instances"}, 0},
		{"superd_services", nil, 5},
		{"superd_service_info", []string{"service", "waiter", "listen", "udp/" + addrOf(waiter), "mode", "wait"}, 1},
		{"superd_reloads_total", []string{"result", "success"}, 0},
		{"superd_reloads_total", []string{"result", "failure"}, 0},
		{"superd_build_info", []string{"goversion", runtime.Version()}, 1},
	}
	f := d.scrape()
	for _, s := range want {
		if got := f.Value(t, s.name, s.labels...); got != s.value {
			t.Errorf("%s%v = %v, want %v", s.name, s.labels, got, s.value)
		}
	}
	for _, std := range []string{"go_goroutines", "process_open_fds", "process_resident_memory_bytes"} {
		if f[std] == nil {
			t.Errorf("no %s: the Go and process collectors are missing", std)
		}
	}
	for name, mf := range f {
		if mf.GetHelp() == "" || len(mf.GetMetric()) == 0 {
			t.Errorf("family %s: help %q, %d series; want a help text and series", name, mf.GetHelp(), len(mf.GetMetric()))
		}
	}
	if status, _ := d.get("/"); status != http.StatusNotFound {
		t.Errorf("GET / answered %d, want 404: only /metrics is served", status)
	}

	// superd status against the live daemon.
	out, errOut, status := superdCmd(t, "status", "--metrics", d.addr)
	if status != 0 {
		t.Fatalf("superd status: exit %d: %s", status, errOut)
	}
	rows := regexp.MustCompile(`(?m)^mix +tcp/127\.0\.0\.1:\d+ +nowait +0 +7 +3 +\d+s ago$|^waiter +udp/\S+ +wait +0 +- +0 +\d+s ago$|^echo +tcp/\S+ +builtin +0 +3 +0 +-$`)
	if n := len(rows.FindAllString(out, -1)); n != 3 || !strings.HasPrefix(out, "superd ") {
		t.Errorf("superd status output lacks the rows of mix, waiter or echo (%d found):\n%s", n, out)
	}

	// Reload without echo-udp: its series go, the others' counts stay.
	d.writeConfig(strings.Replace(cfg, "[services.echo-udp]", "[services.echo-udp]\ndisabled = true", 1))
	d.cmd.Process.Signal(syscall.SIGHUP)
	d.waitLog(`event=reloaded .*removed=echo-udp`)
	f = d.scrape()
	if n := f.Series("service", "echo-udp"); n != 0 {
		t.Errorf("%d series of the removed service echo-udp after the reload, want none", n)
	}
	for _, s := range want[:10] {
		if got := f.Value(t, s.name, s.labels...); got != s.value {
			t.Errorf("after the reload %s%v = %v, want %v (kept)", s.name, s.labels, got, s.value)
		}
	}
	if n, ok := f.Value(t, "superd_services"), f.Value(t, "superd_reloads_total", "result", "success"); n != 4 || ok != 1 {
		t.Errorf("after the reload superd_services, reloads{success} = %v, %v; want 4, 1", n, ok)
	}
}

// TestMetricsBindFails checks that a taken metrics address stops superd
// at start, naming the address, before READY.
func TestMetricsBindFails(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	d := newDaemon(t, fmt.Sprintf("[superd]\nmetrics = %q\n[services.echo]\nbuiltin = \"echo\"\naddress = \"127.0.0.1\"\nport = %d\n",
		ln.Addr().String(), testkit.FreePort(t, "tcp")))
	d.start()
	<-d.exited
	want := fmt.Sprintf("superd: cannot serve the metrics on %s ([superd] metrics): listen tcp %s: bind: address already in use", ln.Addr(), ln.Addr())
	if !strings.Contains(d.Logs(), want) || d.waitErr == nil {
		t.Errorf("superd exited with %v, log:\n%s\nwant an error exit and %q", d.waitErr, d.Logs(), want)
	}
	d.notesMu.Lock()
	defer d.notesMu.Unlock()
	for _, n := range d.notes {
		if strings.Contains(n, "READY=1") {
			t.Errorf("superd sent READY=1 with its metrics address taken")
		}
	}
}
