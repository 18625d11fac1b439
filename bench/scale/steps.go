package main

import (
	"errors"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

const (
	// readyWithin bounds a superd's start, and every wait for a log line.
	readyWithin = 60 * time.Second
	// tickUS is one clock tick of /proc/PID/stat in µs (USER_HZ = 100).
	tickUS = 10_000
	// maxRuns bounds every rate loop in count; the duration ends it first.
	maxRuns = 10_000_000
	// idleRSSGoalKB is target 3's RSS bound, 8 MiB.
	idleRSSGoalKB = 8 << 10
)

// addrOf is the loopback address of a service.
func addrOf(s service) string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)) }

// logField returns the value of key=value in a log line, "" if absent.
func logField(line, key string) string {
	for f := range strings.FieldsSeq(line) {
		if v, ok := strings.CutPrefix(f, key+"="); ok {
			return v
		}
	}
	return ""
}

// launch writes svcs as the configuration NAME.toml, starts a superd on
// it with env, and waits for READY=1 and for every service to be bound
// (the ready line's pending=0). It returns the daemon, which the caller
// must stop, even with an error.
func (b *bench) launch(name string, svcs []service, env []string) (*daemon, time.Duration, error) {
	cfg := filepath.Join(b.dir, name+".toml")
	if err := writeFileAtomic(cfg, configText(svcs, b.uid, b.handler)); err != nil {
		return nil, 0, err
	}
	d, err := startDaemon(b.o.superd, b.dir, name, cfg, env)
	if err != nil {
		return nil, 0, err
	}
	took, line, err := d.waitReady(readyWithin)
	if err != nil {
		return d, 0, err
	}
	if p := logField(line, "pending"); p != "0" {
		return d, took, fmt.Errorf("%s: %s services wait for their socket (another program took a port?): %s", name, p, line)
	}
	return d, took, nil
}

// touch exchanges once with each service: an echo for cat, the echo
// built-in and wait mode, a bare connect for the other built-ins, a
// datagram for UDP. It returns how many nowait handlers that started.
func (b *bench) touch(svcs []service, bare bool) (handlers, failed int, first error) {
	for _, s := range svcs {
		if s.kind == kindCat {
			handlers++
		}
	}
	failed, first = forEach(len(svcs), 32, func(i int) error {
		s := svcs[i]
		var err error
		switch {
		case s.kind == kindUDP:
			err = probeUDP(b.src.next(), addrOf(s))
		case !bare && (s.kind == kindCat || s.kind == kindWait || s.builtin == "echo"):
			err = exchange(b.src.next(), addrOf(s))
		default:
			err = probe(b.src.next(), addrOf(s))
		}
		if err != nil {
			return fmt.Errorf("service %s: %w", s.name, err)
		}
		return nil
	})
	return handlers, failed, first
}

// stopAll stops the daemons, reporting failures to stop.
func (b *bench) stopAll(ds []*daemon) {
	for _, d := range ds {
		if err := d.stop(); err != nil {
			fmt.Fprintln(b.out, "!!", err)
		}
	}
}

