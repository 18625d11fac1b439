// Command loadgen measures a superserver's per-connection cost: each
// connection connects, reads until EOF (the handler writes a short reply
// and exits), and closes. It reports connections per second and the
// connect-to-EOF latency distribution.
//
// It only ever connects to a loopback address (127.0.0.0/8, ::1 or
// "localhost"): any other address is refused before a single packet is
// sent. A run is bounded by both -n and -duration.
//
// Besides a human-readable summary on stderr, it prints one line on
// stdout for scripts:
//
//	result name=superd c=16 conns=3000 errors=0 rate=812.4 p50_us=... p90_us=... p99_us=... max_us=... truncated=0
//
// The exit status is 0 when every connection succeeded, 1 when some
// failed (or a reply lacked -expect), and 2 on bad flags.
package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// maxReply bounds how much of a reply is read and kept; a handler that
// sends more is still read to EOF but only this much is compared.
const maxReply = 64 << 10

type options struct {
	addr     string
	name     string
	n        int
	c        int
	timeout  time.Duration
	duration time.Duration
	expect   string
}

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	var o options
	fs := flag.NewFlagSet("loadgen", flag.ContinueOnError)
	fs.StringVar(&o.addr, "addr", "", "loopback `host:port` to connect to (required)")
	fs.StringVar(&o.name, "name", "server", "name printed in the result line")
	fs.IntVar(&o.n, "n", 1000, "total connections")
	fs.IntVar(&o.c, "c", 1, "concurrent connections")
	fs.DurationVar(&o.timeout, "timeout", 5*time.Second, "limit for one connection, connect to EOF")
	fs.DurationVar(&o.duration, "duration", 60*time.Second, "limit for the whole run; no connection starts after it")
	fs.StringVar(&o.expect, "expect", "", "text every reply must contain (empty: any reply)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	addr, err := loopbackAddr(o.addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		return 2
	}
	if o.n < 1 || o.c < 1 || o.timeout <= 0 || o.duration <= 0 {
		fmt.Fprintln(os.Stderr, "loadgen: -n and -c must be at least 1, -timeout and -duration positive")
		return 2
	}
	if strings.ContainsAny(o.name, " \t\n=") {
		fmt.Fprintln(os.Stderr, "loadgen: -name must not contain blanks or '='")
		return 2
	}
	r := measure(addr.String(), o)
	r.print(os.Stderr, os.Stdout, o)
	if r.errors > 0 {
		return 1
	}
	return 0
}

// loopbackAddr parses host:port and accepts only loopback IP literals and
// "localhost" (taken as 127.0.0.1, so no resolver is consulted).
func loopbackAddr(s string) (netip.AddrPort, error) {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("-addr %q: %w", s, err)
	}
	if host == "localhost" {
		host = "127.0.0.1"
	}
	ap, err := netip.ParseAddrPort(net.JoinHostPort(host, port))
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("-addr %q: want a loopback IP literal and a port: %w", s, err)
	}
	if !ap.Addr().Unmap().IsLoopback() || ap.Addr().Zone() != "" {
		return netip.AddrPort{}, fmt.Errorf("-addr %q: refusing a non-loopback address", s)
	}
	if ap.Port() == 0 {
		return netip.AddrPort{}, fmt.Errorf("-addr %q: port 0", s)
	}
	return ap, nil
}

// result is what one run measured.
type result struct {
	conns     int             // connections that completed with a good reply
	errors    int             // connections that failed or replied wrongly
	firstErrs []string        // a few error messages, for the summary
	lat       []time.Duration // connect-to-EOF latency of each good connection, sorted
	elapsed   time.Duration
	truncated bool // -duration ended the run before -n connections
}

// worker is one client loop's share of the result; merged after the run.
type worker struct {
	lat  []time.Duration
	errs []string
	bad  int
}

