package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"slices"
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

// Scenarios 8 and 9 of docs/reliability.md: hostile connections, a
// looping wait service, and the handler's confinement and the
// configuration permission checks (root only).

// Scenario 8: connections reset right after connect, connections that
// never send (held open until the end), and connections closed without
// a byte, mixed with well-behaved clients. superd survives, serves the
// good clients, and leaks nothing.
func TestHostileConnections(t *testing.T) {
	skipIfShort(t, "scenario 8 of docs/reliability.md, a flood of 3000 hostile connections")
	scale := relScale(t)
	each := 1000 * scale
	const workers = 32
	needFDs(t, each+workers)
	pCat, pEcho := testkit.FreePort(t, "tcp"), testkit.FreePort(t, "tcp")
	d := startDaemon(t, fmt.Sprintf(`
[services.cat]
port = %d
address = "127.0.0.1"
timeout = "1s"
user = "root"
path = "/bin/cat"

[services.echo]
builtin = "echo"
port = %d
address = "127.0.0.1"
`, pCat, pEcho))
	baseFDs, baseRSS := baseline(t, d, func() {
		if got := roundTrip(t, pCat, "warm"); got != "warm" {
			t.Fatalf("cat = %q", got)
		}
	})

	// Every tenth connection is a good client; the others cycle through
	// the three hostile kinds.
	var plan []string
	for i := range 3 * each {
		if i%9 == 8 {
			plan = append(plan, "good")
		}
		plan = append(plan, []string{"rst", "halfopen", "zerobyte"}[i%3])
	}
	var res outcomes
	var heldMu sync.Mutex
	var held []net.Conn
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	var goodMu sync.Mutex
	var good latency
	within := time.Duration(60*scale) * time.Second
	var next atomic.Int64
	var wg sync.WaitGroup
	stopProbe := probeEcho(addrOf(pEcho))
	start := time.Now()
	for range workers {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= len(plan) {
					return
				}
				kind := plan[i]
				if kind == "good" {
					began := time.Now()
					got, err := ask(addrOf(pCat), "ping\n", within)
					if err == nil && got != "ping\n" {
						err = fmt.Errorf("cat said %q", got)
					}
					if err != nil {
						res.add("good-"+errKind(err), err)
						continue
					}
					res.add("ok-good", nil)
					goodMu.Lock()
					good.d = append(good.d, time.Since(began))
					goodMu.Unlock()
					continue
				}
				c, err := net.DialTimeout("tcp", addrOf(pCat), within)
				if err != nil {
					res.add(kind+"-dial-"+errKind(err), err)
					continue
				}
				switch kind {
				case "rst":
					c.(*net.TCPConn).SetLinger(0)
					c.Close()
				case "halfopen":
					heldMu.Lock()
					held = append(held, c)
					heldMu.Unlock()
				case "zerobyte":
					c.Close()
				}
				res.add("ok-"+kind, nil)
			}
		})
	}
	wg.Wait()
	took := time.Since(start)
	probe, probeRes := stopProbe()
	heldN := len(held)
	for _, c := range held {
		c.Close()
	}
	held = nil
	slices.Sort(good.d)

	select {
	case <-d.exited:
		t.Fatalf("superd exited: %v", d.waitErr)
	default:
	}
	if got := roundTrip(t, pCat, "after\n"); got != "after\n" {
		t.Errorf("cat after the storm: %q", got)
	}
	settle(t, d, baseFDs, time.Duration(30*scale)*time.Second)
	waitExitsLogged(t, d, "cat")
	rss, peak := memKiB(t, d.pid())
	figure(t, "hostile.connections", len(plan))
	for _, k := range []string{"rst", "halfopen", "zerobyte"} {
		figure(t, "hostile."+k, res.get("ok-"+k))
	}
	figure(t, "hostile.halfopen_held_at_end", heldN)
	figure(t, "hostile.good_clients", res.get("ok-good")+countPrefix(&res, "good-"))
	figure(t, "hostile.good_served", res.get("ok-good"))
	figure(t, "hostile.good_wait_p50", good.pct(50))
	figure(t, "hostile.good_wait_p99", good.pct(99))
	figure(t, "hostile.good_wait_max", good.pct(100))
	figure(t, "hostile.failed", res.failed())
	figure(t, "hostile.duration", took)
	figure(t, "hostile.handlers_started", d.countLog(`service=cat event=start `))
	figure(t, "hostile.timeouts_logged", d.countLog(`service=cat event=timeout `))
	figure(t, "hostile.exit_statuses", fmt.Sprint(statusCounts(d, "cat")))
	figure(t, "hostile.echo_probes_ok", probeRes.get("ok"))
	figure(t, "hostile.echo_probes_failed", probeRes.failed())
	figure(t, "hostile.echo_p99", probe.pct(99))
	figure(t, "hostile.zombies_after", len(zombieChildren(d.pid())))
	figure(t, "hostile.fds_before", baseFDs)
	figure(t, "hostile.fds_after", d.fdCount())
	figure(t, "hostile.rss_kib_before", baseRSS)
	figure(t, "hostile.rss_kib_after", rss)
	figure(t, "hostile.rss_kib_peak", peak)
	if res.failed() != 0 {
		t.Errorf("connections: %s", &res)
	}
	if probeRes.failed() != 0 || probeRes.get("ok") == 0 {
		t.Errorf("echo service during the storm: %s", probeRes)
	}
}