// idleStep: superds with idleServices services each, one per runtime
// setting, all idle at the same time: CPU ticks over an idle window
// right after READY, and over another after a connection to every
// service; memory after each.
func (b *bench) idleStep() error {
	variants := []struct {
		name string
		env  []string
	}{
		{"default", nil},
		{"GOGC=50", []string{"GOGC=50"}},
		{"GOMEMLIMIT=4MiB", []string{"GOMEMLIMIT=4MiB"}},
		{"GOGC=50 GOMEMLIMIT=4MiB", []string{"GOGC=50", "GOMEMLIMIT=4MiB"}},
	}
	n := b.o.idleServices
	type idleRun struct {
		d    *daemon
		svcs []service
		u    [4]usage // after READY, after window 1, after traffic, after window 2
		// failed counts the services that did not answer the traffic.
		failed   int
		firstErr error
	}
	var runs []*idleRun
	var ds []*daemon
	defer func() { b.stopAll(ds) }()
	for i, v := range variants {
		base, err := b.o.ports.block(n)
		if err != nil {
			return err
		}
		svcs := mix(n, base)
		d, _, err := b.launch(fmt.Sprintf("idle-%d", i), svcs, v.env)
		if d != nil {
			ds = append(ds, d)
		}
		if err != nil {
			return err
		}
		runs = append(runs, &idleRun{d: d, svcs: svcs})
	}
	sampleAll := func(k int) error {
		for _, r := range runs {
			u, err := sampleProc(r.d.pid())
			if err != nil {
				return err
			}
			r.u[k] = u
		}
		return nil
	}
	if err := sampleAll(0); err != nil {
		return err
	}
	if err := b.sleep(b.o.idle); err != nil {
		return err
	}
	if err := sampleAll(1); err != nil {
		return err
	}
	for _, r := range runs {
		// A service that does not answer is a finding of its variant
		// (a tight GOMEMLIMIT can starve superd), not an end of the
		// step: it is counted and shown.
		handlers, failed, first := b.touch(r.svcs, false)
		r.failed, r.firstErr = failed, first
		// Window 2 starts once every handler's exit is logged: its
		// reaping is traffic, not idling.
		if err := r.d.waitExits(handlers, readyWithin); err != nil {
			fmt.Fprintf(b.out, "note: %v\n", err)
		}
	}
	if err := sampleAll(2); err != nil {
		return err
	}
	if err := b.sleep(b.o.idle); err != nil {
		return err
	}
	if err := sampleAll(3); err != nil {
		return err
	}
	cats, built, udp := 0, 0, 0
	for _, s := range runs[0].svcs {
		switch s.kind {
		case kindCat:
			cats++
		case kindBuiltin:
			built++
		case kindUDP:
			udp++
		}
	}
	w := b.table(fmt.Sprintf("idle: %d services (%d nowait /bin/cat, %d TCP built-ins, %d UDP echo), %v windows; ticks = utime+stime of all threads, 10 ms each; wake-ups = context switches of its threads; memory in MiB",
		n, cats, built, udp, b.o.idle))
	fmt.Fprintln(w, "runtime env\tticks after READY\twake-ups\tticks after traffic\twake-ups\tRSS at READY\tRSS idle after traffic\tanon\tfile\tthreads\tfds\ttraffic failed\t")
	for i, r := range runs {
		fmt.Fprintf(w, "%s\t%d\t%d\t%d\t%d\t%s\t%s\t%s\t%s\t%d\t%d\t%d/%d\t\n", variants[i].name,
			r.u[1].ticks-r.u[0].ticks, r.u[1].switches-r.u[0].switches,
			r.u[3].ticks-r.u[2].ticks, r.u[3].switches-r.u[2].switches,
			mib(r.u[0].rssKB), mib(r.u[3].rssKB), mib(r.u[3].anonKB), mib(r.u[3].fileKB), r.u[3].threads, r.u[3].fds,
			r.failed, len(r.svcs))
	}
	w.Flush()
	for i, r := range runs {
		if r.firstErr != nil {
			fmt.Fprintf(b.out, "note: %s: first failure: %v\n", variants[i].name, r.firstErr)
		}
	}
	def := runs[0]
	t1, t2 := def.u[1].ticks-def.u[0].ticks, def.u[3].ticks-def.u[2].ticks
	b.add(fmt.Sprintf("idle CPU, %d services, 2×%v", n, b.o.idle), fmt.Sprintf("%d + %d ticks", t1, t2), "0 ticks", t1 == 0 && t2 == 0, true)
	b.add(fmt.Sprintf("idle wake-ups, %d services, 2×%v", n, b.o.idle),
		fmt.Sprintf("%d + %d", def.u[1].switches-def.u[0].switches, def.u[3].switches-def.u[2].switches), "-", false, false)
	rss := max(def.u[0].rssKB, def.u[3].rssKB)
	b.add(fmt.Sprintf("idle RSS, %d services", n), mib(rss)+" MiB", "≤ 8 MiB", rss <= idleRSSGoalKB, true)
	for i, r := range runs[1:] {
		rss := max(r.u[0].rssKB, r.u[3].rssKB)
		b.add(fmt.Sprintf("idle RSS, %d services, %s", n, variants[i+1].name), mib(rss)+" MiB", "≤ 8 MiB", rss <= idleRSSGoalKB, true)
	}
	for _, r := range runs {
		if p, first := r.d.problems(); p > 0 {
			fmt.Fprintf(b.out, "note: %s logged %d warnings or errors, e.g. %s\n", r.d.name, p, first[0])
		}
	}
	return nil
}

