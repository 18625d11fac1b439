// Command scale measures superd at scale and at rest, the figures of
// issue 9's targets 3 and 4: CPU and memory of an idle superd with 100
// services, start and reload times with 1,000 services, the cost per
// connection with 1 against 1,000 services, the memory of 10,000 open
// connections, and the rates of a wait-mode TCP service and a UDP
// built-in.
//
//	go run ./bench/scale -superd ./superd
//
// It runs the superd binary it is given (it builds nothing), with
// configurations of its own in a temporary folder that it removes at the
// end (-keep leaves it, with every superd's log). Every client and every
// socket is on loopback; client connections come from varied 127.x.y.z
// sources, so that ephemeral ports never run out. Every loop is bounded
// in count and in time, and it stops exactly the superd processes it
// started, by pid. The figures are printed as tables, then one summary
// table with each target and whether this run met it.
//
// It does not assert anything: the exit status is 1 only when a step
// could not be carried out (superd did not start, a connection check
// failed, ...), not when a target was missed.
//
// Run with the single argument -serve-wait, it is the wait-mode TCP
// handler of its own wait step (see serveWait).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"
)

// options are the command-line settings.
type options struct {
	superd       string
	idle         time.Duration
	rounds       int
	reloads      int
	rateDur      time.Duration
	concs        []int
	services     int
	idleServices int
	openConns    int
	steps        map[string]bool
	keep         bool
	ports        *portRange
}

// allSteps lists the steps in the order they run.
func allSteps() []string { return []string{"idle", "start", "reload", "rate", "conns", "wait"} }

func main() {
	if len(os.Args) == 2 && os.Args[1] == serveWaitArg {
		os.Exit(serveWait())
	}
	o, err := parseFlags(os.Args[1:])
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "scale:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, o, os.Stdout)
	stop()
	os.Exit(code)
}

// parseFlags reads the command line.
func parseFlags(args []string) (options, error) {
	var o options
	fs := flag.NewFlagSet("scale", flag.ContinueOnError)
	fs.StringVar(&o.superd, "superd", "", "the superd `binary` to measure (required)")
	fs.DurationVar(&o.idle, "idle", 10*time.Second, "length of each idle window")
	fs.IntVar(&o.rounds, "rounds", 3, "rounds of each timed measurement (the median is reported)")
	fs.IntVar(&o.reloads, "reloads", 5, "reloads in the reload step")
	fs.DurationVar(&o.rateDur, "rate-duration", 2*time.Second, "length of each connection-rate run")
	conc := fs.String("c", "1,8", "client concurrencies of the rate runs, comma-separated")
	fs.IntVar(&o.services, "services", 1000, "services of the start, reload and rate steps")
	fs.IntVar(&o.idleServices, "idle-services", 100, "services of the idle step")
	fs.IntVar(&o.openConns, "open-conns", 10000, "connections held open in the conns step")
	steps := fs.String("steps", strings.Join(allSteps(), ","), "steps to run, comma-separated (reload and rate need start)")
	fs.BoolVar(&o.keep, "keep", false, "keep the temporary folder (configurations and superd logs)")
	ports := fs.String("ports", "20000-32000", "range of ports the services may use, FIRST-END")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if o.superd == "" {
		return o, errors.New("-superd PATH is required (build it with make superd)")
	}
	abs, err := filepath.Abs(o.superd)
	if err != nil {
		return o, fmt.Errorf("-superd: %w", err)
	}
	o.superd = abs
	if _, err := os.Stat(o.superd); err != nil {
		return o, fmt.Errorf("-superd: %w", err)
	}
	if o.idle <= 0 || o.rounds < 1 || o.reloads < 1 || o.rateDur <= 0 || o.services < 10 || o.idleServices < 10 || o.openConns < 1 {
		return o, errors.New("-idle and -rate-duration must be positive, -rounds, -reloads and -open-conns at least 1, -services and -idle-services at least 10")
	}
	for s := range strings.SplitSeq(*conc, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 || n > 1024 {
			return o, fmt.Errorf("-c %q: want numbers from 1 to 1024", *conc)
		}
		o.concs = append(o.concs, n)
	}
	o.steps = map[string]bool{}
	for s := range strings.SplitSeq(*steps, ",") {
		s = strings.TrimSpace(s)
		if !slices.Contains(allSteps(), s) {
			return o, fmt.Errorf("-steps: unknown step %q (the steps: %s)", s, strings.Join(allSteps(), ", "))
		}
		o.steps[s] = true
	}
	if (o.steps["reload"] || o.steps["rate"]) && !o.steps["start"] {
		return o, errors.New("-steps: reload and rate run on the daemon the start step leaves running: add start")
	}
	if o.ports, err = parsePorts(*ports); err != nil {
		return o, err
	}
	return o, nil
}

// bench is one run: its options, temp folder and results so far.
type bench struct {
	o       options
	ctx     context.Context
	dir     string
	handler string // this program's copy, the wait-mode handler
	uid     int
	src     sources
	out     io.Writer
	summary []target
}

// target is one row of the summary.
type target struct {
	name, figure, goal string
	met                string // "yes", "no", or "-" for figures without a goal
}