// countPrefix counts the outcomes whose kind starts with prefix.
func countPrefix(o *outcomes, prefix string) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	n := 0
	for k, v := range o.n {
		if strings.HasPrefix(k, prefix) {
			n += v
		}
	}
	return n
}

// Scenario 8, continued: a wait-mode datagram service whose handler
// exits without reading leaves its datagram queued, and a naive
// superserver would restart it at once, forever. superd sees that the
// start took nothing, logs event=looping, and backs off (pauses that
// double up to 10s) without spinning; once a handler takes the datagram
// the service goes on at full speed. The test counts starts and bounds
// pauses from below; it asserts no upper bound on any time.
func TestLoopingWaitService(t *testing.T) {
	skipIfShort(t, "scenario 8 of docs/reliability.md, a looping service's back-off")
	port := testkit.FreePort(t, "udp")
	cfg := func(args string) string {
		return fmt.Sprintf(`
[services.loop]
protocol = "udp"
port = %d
address = "127.0.0.1"
user = "root"
path = "%%HELPER%%"
args = %s
%s
`, port, args, goHelperEnv)
	}
	d := startDaemon(t, cfg(`["exit", "0"]`))
	c, err := net.Dial("udp", addrOf(port))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	cpuStart := cpuTime(t, d.pid())
	start := time.Now()
	if _, err := c.Write([]byte("nobody reads me")); err != nil {
		t.Fatal(err)
	}
	m := d.waitLog(`service=loop event=looping unproductive_starts=\d+ pause=(\S+)`)
	loopPhase := time.Since(start)
	cpuLoop := cpuTime(t, d.pid()) - cpuStart
	startsBefore := d.countLog(`service=loop event=start `)
	firstPause, err := time.ParseDuration(m[1])
	if err != nil {
		t.Fatalf("looping line's pause %q: %v", m[1], err)
	}

	// Watch the next starts of the loop, and superd's CPU time meanwhile.
	// The window is a number of starts, not a time, so a slow machine
	// only makes it last longer. With the back-off, each start comes
	// after a pause at least as long as the one the looping line
	// announced, and the pauses double (80ms, 160ms, 320ms, 640ms); a
	// spinning superserver would start a handler every few milliseconds.
	const watched = 4
	cpu0, w0 := cpuTime(t, d.pid()), time.Now()
	d.waitLogN(`service=loop event=start `, startsBefore+watched)
	cpuPause, window := cpuTime(t, d.pid())-cpu0, time.Since(w0)
	starts := logTimes(t, d, `service=loop event=start `)
	var gaps []string
	var shortest, longest time.Duration
	for i := startsBefore; i < startsBefore+watched; i++ {
		g := starts[i].Sub(starts[i-1])
		if i == startsBefore || g < shortest {
			shortest = g
		}
		longest = max(longest, g)
		gaps = append(gaps, g.Round(time.Millisecond).String())
	}

	figure(t, "loop.starts_before_looping_log", startsBefore)
	figure(t, "loop.time_to_looping_log", loopPhase)
	figure(t, "loop.superd_cpu_until_looping_log", cpuLoop)
	figure(t, "loop.window", window)
	figure(t, "loop.superd_cpu_in_window", cpuPause)
	figure(t, "loop.starts_in_window", len(starts)-startsBefore)
	figure(t, "loop.gaps_between_starts", strings.Join(gaps, ","))
	figure(t, "loop.longest_pause_in_window", longest)
	// Superd's timers never fire early, so these lower bounds hold on
	// any machine. Log times have millisecond resolution: 1ms of slack.
	if shortest < firstPause-time.Millisecond {
		t.Errorf("starts %v apart after event=looping announced a pause of %v: no back-off (gaps %v)", shortest, firstPause, gaps)
	}
	if longest < 500*time.Millisecond {
		t.Errorf("longest pause between %d starts %v: the service is not paused (gaps %v)", watched, longest, gaps)
	}
	// A spinning loop keeps a core busy for the whole window: CPU time
	// against the same window's wall time does not depend on how fast
	// the machine is.
	if cpuPause*2 > window {
		t.Errorf("superd used %v of CPU over %v of a looping service: it spins", cpuPause, window)
	}

	// The service was never disabled: with a handler that takes the
	// datagram, it is answered and the back-off ends.
	d.writeConfig(cfg(`["udp-reply"]`))
	d.cmd.Process.Signal(syscall.SIGHUP)
	d.waitNotify("READY=1")
	fixed := time.Now()
	c.SetReadDeadline(time.Now().Add(testkit.Timeout))
	buf := make([]byte, 100)
	n, err := c.Read(buf)
	if err != nil || string(buf[:n]) != "reply:nobody reads me" {
		t.Fatalf("after the fix: %q, %v", buf[:n], err)
	}
	figure(t, "loop.answered_after_fix", time.Since(fixed))
	d.waitLog(`service=loop event=resumed `)
}