// bigDaemon is the superd with o.services services that the start step
// leaves running for the reload and rate steps.
type bigDaemon struct {
	d    *daemon
	svcs []service
	// echo and cat are the first echo built-in and the first cat
	// handler, which the reload step hammers and the rate step measures;
	// changed is the service the reload step changes.
	echo, cat, changed int
}

// startStep starts a superd with o.services services o.rounds times:
// the time from exec to READY=1, and a connection to every service
// afterwards to check that each is bound. The last one is left running.
func (b *bench) startStep() (*bigDaemon, error) {
	n := b.o.services
	base, err := b.o.ports.block(n)
	if err != nil {
		return nil, err
	}
	svcs := mix(n, base)
	big := &bigDaemon{svcs: svcs, echo: -1, cat: -1, changed: -1}
	for i, s := range svcs {
		switch {
		case s.kind == kindCat && big.cat < 0:
			big.cat = i
		case s.kind == kindCat && big.changed < 0:
			big.changed = i
		case s.kind == kindBuiltin && s.builtin == "echo" && big.echo < 0:
			big.echo = i
		}
	}
	w := b.table(fmt.Sprintf("start: %d services, exec to READY=1 (sd_notify), then a connection to each (a datagram to each UDP one)", n))
	fmt.Fprintln(w, "round\texec→READY ms\tCPU ms to READY\twaiting for a CPU ms\tready line\tbound\tcheck took ms\tRSS MiB\tthreads\tfds\t")
	var times, cpus []float64
	allBound := true
	for r := range b.o.rounds {
		name := fmt.Sprintf("big-%d", r)
		d, took, err := b.launch(name, svcs, nil)
		if err != nil {
			if d != nil {
				d.stop()
			}
			return nil, err
		}
		u, err := sampleProc(d.pid())
		if err != nil {
			d.stop()
			return nil, err
		}
		_, line, _ := d.waitReady(0)
		t0 := time.Now()
		handlers, failed, first := b.touch(svcs, true)
		check := time.Since(t0)
		if failed > 0 {
			allBound = false
			fmt.Fprintf(b.out, "!! %s: %d of %d services not reachable; first: %v\n", name, failed, n, first)
		}
		fmt.Fprintf(w, "%d\t%s\t%d\t%s\t%s\t%d/%d\t%s\t%s\t%d\t%d\t\n", r+1, ms(took), u.ticks*tickUS/1000, ms(u.runDelay),
			"services="+logField(line, "services")+" pending="+logField(line, "pending"),
			n-failed, n, ms(check), mib(u.rssKB), u.threads, u.fds)
		times = append(times, float64(took)/float64(time.Millisecond))
		cpus = append(cpus, float64(u.ticks*tickUS)/1000)
		if err := d.waitExits(handlers, readyWithin); err != nil {
			d.stop()
			return nil, err
		}
		if r < b.o.rounds-1 {
			if err := d.stop(); err != nil {
				return nil, err
			}
			continue
		}
		big.d = d
	}
	w.Flush()
	med, worst := median(times), slices.Max(times)
	b.add(fmt.Sprintf("start %d services, exec→READY (median of %d; max)", n, b.o.rounds),
		fmt.Sprintf("%.1f ms; %.1f ms", med, worst), "< 200 ms", med < 200, true)
	b.add(fmt.Sprintf("start %d services, superd's CPU to READY (median)", n), fmt.Sprintf("%.0f ms", median(cpus)), "-", false, false)
	b.add(fmt.Sprintf("start %d services, all bound", n), fmt.Sprint(allBound), "true", allBound, true)
	if !allBound {
		return big, errors.New("not every service was reachable after READY")
	}
	return big, nil
}

// reloadRow is one timed reload.
type reloadRow struct {
	took                 time.Duration // SIGHUP to the "reloaded" line
	line                 string        // the "reloaded" line
	cpu, waitCPU         time.Duration // superd's CPU time and its time waiting for a CPU meanwhile
	changed, added, gone string
}