// measure runs o.c client loops until o.n connections were made or
// o.duration has passed.
func measure(addr string, o options) result {
	ctx, cancel := context.WithTimeout(context.Background(), o.duration)
	defer cancel()
	var next atomic.Int64
	workers := make([]worker, o.c)
	var wg sync.WaitGroup
	start := time.Now()
	for i := range workers {
		w := &workers[i]
		wg.Go(func() {
			for ctx.Err() == nil && next.Add(1) <= int64(o.n) {
				d, err := once(ctx, addr, o)
				if err != nil && ctx.Err() != nil {
					break // -duration cut this connection short: truncated, not failed
				}
				if err != nil {
					w.bad++
					if len(w.errs) < 3 {
						w.errs = append(w.errs, err.Error())
					}
					continue
				}
				w.lat = append(w.lat, d)
			}
		})
	}
	wg.Wait()
	r := result{elapsed: time.Since(start)}
	for _, w := range workers {
		r.lat = append(r.lat, w.lat...)
		r.errors += w.bad
		r.firstErrs = append(r.firstErrs, w.errs...)
	}
	slices.Sort(r.lat)
	r.conns = len(r.lat)
	r.truncated = r.conns+r.errors < o.n
	return r
}

// once makes one connection: connect, read to EOF, close.
func once(ctx context.Context, addr string, o options) (time.Duration, error) {
	start := time.Now()
	deadline := start.Add(o.timeout)
	dctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(dctx, "tcp", addr)
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	if err := conn.SetDeadline(deadline); err != nil {
		return 0, err
	}
	var buf bytes.Buffer
	if _, err := io.Copy(&limitedBuffer{&buf}, conn); err != nil {
		return 0, fmt.Errorf("read: %w", err)
	}
	took := time.Since(start)
	if o.expect != "" && !strings.Contains(buf.String(), o.expect) {
		return 0, fmt.Errorf("reply %q lacks %q", truncate(buf.String(), 40), o.expect)
	}
	return took, nil
}

// limitedBuffer keeps the first maxReply bytes and discards the rest.
type limitedBuffer struct{ b *bytes.Buffer }

func (l *limitedBuffer) Write(p []byte) (int, error) {
	if room := maxReply - l.b.Len(); room > 0 {
		l.b.Write(p[:min(room, len(p))])
	}
	return len(p), nil
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}

// quantile returns the q-quantile (nearest rank) of sorted durations.
func quantile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(q*float64(len(sorted))+0.999999) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

func (r result) print(human, machine io.Writer, o options) {
	rate := 0.0
	if r.elapsed > 0 {
		rate = float64(r.conns) / r.elapsed.Seconds()
	}
	us := func(d time.Duration) int64 { return d.Microseconds() }
	p50, p90, p99 := quantile(r.lat, 0.50), quantile(r.lat, 0.90), quantile(r.lat, 0.99)
	var maxLat time.Duration
	if len(r.lat) > 0 {
		maxLat = r.lat[len(r.lat)-1]
	}
	fmt.Fprintf(human, "%s: %d connections (c=%d) in %v: %.1f conn/s, latency p50 %v p90 %v p99 %v max %v, %d errors\n",
		o.name, r.conns, o.c, r.elapsed.Round(time.Millisecond), rate, p50, p90, p99, maxLat, r.errors)
	for _, e := range r.firstErrs {
		fmt.Fprintln(human, "  error:", e)
	}
	if r.truncated {
		fmt.Fprintf(human, "  -duration %v ended the run before -n %d\n", o.duration, o.n)
	}
	trunc := 0
	if r.truncated {
		trunc = 1
	}
	fmt.Fprintf(machine, "result name=%s c=%d conns=%d errors=%d rate=%.1f p50_us=%d p90_us=%d p99_us=%d max_us=%d elapsed_ms=%d truncated=%d\n",
		o.name, o.c, r.conns, r.errors, rate, us(p50), us(p90), us(p99), us(maxLat), r.elapsed.Milliseconds(), trunc)
}
