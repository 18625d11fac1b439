// Command report turns the lines bench/bench.sh collects into the tables
// of docs/performance.md (Markdown): per target and concurrency the
// median over the rounds of conn/s (with min–max), p50 and p99 latency,
// and the daemon's and its handlers' CPU per connection; then the ratios
// of chosen pairs; then, when there are any, system calls per connection.
//
//	report -targets "cfloor superd" -ratios "superd/cfloor" results.txt
//
// It reads two kinds of lines; anything else is an error, so a broken
// run cannot print a plausible table:
//
//	result name=N c=C conns=K errors=E rate=R p50_us=X p99_us=Y ... round=I daemon_cpu_us=D handler_cpu_us=H
//	syscalls name=N conns=K calls=S threads=T
//
// daemon_cpu_us and handler_cpu_us are the run's totals (utime+stime and
// cutime+cstime deltas); report divides them by conns. It does not judge
// the figures: it exits 0 whatever they are.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("report", flag.ContinueOnError)
	fs.SetOutput(stderr)
	targets := fs.String("targets", "", "space-separated target names, in the order of the rows (default: order of appearance)")
	ratios := fs.String("ratios", "", "space-separated A/B pairs of target names to compare")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() != 1 {
		fmt.Fprintln(stderr, "usage: report [-targets LIST] [-ratios LIST] RESULTS-FILE")
		return 2
	}
	f, err := os.Open(fs.Arg(0))
	if err != nil {
		fmt.Fprintln(stderr, "report:", err)
		return 1
	}
	defer f.Close()
	d, err := parse(f)
	if err != nil {
		fmt.Fprintf(stderr, "report: %s: %v\n", fs.Arg(0), err)
		return 1
	}
	pairs, err := parsePairs(*ratios)
	if err != nil {
		fmt.Fprintln(stderr, "report:", err)
		return 2
	}
	d.write(stdout, strings.Fields(*targets), pairs)
	return 0
}

// run1 is one measured run of one target at one concurrency.
type run1 struct {
	conns, errors    int
	rate             float64
	p50, p99         float64 // µs
	daemonCPU, hdCPU float64 // µs per connection; -1: unknown
}

// key names a target at a concurrency.
type key struct {
	name string
	c    int
}

// syscalls is one strace count.
type syscalls struct {
	conns, calls, threads int
}

// data is everything read, in order of first appearance.
type data struct {
	runs  map[key][]run1
	names []string // targets in order of appearance
	concs []int    // sorted
	sys   map[string]syscalls
}

// fields splits "word k=v k=v ..." into its word and its pairs.
func fields(line string) (string, map[string]string, error) {
	words := strings.Fields(line)
	kv := make(map[string]string, len(words))
	for _, w := range words[1:] {
		k, v, ok := strings.Cut(w, "=")
		if !ok {
			return "", nil, fmt.Errorf("%q is not key=value", w)
		}
		kv[k] = v
	}
	return words[0], kv, nil
}

func parse(r io.Reader) (*data, error) {
	d := &data{runs: map[key][]run1{}, sys: map[string]syscalls{}}
	sc := bufio.NewScanner(r)
	for ln := 1; sc.Scan(); ln++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		kind, kv, err := fields(line)
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", ln, err)
		}
		p := parser{kv: kv}
		name := kv["name"]
		if name == "" {
			return nil, fmt.Errorf("line %d: no name=", ln)
		}
		switch kind {
		case "result":
			c := p.int("c")
			r := run1{
				conns: p.int("conns"), errors: p.int("errors"), rate: p.float("rate"),
				p50: p.float("p50_us"), p99: p.float("p99_us"), daemonCPU: -1, hdCPU: -1,
			}
			if r.conns > 0 {
				if _, ok := kv["daemon_cpu_us"]; ok {
					r.daemonCPU = p.float("daemon_cpu_us") / float64(r.conns)
				}
				if _, ok := kv["handler_cpu_us"]; ok {
					r.hdCPU = p.float("handler_cpu_us") / float64(r.conns)
				}
			}
			if p.err != nil {
				return nil, fmt.Errorf("line %d: %w", ln, p.err)
			}
			k := key{name, c}
			if !slices.Contains(d.names, name) {
				d.names = append(d.names, name)
			}
			if !slices.Contains(d.concs, c) {
				d.concs = append(d.concs, c)
				slices.Sort(d.concs)
			}
			d.runs[k] = append(d.runs[k], r)
		case "syscalls":
			s := syscalls{conns: p.int("conns"), calls: p.int("calls"), threads: p.int("threads")}
			if p.err != nil {
				return nil, fmt.Errorf("line %d: %w", ln, p.err)
			}
			d.sys[name] = s
		default:
			return nil, fmt.Errorf("line %d: unknown kind %q (want result or syscalls)", ln, kind)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return d, nil
}

// parser reads numbers from key=value pairs and keeps the first error.
type parser struct {
	kv  map[string]string
	err error
}

func (p *parser) float(k string) float64 {
	v, ok := p.kv[k]
	if !ok {
		p.fail(fmt.Errorf("no %s=", k))
		return 0
	}
	f, err := strconv.ParseFloat(v, 64)
	if err != nil {
		p.fail(fmt.Errorf("%s=%s: %w", k, v, err))
	}
	return f
}