// reloadOnce writes the big daemon's configuration, with the changed
// service's args set when flip is true, sends SIGHUP and waits for the
// "reloaded" line.
func (b *bench) reloadOnce(big *bigDaemon, flip bool) (reloadRow, error) {
	var row reloadRow
	d := big.d
	svcs := slices.Clone(big.svcs)
	if flip {
		svcs[big.changed].extra = []string{`args = ["-u"]`}
	}
	if err := writeFileAtomic(filepath.Join(b.dir, d.name+".toml"), configText(svcs, b.uid, b.handler)); err != nil {
		return row, err
	}
	u0, err := sampleProc(d.pid())
	if err != nil {
		return row, err
	}
	from := d.markCount()
	t0 := time.Now()
	if err := d.signal(syscall.SIGHUP); err != nil {
		return row, err
	}
	m, err := d.waitMark("event=reloaded ", from, readyWithin)
	if err != nil {
		return row, err
	}
	u1, err := sampleProc(d.pid())
	if err != nil {
		return row, err
	}
	row.took, row.line = m.at.Sub(t0), m.line
	row.cpu = time.Duration((u1.ticks-u0.ticks)*tickUS) * time.Microsecond
	row.waitCPU = u1.runDelay - u0.runDelay
	row.changed, row.added, row.gone = logField(m.line, "changed"), logField(m.line, "added"), logField(m.line, "removed")
	return row, nil
}