// Scenario 9: the handler runs as exactly the configured user, with its
// groups, and under the configured limits, umask and niceness, read
// back from inside the handler.
func TestHandlerConfinement(t *testing.T) {
	requireRoot(t)
	nobody, err := user.Lookup("nobody")
	if err != nil {
		t.Skip("no user nobody on this machine")
	}
	gidStrs, err := nobody.GroupIds()
	if err != nil {
		t.Fatal(err)
	}
	var gids []int
	for _, g := range gidStrs {
		n, _ := strconv.Atoi(g)
		gids = append(gids, n)
	}
	slices.Sort(gids)
	gids = slices.Compact(gids)
	wantGroups := fmt.Sprint(gids)

	const limits = `nofile = 100, nproc = 50, cpu = "10s", core = 0, fsize = "1M"`
	ports := map[string]int{}
	for _, s := range []string{"nobody", "confined", "confinedgo", "plain"} {
		ports[s] = testkit.FreePort(t, "tcp")
	}
	// A Go program cannot start with as = 512M (its runtime reserves
	// more address space), so the handler under as = "512M" is cat
	// reading its own /proc files, and the Go helper gets as = "2G".
	d := startDaemon(t, fmt.Sprintf(`
[services.nobody]
port = %[1]d
address = "127.0.0.1"
user = "nobody"
path = "%%HELPER%%"
args = ["describe"]
%[5]s

[services.confined]
port = %[2]d
address = "127.0.0.1"
user = "nobody"
umask = "027"
nice = 5
limits = { %[6]s, as = "512M" }
path = "/bin/sh"
args = ["-c", "exec cat /proc/self/status /proc/self/limits /proc/self/stat"]

[services.confinedgo]
port = %[3]d
address = "127.0.0.1"
user = "nobody"
umask = "027"
nice = 5
limits = { %[6]s, as = "2G" }
path = "%%HELPER%%"
args = ["describe"]
%[5]s

[services.plain]
port = %[4]d
address = "127.0.0.1"
user = "root"
path = "/bin/sh"
args = ["-c", "echo $(ulimit -Sn)/$(ulimit -Hn)"]
`, ports["nobody"], ports["confined"], ports["confinedgo"], ports["plain"], goHelperEnv, limits))

	check := func(what, got, want string) {
		t.Helper()
		if got != want {
			t.Errorf("%s = %q, want %q", what, got, want)
		}
	}
	// user = "nobody": uid, gid and groups exactly nobody's.
	nb := parseDescribe(t, roundTrip(t, ports["nobody"], ""))
	check("nobody: uid", nb.kv["uid"], nobody.Uid)
	check("nobody: gid", nb.kv["gid"], nobody.Gid)
	check("nobody: groups", nb.kv["groups"], wantGroups)
	figure(t, "confine.nobody.uid", nb.kv["uid"])
	figure(t, "confine.nobody.gid", nb.kv["gid"])
	figure(t, "confine.nobody.groups", nb.kv["groups"])

	// Limits, umask and niceness, from /proc/self of the confined cat.
	out := roundTrip(t, ports["confined"], "")
	status, lims, nice := parseProcSelf(t, out)
	// Real, effective, saved and filesystem ids.
	check("confined: Uid", fmt.Sprint(strings.Fields(status["Uid"])), fmt.Sprint(slices.Repeat([]string{nobody.Uid}, 4)))
	check("confined: Gid", fmt.Sprint(strings.Fields(status["Gid"])), fmt.Sprint(slices.Repeat([]string{nobody.Gid}, 4)))
	check("confined: Groups", fmt.Sprint(strings.Fields(status["Groups"])), fmt.Sprint(itoaAll(gids)))
	check("confined: Umask", status["Umask"], "0027")
	check("confined: nice", nice, "5")
	wantLims := map[string]string{
		"Max open files":     "100/100",
		"Max processes":      "50/50",
		"Max address space":  "536870912/536870912",
		"Max cpu time":       "10/10",
		"Max core file size": "0/0",
		"Max file size":      "1048576/1048576",
	}
	for k, v := range wantLims {
		check("confined: "+k, lims[k], v)
		figure(t, "confine.cat."+strings.ReplaceAll(strings.ToLower(k), " ", "_"), lims[k])
	}
	figure(t, "confine.cat.umask", status["Umask"])
	figure(t, "confine.cat.nice", nice)

	// The same through the Go helper's describe.
	cg := parseDescribe(t, roundTrip(t, ports["confinedgo"], ""))
	wantKV := map[string]string{
		"uid": nobody.Uid, "gid": nobody.Gid, "groups": wantGroups,
		"umask": "0027", "nice": "5",
		"rlimit-nofile": "100/100", "rlimit-nproc": "50/50", "rlimit-as": "2147483648/2147483648",
		"rlimit-cpu": "10/10", "rlimit-core": "0/0", "rlimit-fsize": "1048576/1048576",
	}
	for k, v := range wantKV {
		check("confinedgo: "+k, cg.kv[k], v)
	}
	for _, k := range []string{"rlimit-nofile", "rlimit-nproc", "rlimit-as", "rlimit-cpu", "rlimit-core", "rlimit-fsize", "umask", "nice"} {
		figure(t, "confine.describe."+k, cg.kv[k])
	}

	// Without limits, the handler's NOFILE limits are the system's, as
	// a process that is not Go sees them: Go restores the soft limit it
	// raised at start for the processes it starts. (The handler is a
	// shell: a Go handler would report the limit its own runtime raised.)
	plain := strings.TrimSpace(roundTrip(t, ports["plain"], ""))
	sysNofile := shellUlimit(t, "-Sn") + "/" + shellUlimit(t, "-Hn")
	check("plain: NOFILE", plain, sysNofile)
	figure(t, "confine.plain.nofile", plain)
	figure(t, "confine.system_nofile", sysNofile)
	figure(t, "confine.superd_nofile", superdNofile(t, d.pid()))
}