// run carries out the steps and prints the tables; it returns the exit
// status.
func run(ctx context.Context, o options, out io.Writer) int {
	dir, err := os.MkdirTemp("", "superd-scale-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "scale:", err)
		return 1
	}
	if o.keep {
		fmt.Fprintln(out, "keeping", dir)
	} else {
		defer os.RemoveAll(dir)
	}
	b := &bench{o: o, ctx: ctx, dir: dir, uid: os.Geteuid(), out: out}
	if err := b.prepare(); err != nil {
		fmt.Fprintln(os.Stderr, "scale:", err)
		return 1
	}
	b.header()
	failed := false
	step := func(name string, fn func() error) {
		if !o.steps[name] || ctx.Err() != nil {
			return
		}
		if err := fn(); err != nil {
			failed = true
			fmt.Fprintf(out, "\n!! step %s failed: %v\n", name, err)
		}
	}
	step("idle", b.idleStep)
	var big *bigDaemon
	step("start", func() (err error) { big, err = b.startStep(); return err })
	if big != nil {
		step("reload", func() error { return b.reloadStep(big) })
		step("rate", func() error { return b.rateStep(big) })
		if err := big.d.stop(); err != nil {
			failed = true
			fmt.Fprintln(out, "!!", err)
		}
	}
	step("conns", b.connsStep)
	step("wait", b.waitStep)
	b.printSummary()
	if ctx.Err() != nil {
		fmt.Fprintln(out, "interrupted")
		return 1
	}
	if failed {
		return 1
	}
	return 0
}

// prepare raises the descriptor limit (superd inherits it) and copies
// this program where superd may run it as the wait-mode handler.
func (b *bench) prepare() error {
	// Handlers may run as another user: they must reach the folder.
	if err := os.Chmod(b.dir, 0o755); err != nil {
		return err
	}
	want := uint64(b.o.openConns + 4*b.o.services + 4096)
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return fmt.Errorf("reading the descriptor limit: %w", err)
	}
	if lim.Cur < want {
		raised := syscall.Rlimit{Cur: want, Max: max(lim.Max, want)}
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &raised); err != nil {
			// Not allowed to raise the hard limit: up to it, then.
			raised = syscall.Rlimit{Cur: lim.Max, Max: lim.Max}
			if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &raised); err != nil {
				return fmt.Errorf("raising the descriptor limit to %d: %w", lim.Max, err)
			}
		}
		if raised.Cur < want {
			fmt.Fprintf(b.out, "note: descriptor limit %d, below the %d this run wants: the conns step may fail\n", raised.Cur, want)
		}
	}
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("finding this program for the wait-mode handler: %w", err)
	}
	data, err := os.ReadFile(self)
	if err != nil {
		return fmt.Errorf("copying this program for the wait-mode handler: %w", err)
	}
	b.handler = filepath.Join(b.dir, "scale-wait-handler")
	if err := os.WriteFile(b.handler, data, 0o755); err != nil {
		return fmt.Errorf("copying this program for the wait-mode handler: %w", err)
	}
	return nil
}

// header prints what the run is about.
func (b *bench) header() {
	var lim syscall.Rlimit
	syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim)
	load, _ := os.ReadFile("/proc/loadavg")
	host, _ := os.Hostname()
	fmt.Fprintf(b.out, "superd scale run: %s\n  binary %s\n  host %s, %d CPUs, load %s  RLIMIT_NOFILE %d\n",
		time.Now().UTC().Format(time.RFC3339), b.o.superd, host, runtime.NumCPU(), strings.TrimSpace(string(load)), lim.Cur)
}

// sleep waits for d unless the run is interrupted.
func (b *bench) sleep(d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-b.ctx.Done():
		return b.ctx.Err()
	}
}

// table returns a tabwriter for one table; the caller flushes it.
func (b *bench) table(title string) *tabwriter.Writer {
	fmt.Fprintf(b.out, "\n== %s\n", title)
	return tabwriter.NewWriter(b.out, 2, 0, 2, ' ', tabwriter.AlignRight)
}

// add records a summary row.
func (b *bench) add(name, figure, goal string, met bool, hasGoal bool) {
	v := "-"
	if hasGoal {
		v = "no"
		if met {
			v = "yes"
		}
	}
	b.summary = append(b.summary, target{name, figure, goal, v})
}

// printSummary prints the targets of the steps that ran.
func (b *bench) printSummary() {
	w := tabwriter.NewWriter(b.out, 2, 0, 2, ' ', 0)
	fmt.Fprintf(b.out, "\n== summary (issue 9, targets 3 and 4)\n")
	fmt.Fprintln(w, "target\tthis run\tgoal\tmet\t")
	for _, t := range b.summary {
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t\n", t.name, t.figure, t.goal, t.met)
	}
	w.Flush()
}

// median returns the median of xs (the mean of the middle two for an
// even count); 0 for none.
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// ms formats a duration in milliseconds with one decimal.
func ms(d time.Duration) string { return fmt.Sprintf("%.1f", float64(d)/float64(time.Millisecond)) }