// reloadStep changes one service of the big daemon and reloads it
// o.reloads times with no traffic (superd's CPU per reload shows), then
// o.reloads times while clients hammer two unchanged services and count
// every failure; it times SIGHUP to the "reloaded" log line.
func (b *bench) reloadStep(big *bigDaemon) error {
	changed := big.svcs[big.changed].name
	w := b.table(fmt.Sprintf("reload: %d services, one (%s) changed each time (args); SIGHUP to the \"reloaded\" log line; \"hammered\": 4 clients meanwhile on %s and %s",
		len(big.svcs), changed, big.svcs[big.echo].name, big.svcs[big.cat].name))
	fmt.Fprintln(w, "reload\ttraffic\tSIGHUP→reloaded ms\tsuperd CPU ms\twaiting for a CPU ms\tchanged=\tadded=\tremoved=\t")
	var quiet, loud []float64
	var quietCPU time.Duration
	allRight := true
	row := func(i int, traffic string, r reloadRow) {
		if r.changed != changed || r.added != "-" || r.gone != "-" {
			allRight = false
		}
		fmt.Fprintf(w, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", i, traffic, ms(r.took), ms(r.cpu), ms(r.waitCPU), r.changed, r.added, r.gone)
	}
	n := 0
	for range b.o.reloads {
		n++
		r, err := b.reloadOnce(big, n%2 == 1)
		if err != nil {
			return err
		}
		quiet = append(quiet, float64(r.took)/float64(time.Millisecond))
		quietCPU += r.cpu
		row(n, "none", r)
	}

	targets := []string{addrOf(big.svcs[big.echo]), addrOf(big.svcs[big.cat])}
	for _, t := range targets {
		if err := exchange(b.src.next(), t); err != nil {
			return fmt.Errorf("unchanged service %s before the reloads: %w", t, err)
		}
	}
	stop := make(chan struct{})
	hammer := make(chan loadResult, 1)
	go func() {
		hammer <- runLoad(4, maxRuns, 10*time.Minute, stop, func(w int) error {
			return exchange(b.src.next(), targets[w%2])
		})
	}()
	stopped := false
	endHammer := func() loadResult {
		if !stopped {
			close(stop)
			stopped = true
		}
		return <-hammer
	}
	defer func() {
		if !stopped {
			endHammer()
		}
	}()
	for range b.o.reloads {
		// Traffic before, between and after the reloads, not only
		// during them.
		if err := b.sleep(300 * time.Millisecond); err != nil {
			return err
		}
		n++
		r, err := b.reloadOnce(big, n%2 == 1)
		if err != nil {
			return err
		}
		loud = append(loud, float64(r.took)/float64(time.Millisecond))
		row(n, "hammered", r)
	}
	if err := b.sleep(300 * time.Millisecond); err != nil {
		return err
	}
	res := endHammer()
	w.Flush()
	fmt.Fprintf(b.out, "clients during the hammered reloads: %d exchanges ok, %d refused, %d failed otherwise in %.1f s",
		res.ok, res.refused, res.failed, res.elapsed.Seconds())
	if res.firstErr != nil {
		fmt.Fprintf(b.out, "; first failure: %v", res.firstErr)
	}
	fmt.Fprintln(b.out)
	for _, x := range []struct {
		what  string
		times []float64
	}{{"no traffic", quiet}, {"hammered", loud}} {
		med, worst := median(x.times), slices.Max(x.times)
		b.add(fmt.Sprintf("reload, 1 of %d changed, %s (median of %d; max)", len(big.svcs), x.what, len(x.times)),
			fmt.Sprintf("%.1f ms; %.1f ms", med, worst), "< 100 ms", med < 100, true)
	}
	b.add("superd CPU per reload, no traffic (mean)", ms(quietCPU/time.Duration(len(quiet)))+" ms", "-", false, false)
	bad := res.refused + res.failed
	b.add("failed connections during reloads", fmt.Sprintf("%d of %d", bad, bad+res.ok), "0", bad == 0 && res.ok > 0, true)
	if !allRight {
		return fmt.Errorf("a reloaded line did not say changed=%s added=- removed=-", changed)
	}
	return nil
}

// rateResult is the medians of one rate measurement over the rounds.
type rateResult struct {
	rates, cpus []float64
	failed      int
	firstErr    error
}

// measureRate warms addr up, then runs c clients for rateDur and returns
// connections per second and d's CPU µs per connection.
func (b *bench) measureRate(d *daemon, c int, fn func(w int) error) (rate, cpu float64, res loadResult, err error) {
	runLoad(c, 20*c, 10*time.Second, b.ctx.Done(), fn)
	u0, err := sampleProc(d.pid())
	if err != nil {
		return 0, 0, res, err
	}
	res = runLoad(c, maxRuns, b.o.rateDur, b.ctx.Done(), fn)
	u1, err := sampleProc(d.pid())
	if err != nil {
		return 0, 0, res, err
	}
	if res.ok == 0 {
		return 0, 0, res, fmt.Errorf("no exchange succeeded; first failure: %v", res.firstErr)
	}
	return res.rate(), float64((u1.ticks-u0.ticks)*tickUS) / float64(res.ok), res, nil
}

// rateStep compares connections per second, and superd's CPU per
// connection, to one service configured alone and to the same kind of
// service among the big daemon's, in the same run, interleaved.
func (b *bench) rateStep(big *bigDaemon) error {
	base, err := b.o.ports.block(2)
	if err != nil {
		return err
	}
	one := []service{
		{name: "echo", kind: kindBuiltin, builtin: "echo", port: base},
		{name: "cat", kind: kindCat, port: base + 1},
	}
	var ds []*daemon
	defer func() { b.stopAll(ds) }()
	cases := []struct {
		label string
		d     [2]*daemon
		addr  [2]string
	}{
		{label: "built-in echo", addr: [2]string{addrOf(one[0]), addrOf(big.svcs[big.echo])}},
		{label: "nowait /bin/cat", addr: [2]string{addrOf(one[1]), addrOf(big.svcs[big.cat])}},
	}
	for i, s := range one {
		d, _, err := b.launch("one-"+s.name, []service{s}, nil)
		if d != nil {
			ds = append(ds, d)
		}
		if err != nil {
			return err
		}
		cases[i].d = [2]*daemon{d, big.d}
	}
	type key struct{ cas, c, size int }
	results := map[key]*rateResult{}
	for r := range b.o.rounds {
		for ci, c := range b.o.concs {
			for k := range cases {
				for j := range 2 {
					size := j
					if (r+ci+k)%2 == 1 {
						size = 1 - j // alternate which configuration goes first
					}
					cs := cases[k]
					addr := cs.addr[size]
					rate, cpu, res, err := b.measureRate(cs.d[size], c, func(int) error { return exchange(b.src.next(), addr) })
					if err != nil {
						return fmt.Errorf("%s, c=%d, %s: %w", cs.label, c, addr, err)
					}
					rr := results[key{k, c, size}]
					if rr == nil {
						rr = &rateResult{}
						results[key{k, c, size}] = rr
					}
					rr.rates = append(rr.rates, rate)
					rr.cpus = append(rr.cpus, cpu)
					rr.failed += res.failed + res.refused
					if rr.firstErr == nil {
						rr.firstErr = res.firstErr
					}
				}
			}
		}
	}
	n := len(big.svcs)
	w := b.table(fmt.Sprintf("rate: one service configured alone vs among %d, medians of %d rounds of %v; exchange = connect, send a line, half-close, read to EOF; cpu = superd's own µs per connection",
		n, b.o.rounds, b.o.rateDur))
	fmt.Fprintf(w, "service\tc\tconn/s (1)\tconn/s (%d)\t%d/1\tcpu µs (1)\tcpu µs (%d)\t%d/1\tfailed\t\n", n, n, n, n)
	flat := true
	var figs []string
	for k, cs := range cases {
		for _, c := range b.o.concs {
			a, z := results[key{k, c, 0}], results[key{k, c, 1}]
			ra, rz := median(a.rates), median(z.rates)
			ca, cz := median(a.cpus), median(z.cpus)
			fmt.Fprintf(w, "%s\t%d\t%.0f\t%.0f\t%.2f\t%.0f\t%.0f\t%.2f\t%d\t\n", cs.label, c, ra, rz, rz/ra, ca, cz, cz/ca, a.failed+z.failed)
			// The CPU per connection decides: on a shared machine the
			// rate moves with the other load far more than it does.
			if cz/ca > 1.1 || a.failed+z.failed > 0 {
				flat = false
			}
			figs = append(figs, fmt.Sprintf("%s c=%d %.2f", strings.Fields(cs.label)[1], c, cz/ca))
			for _, x := range []*rateResult{a, z} {
				if x.firstErr != nil {
					fmt.Fprintf(b.out, "note: %s c=%d: first failure %v\n", cs.label, c, x.firstErr)
				}
			}
		}
	}
	w.Flush()
	b.add(fmt.Sprintf("superd CPU per conn, %d services / 1", n), strings.Join(figs, ", "), "≤ 1.10 each (flat)", flat, true)
	return nil
}

// connsStep holds o.openConns connections open to a built-in echo (each
// has echoed one line, so superd has accepted and is serving it) and
// compares superd's memory and descriptors with and without them.
func (b *bench) connsStep() error {
	n := b.o.openConns
	base, err := b.o.ports.block(1)
	if err != nil {
		return err
	}
	s := service{name: "echo", kind: kindBuiltin, builtin: "echo", port: base,
		// Default instances (256) would leave the rest in the backlog,
		// not in superd.
		extra: []string{fmt.Sprintf("instances = %d", n+64), "backlog = 4096"}}
	d, _, err := b.launch("conns", []service{s}, nil)
	if d != nil {
		defer b.stopAll([]*daemon{d})
	}
	if err != nil {
		return err
	}
	addr := addrOf(s)
	if res := runLoad(8, 200, 30*time.Second, b.ctx.Done(), func(int) error { return exchange(b.src.next(), addr) }); res.ok != 200 {
		return fmt.Errorf("warm-up: %d of 200 exchanges with %s failed; first: %v", 200-res.ok, addr, res.firstErr)
	}
	before, err := sampleProc(d.pid())
	if err != nil {
		return err
	}
	conns := make([]net.Conn, n)
	defer func() {
		for _, c := range conns {
			if c != nil {
				c.Close()
			}
		}
	}()
	t0 := time.Now()
	failed, first := forEach(n, 64, func(i int) error {
		if b.ctx.Err() != nil {
			return b.ctx.Err()
		}
		c, err := dialer(b.src.next()).Dial("tcp", addr)
		if err != nil {
			return err
		}
		conns[i] = c
		c.SetDeadline(time.Now().Add(30 * time.Second))
		if _, err := c.Write([]byte(payload)); err != nil {
			return fmt.Errorf("write: %w", err)
		}
		buf := make([]byte, len(payload))
		if _, err := io.ReadFull(c, buf); err != nil {
			return fmt.Errorf("read: %w", err)
		}
		return nil
	})
	opened := time.Since(t0)
	if failed > 0 {
		return fmt.Errorf("%d of %d connections failed; first: %w", failed, n, first)
	}
	with, err := sampleProc(d.pid())
	if err != nil {
		return err
	}
	for i, c := range conns {
		c.Close()
		conns[i] = nil
	}
	// superd notices the closes one by one: wait (bounded) for its
	// descriptors to come back down before the last sample.
	after := with
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); {
		if after, err = sampleProc(d.pid()); err != nil {
			return err
		}
		if after.fds <= before.fds+2 {
			break
		}
		if err := b.sleep(100 * time.Millisecond); err != nil {
			return err
		}
	}
	w := b.table(fmt.Sprintf("conns: %d connections held open to a built-in echo (opened in %.1f s by 64 clients); memory in MiB", n, opened.Seconds()))
	fmt.Fprintln(w, "state\tRSS\tanon\tfile\tfds\tthreads\t")
	for _, row := range []struct {
		name string
		u    usage
	}{{"before", before}, {fmt.Sprintf("%d open", n), with}, {"after closing", after}} {
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%d\t%d\t\n", row.name, mib(row.u.rssKB), mib(row.u.anonKB), mib(row.u.fileKB), row.u.fds, row.u.threads)
	}
	w.Flush()
	per := float64(with.rssKB-before.rssKB) / float64(n)
	fmt.Fprintf(b.out, "per open connection: %.1f KiB of RSS, %.2f descriptors\n", per, float64(with.fds-before.fds)/float64(n))
	b.add(fmt.Sprintf("%d open connections to a built-in: RSS each", n), fmt.Sprintf("%.1f KiB", per), "< 16 KiB", per < 16, true)
	return nil
}