func itoaAll(gids []int) []string {
	var s []string
	for _, g := range gids {
		s = append(s, strconv.Itoa(g))
	}
	return s
}

// parseProcSelf splits the output of cat /proc/self/status
// /proc/self/limits /proc/self/stat into the status fields, the limits
// ("Max open files" → "soft/hard") and the niceness.
func parseProcSelf(t *testing.T, out string) (status, limits map[string]string, nice string) {
	t.Helper()
	status, limits = map[string]string{}, map[string]string{}
	statLine := regexp.MustCompile(`^\d+ \(cat\) `)
	for _, l := range strings.Split(out, "\n") {
		switch {
		case strings.HasPrefix(l, "Max "):
			if len(l) < 26 {
				continue
			}
			f := strings.Fields(l[26:])
			if len(f) >= 2 {
				limits[strings.TrimSpace(l[:26])] = f[0] + "/" + f[1]
			}
		case statLine.MatchString(l):
			f := strings.Fields(l[strings.LastIndexByte(l, ')')+2:])
			if len(f) > 16 {
				nice = f[16]
			}
		default:
			if k, v, ok := strings.Cut(l, ":"); ok {
				status[k] = strings.TrimSpace(v)
			}
		}
	}
	if len(status) == 0 || len(limits) == 0 || nice == "" {
		t.Fatalf("cannot parse the handler's /proc/self files:\n%s", out)
	}
	return status, limits, nice
}