func (p *parser) int(k string) int {
	f := p.float(k)
	if f != float64(int(f)) || f < 0 {
		p.fail(fmt.Errorf("%s=%v: want a whole number", k, f))
	}
	return int(f)
}

func (p *parser) fail(err error) {
	if p.err == nil {
		p.err = err
	}
}

// pair is an A/B ratio to print.
type pair struct{ a, b string }

func parsePairs(s string) ([]pair, error) {
	var ps []pair
	for _, w := range strings.Fields(s) {
		a, b, ok := strings.Cut(w, "/")
		if !ok || a == "" || b == "" {
			return nil, fmt.Errorf("-ratios: %q is not A/B", w)
		}
		ps = append(ps, pair{a, b})
	}
	return ps, nil
}

// median of vs, or -1 when vs is empty or holds an unknown (-1).
func median(vs []float64) float64 {
	if len(vs) == 0 || slices.Contains(vs, -1) {
		return -1
	}
	s := slices.Sorted(slices.Values(vs))
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// summary is the medians over the rounds of one target at one concurrency.
type summary struct {
	rounds, errors                   int
	rate, minRate, maxRate, p50, p99 float64
	daemonCPU, hdCPU                 float64
}

func (d *data) summary(k key) (summary, bool) {
	rs := d.runs[k]
	if len(rs) == 0 {
		return summary{}, false
	}
	col := func(f func(run1) float64) []float64 {
		out := make([]float64, len(rs))
		for i, r := range rs {
			out[i] = f(r)
		}
		return out
	}
	rates := col(func(r run1) float64 { return r.rate })
	s := summary{
		rounds:    len(rs),
		rate:      median(rates),
		minRate:   slices.Min(rates),
		maxRate:   slices.Max(rates),
		p50:       median(col(func(r run1) float64 { return r.p50 })),
		p99:       median(col(func(r run1) float64 { return r.p99 })),
		daemonCPU: median(col(func(r run1) float64 { return r.daemonCPU })),
		hdCPU:     median(col(func(r run1) float64 { return r.hdCPU })),
	}
	for _, r := range rs {
		s.errors += r.errors
	}
	return s, true
}

// num formats a figure with thousands separators; "–" when unknown.
func num(f float64) string {
	if f < 0 {
		return "–"
	}
	s := strconv.FormatInt(int64(f+0.5), 10)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

// ratio formats a/b; "–" when either is unknown or b is zero.
func ratio(a, b float64) string {
	if a < 0 || b <= 0 {
		return "–"
	}
	return strconv.FormatFloat(a/b, 'f', 2, 64)
}

func (d *data) write(w io.Writer, order []string, pairs []pair) {
	names := slices.Clone(order)
	for _, n := range d.names {
		if !slices.Contains(names, n) {
			names = append(names, n)
		}
	}
	fmt.Fprintln(w, "| target | c | conn/s | (min–max) | p50 µs | p99 µs | daemon CPU µs/conn | handler CPU µs/conn | rounds | errors |")
	fmt.Fprintln(w, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
	for _, c := range d.concs {
		for _, n := range names {
			s, ok := d.summary(key{n, c})
			if !ok {
				continue
			}
			fmt.Fprintf(w, "| %s | %d | %s | (%s–%s) | %s | %s | %s | %s | %d | %d |\n",
				n, c, num(s.rate), num(s.minRate), num(s.maxRate), num(s.p50), num(s.p99),
				num(s.daemonCPU), num(s.hdCPU), s.rounds, s.errors)
		}
	}
	if len(pairs) > 0 {
		fmt.Fprintln(w)
		fmt.Fprintln(w, "Ratios A/B of the medians. conn/s above 1: A serves more; p99 and daemon CPU above 1: A is slower, costs more.")
		fmt.Fprintln(w)
		head := "| A/B |"
		rule := "|---|"
		for _, what := range []string{"conn/s", "p99", "daemon CPU"} {
			for _, c := range d.concs {
				head += fmt.Sprintf(" %s c=%d |", what, c)
				rule += "---:|"
			}
		}
		fmt.Fprintln(w, head)
		fmt.Fprintln(w, rule)
		for _, p := range pairs {
			row := "| " + p.a + "/" + p.b + " |"
			for _, what := range []func(summary) float64{
				func(s summary) float64 { return s.rate },
				func(s summary) float64 { return s.p99 },
				func(s summary) float64 { return s.daemonCPU },
			} {
				for _, c := range d.concs {
					a, okA := d.summary(key{p.a, c})
					b, okB := d.summary(key{p.b, c})
					cell := "–"
					if okA && okB {
						cell = ratio(what(a), what(b))
					}
					row += " " + cell + " |"
				}
			}
			fmt.Fprintln(w, row)
		}
	}
	if len(d.sys) > 0 {
		fmt.Fprintln(w)
		fmt.Fprintln(w, "| target | system calls per connection (daemon threads only) | connections | daemon threads |")
		fmt.Fprintln(w, "|---|---:|---:|---:|")
		for _, n := range names {
			s, ok := d.sys[n]
			if !ok {
				continue
			}
			per := "–"
			if s.conns > 0 {
				per = strconv.FormatFloat(float64(s.calls)/float64(s.conns), 'f', 1, 64)
			}
			fmt.Fprintf(w, "| %s | %s | %d | %d |\n", n, per, s.conns, s.threads)
		}
	}
}