// waitStep drives a wait-mode TCP service (this program as the handler,
// accepting on fd 0) and the UDP built-in echo (its reply limit lifted)
// at full rate.
func (b *bench) waitStep() error {
	base, err := b.o.ports.block(2)
	if err != nil {
		return err
	}
	wait := service{name: "wait", kind: kindWait, port: base}
	// The default reply limit of a datagram built-in (100 a second,
	// against spoofed amplification) would be what is measured.
	udp := service{name: "udp-echo", kind: kindUDP, builtin: "echo", port: base + 1, extra: []string{"rate = 1000000"}}
	d, _, err := b.launch("wait", []service{wait, udp}, nil)
	if d != nil {
		defer b.stopAll([]*daemon{d})
	}
	if err != nil {
		return err
	}
	type key struct {
		udp bool
		c   int
	}
	results := map[key]*rateResult{}
	for range b.o.rounds {
		for _, c := range b.o.concs {
			for _, isUDP := range []bool{false, true} {
				var (
					rate, cpu float64
					res       loadResult
					err       error
				)
				if isUDP {
					runLoad(1, 1, time.Second, nil, func(int) error { return probeUDP(b.src.next(), addrOf(udp)) })
					u0, e := sampleProc(d.pid())
					if e != nil {
						return e
					}
					res, err = udpLoad(&b.src, c, maxRuns, b.o.rateDur, 200*time.Millisecond, addrOf(udp))
					u1, e := sampleProc(d.pid())
					if e != nil {
						return e
					}
					if err == nil && res.ok == 0 {
						err = fmt.Errorf("no datagram came back; first failure: %v", res.firstErr)
					}
					if err == nil {
						rate, cpu = res.rate(), float64((u1.ticks-u0.ticks)*tickUS)/float64(res.ok)
					}
				} else {
					rate, cpu, res, err = b.measureRate(d, c, func(int) error { return exchange(b.src.next(), addrOf(wait)) })
				}
				if err != nil {
					return fmt.Errorf("udp=%v c=%d: %w", isUDP, c, err)
				}
				rr := results[key{isUDP, c}]
				if rr == nil {
					rr = &rateResult{}
					results[key{isUDP, c}] = rr
				}
				rr.rates = append(rr.rates, rate)
				rr.cpus = append(rr.cpus, cpu)
				rr.failed += res.failed + res.refused
				if rr.firstErr == nil {
					rr.firstErr = res.firstErr
				}
			}
		}
	}
	w := b.table(fmt.Sprintf("wait and udp: medians of %d rounds of %v; wait = wait-mode TCP, the handler accepts on fd 0 and echoes; udp = built-in echo, one datagram in flight per client; cpu = superd's own µs per exchange",
		b.o.rounds, b.o.rateDur))
	fmt.Fprintln(w, "service\tc\trate /s\tmin–max\tcpu µs\tfailed\t")
	for _, isUDP := range []bool{false, true} {
		label := "wait-mode TCP"
		if isUDP {
			label = "UDP built-in echo"
		}
		for _, c := range b.o.concs {
			rr := results[key{isUDP, c}]
			fmt.Fprintf(w, "%s\t%d\t%.0f\t%.0f–%.0f\t%.1f\t%d\t\n", label, c, median(rr.rates), slices.Min(rr.rates), slices.Max(rr.rates), median(rr.cpus), rr.failed)
			b.add(fmt.Sprintf("%s, c=%d", label, c), fmt.Sprintf("%.0f /s", median(rr.rates)), "peers' rates", false, false)
			if rr.firstErr != nil {
				fmt.Fprintf(b.out, "note: %s c=%d: first failure %v\n", label, c, rr.firstErr)
			}
		}
	}
	w.Flush()
	return nil
}