// shellUlimit runs sh -c 'ulimit FLAG': the limit a program that is not
// Go gets from the test process (Go restores the NOFILE soft limit it
// raised for the programs it starts).
func shellUlimit(t *testing.T, flag string) string {
	t.Helper()
	out, err := exec.Command("sh", "-c", "ulimit "+flag).Output()
	if err != nil {
		t.Fatalf("sh -c 'ulimit %s': %v", flag, err)
	}
	return strings.TrimSpace(string(out))
}

// superdNofile returns superd's own NOFILE limits from /proc/PID/limits.
func superdNofile(t *testing.T, pid int) string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/limits", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "Max open files") {
			f := strings.Fields(l[26:])
			return f[0] + "/" + f[1]
		}
	}
	t.Fatalf("no Max open files in /proc/%d/limits", pid)
	return ""
}

// startDaemonUnder starts superd as startDaemon does, but through a
// wrapper command line that execs it (so the wrapper's pid is superd's).
func startDaemonUnder(t *testing.T, config string, wrapper ...string) *superdProc {
	t.Helper()
	d := newDaemon(t, config)
	args := append(slices.Clone(wrapper), bin.superd, "run", "--config", d.config, "--log", "stderr")
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Env = append(os.Environ(), "NOTIFY_SOCKET="+d.notify.LocalAddr().String(), "SUPERD_LEAK_CHECK=leaked")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	d.cmd = cmd
	go d.readLogs(stderr)
	t.Cleanup(d.kill)
	d.waitNotify("READY=1")
	return d
}

// Scenario 9, continued: superd started with a low soft NOFILE limit
// raises its own (the Go runtime does), but its handlers get the limit
// superd was started with, with or without the confinement trampoline
// and a user switch, unless limits.nofile says otherwise.
func TestHandlerNofileDefault(t *testing.T) {
	requireRoot(t)
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	const soft = 1024
	if lim.Max < 4*soft {
		t.Skipf("hard NOFILE limit %d is too low to tell a raised soft limit from %d", lim.Max, soft)
	}
	ports := map[string]int{}
	var cfg strings.Builder
	for _, s := range []struct{ name, extra string }{
		{"plain", `user = "root"`},
		{"trampoline", `user = "root"` + "\n" + `umask = "022"`},
		{"asnobody", `user = "nobody"`},
		{"explicit", `user = "root"` + "\n" + `limits = { nofile = 200 }`},
	} {
		ports[s.name] = testkit.FreePort(t, "tcp")
		// A shell, not the Go helper: Go raises its own soft limit at
		// start, so a Go handler cannot report the one it was given.
		fmt.Fprintf(&cfg, "[services.%s]\nport = %d\naddress = \"127.0.0.1\"\npath = \"/bin/sh\"\nargs = [\"-c\", \"echo $(ulimit -Sn)/$(ulimit -Hn)\"]\n%s\n\n",
			s.name, ports[s.name], s.extra)
	}
	d := startDaemonUnder(t, cfg.String(), "sh", "-c", fmt.Sprintf(`ulimit -Sn %d && exec "$0" "$@"`, soft))
	own := superdNofile(t, d.pid())
	figure(t, "nofile.superd_started_with", fmt.Sprintf("%d/%d", soft, lim.Max))
	figure(t, "nofile.superd_own", own)
	if own == fmt.Sprintf("%d/%d", soft, lim.Max) {
		t.Logf("superd did not raise its own soft limit: the test cannot tell inherited from restored")
	}
	want := map[string]string{
		"plain":      fmt.Sprintf("%d/%d", soft, lim.Max),
		"trampoline": fmt.Sprintf("%d/%d", soft, lim.Max),
		"asnobody":   fmt.Sprintf("%d/%d", soft, lim.Max),
		"explicit":   "200/200",
	}
	for _, name := range []string{"plain", "trampoline", "asnobody", "explicit"} {
		got := strings.TrimSpace(roundTrip(t, ports[name], ""))
		figure(t, "nofile.handler_"+name, got)
		if got != want[name] {
			t.Errorf("%s handler: NOFILE %s, want %s (superd's own: %s)", name, got, want[name], own)
		}
	}
}

// Scenario 9, continued: as root, superd refuses configuration files and
// handlers that someone other than root (or the handler's user) can
// write, naming the file and its mode.
func TestConfigPermissionRefusal(t *testing.T) {
	requireRoot(t)
	nobody, err := user.Lookup("nobody")
	if err != nil {
		t.Skip("no user nobody on this machine")
	}
	nobodyUID, _ := strconv.Atoi(nobody.Uid)
	cases := []struct {
		name string
		// setup writes the configuration in dir and returns the main
		// file and the file the error must name, with its mode.
		setup func(t *testing.T, dir string) (main, bad, mode string)
		why   string
	}{
		{"main file writable by others", func(t *testing.T, dir string) (string, string, string) {
			main := writeFile(t, dir, "services.toml", echoService(t, "a"), 0o666)
			return main, main, "0666"
		}, "writable by others"},
		{"main file writable by a group", func(t *testing.T, dir string) (string, string, string) {
			main := writeFile(t, dir, "services.toml", echoService(t, "a"), 0o664)
			if err := os.Chown(main, 0, 65534); err != nil {
				t.Fatal(err)
			}
			return main, main, "0664"
		}, "writable by group 65534"},
		{"included file writable by others", func(t *testing.T, dir string) (string, string, string) {
			os.Mkdir(filepath.Join(dir, "conf.d"), 0o755)
			inc := writeFile(t, dir, "conf.d/b.toml", echoService(t, "b"), 0o666)
			main := writeFile(t, dir, "services.toml", "[superd]\ninclude = [\"conf.d/*.toml\"]\n"+echoService(t, "a"), 0o644)
			return main, inc, "0666"
		}, "writable by others"},
		{"handler writable by others", func(t *testing.T, dir string) (string, string, string) {
			h := filepath.Join(dir, "handler")
			if err := copyFile(bin.helper, h, 0o755); err != nil {
				t.Fatal(err)
			}
			os.Chmod(h, 0o777)
			main := writeFile(t, dir, "services.toml", handlerService(t, h, "root"), 0o644)
			return main, h, "0777"
		}, "writable by others"},
		{"root's handler owned by nobody", func(t *testing.T, dir string) (string, string, string) {
			h := filepath.Join(dir, "handler")
			if err := copyFile(bin.helper, h, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.Chown(h, nobodyUID, -1); err != nil {
				t.Fatal(err)
			}
			main := writeFile(t, dir, "services.toml", handlerService(t, h, "root"), 0o644)
			return main, h, "0755"
		}, "owned by uid " + nobody.Uid},
	}
	for _, tc := range cases {
		t.Run(strings.ReplaceAll(tc.name, " ", "_"), func(t *testing.T) {
			dir := t.TempDir()
			main, bad, mode := tc.setup(t, dir)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, bin.superd, "run", "--config", main, "--log", "stderr")
			cmd.Env = os.Environ()
			out, err := cmd.CombinedOutput()
			code := -1
			if ee, ok := err.(*exec.ExitError); ok {
				code = ee.ExitCode()
			} else if err == nil {
				code = 0
			}
			if ctx.Err() != nil {
				t.Fatalf("superd run kept running on an unsafe configuration:\n%s", out)
			}
			if code != 1 {
				t.Errorf("superd run: exit status %d, want 1\n%s", code, out)
			}
			for _, want := range []string{bad, "mode " + mode, tc.why} {
				if !strings.Contains(string(out), want) {
					t.Errorf("message does not contain %q:\n%s", want, out)
				}
			}
			figure(t, "perms."+strings.ReplaceAll(tc.name, " ", "_"), strconv.Quote(strings.TrimSpace(strings.Split(string(out), "\n")[0])))
		})
	}
}

// writeFile writes a file under dir with mode (chmod, past the umask).
func writeFile(t *testing.T, dir, name, content string, mode os.FileMode) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
	return p
}

func echoService(t *testing.T, name string) string {
	return fmt.Sprintf("[services.%s]\nbuiltin = \"echo\"\nport = %d\naddress = \"127.0.0.1\"\n", name, testkit.FreePort(t, "tcp"))
}

func handlerService(t *testing.T, path, user string) string {
	return fmt.Sprintf("[services.h]\nport = %d\naddress = \"127.0.0.1\"\nuser = %q\npath = %q\nargs = [\"exit\", \"0\"]\n", testkit.FreePort(t, "tcp"), user, path)
}
