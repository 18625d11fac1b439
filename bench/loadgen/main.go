// Command loadgen measures a superserver's per-connection cost. Each
// connection connects, sends one line ("loadgen <name> <seq>\n"),
// half-closes its sending side, reads the reply until EOF and closes; the
// reply must equal the line, byte for byte. That suits both a handler that
// echoes one line and exits and an RFC 862 echo service, which ends when
// the client's side is shut. It reports connections per second, the
// connect-to-EOF latency distribution and the failures.
//
// It only ever connects to a loopback address (127.0.0.0/8, ::1 or
// "localhost"): any other address is refused before a single packet is
// sent. For an IPv4 target each connection binds the next source address
// of -source (default 127.1.0.0/16, a loopback prefix too), with
// IP_BIND_ADDRESS_NO_PORT, so the 4-tuples spread over many addresses and
// the ephemeral ports of one address never run out, however many
// connections sit in TIME_WAIT.
//
// A run is bounded by -n (connections) and by -duration (no connection
// starts after it); each connection is bounded by -timeout, so a run
// lasts at most -duration plus -timeout.
//
// Besides a human-readable summary on stderr, it prints one line on
// stdout for scripts:
//
//	result name=superd c=8 conns=3000 errors=0 rate=812.4 p50_us=... p90_us=... p99_us=... max_us=... elapsed_ms=...
//
// The exit status is 0 when every connection got its line back, 1 when
// any failed, and 2 on bad flags.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// maxReply bounds how much of a reply is read and kept; a reply longer
// than the line is wrong anyway, so one byte more than any line suffices.
const maxReply = 512

type options struct {
	addr     netip.AddrPort
	name     string
	n        int
	c        int
	timeout  time.Duration
	duration time.Duration
	sources  netip.Prefix // client source addresses; invalid: the kernel picks
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	o, err := parseFlags(args, stderr)
	if err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(stderr, "loadgen:", err)
		}
		return 2
	}
	r := measure(o)
	r.print(stderr, stdout, o)
	if r.errors > 0 {
		return 1
	}
	return 0
}

func parseFlags(args []string, stderr io.Writer) (options, error) {
	var o options
	var addr, source string
	fs := flag.NewFlagSet("loadgen", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&addr, "addr", "", "loopback `host:port` to connect to (required)")
	fs.StringVar(&o.name, "name", "server", "name printed in the result line and sent in each line")
	fs.IntVar(&o.n, "n", 1000, "total connections")
	fs.IntVar(&o.c, "c", 1, "concurrent connections")
	fs.DurationVar(&o.timeout, "timeout", 30*time.Second, "limit for one connection, connect to EOF")
	fs.DurationVar(&o.duration, "duration", 60*time.Second, "limit for the whole run: no connection starts after it")
	fs.StringVar(&source, "source", "127.1.0.0/16", "loopback IPv4 `prefix` whose addresses the client sockets bind in turn (\"\": the kernel's choice)")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	var err error
	if o.addr, err = loopbackAddr(addr); err != nil {
		return o, err
	}
	if source != "" {
		if o.sources, err = sourcePrefix(source); err != nil {
			return o, err
		}
	}
	if o.n < 1 || o.c < 1 || o.timeout <= 0 || o.duration <= 0 {
		return o, errors.New("-n and -c must be at least 1, -timeout and -duration positive")
	}
	if o.name == "" || strings.ContainsAny(o.name, " \t\r\n=") {
		return o, errors.New("-name must be non-empty, without blanks or '='")
	}
	return o, nil
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
	ap = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	if !ap.Addr().IsLoopback() || ap.Addr().Zone() != "" {
		return netip.AddrPort{}, fmt.Errorf("-addr %q: refusing a non-loopback address", s)
	}
	if ap.Port() == 0 {
		return netip.AddrPort{}, fmt.Errorf("-addr %q: port 0", s)
	}
	return ap, nil
}

// sourcePrefix parses -source: an IPv4 prefix inside 127.0.0.0/8 with at
// least two host addresses.
func sourcePrefix(s string) (netip.Prefix, error) {
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("-source %q: %w", s, err)
	}
	p = p.Masked()
	if !p.Addr().Is4() || p.Bits() < 8 || !p.Addr().IsLoopback() {
		return netip.Prefix{}, fmt.Errorf("-source %q: want an IPv4 prefix inside 127.0.0.0/8", s)
	}
	if p.Bits() > 30 {
		return netip.Prefix{}, fmt.Errorf("-source %q: want at least 2 host addresses (/30 or wider)", s)
	}
	return p, nil
}

// sourceAddr returns the i-th source address of p, cycling over its host
// addresses and skipping the all-zeros and all-ones ones: for
// 127.1.0.0/16 that is 127.1.0.1, 127.1.0.2, ..., 127.1.255.254, 127.1.0.1.
func sourceAddr(p netip.Prefix, i uint64) netip.Addr {
	hosts := uint64(1)<<(32-p.Bits()) - 2
	b := p.Addr().As4()
	base := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	v := base + 1 + uint32(i%hosts)
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// result is what one run measured.
type result struct {
	conns     int             // connections that got their line back
	errors    int             // connections that failed or got a wrong reply
	firstErrs []string        // a few error messages, for the summary
	lat       []time.Duration // connect-to-EOF latency of each good connection, sorted
	elapsed   time.Duration   // from the first connect to the last connection's end
	byTime    bool            // -duration, not -n, ended the run
}

// worker is one client loop's share of the result; merged after the run.
type worker struct {
	lat  []time.Duration
	errs []string
	bad  int
}

// measure runs o.c client loops until o.n connections were made or
// o.duration has passed; connections under way then run to their end.
func measure(o options) result {
	stop := time.Now().Add(o.duration)
	var next atomic.Uint64
	var stopped atomic.Bool
	workers := make([]worker, o.c)
	var wg sync.WaitGroup
	start := time.Now()
	for i := range workers {
		w := &workers[i]
		wg.Go(func() {
			for {
				seq := next.Add(1) - 1
				if seq >= uint64(o.n) {
					return
				}
				if !time.Now().Before(stop) {
					stopped.Store(true)
					return
				}
				d, err := once(o, seq)
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
	r := result{elapsed: time.Since(start), byTime: stopped.Load()}
	for _, w := range workers {
		r.lat = append(r.lat, w.lat...)
		r.errors += w.bad
		r.firstErrs = append(r.firstErrs, w.errs...)
	}
	slices.Sort(r.lat)
	r.conns = len(r.lat)
	return r
}

// dialer returns the dialer for connection seq: for an IPv4 target with
// o.sources, one bound to the seq-th source address, its port left to
// connect (IP_BIND_ADDRESS_NO_PORT) so that only the whole 4-tuple must be
// unique.
func dialer(o options, seq uint64, deadline time.Time) *net.Dialer {
	d := &net.Dialer{Deadline: deadline}
	if !o.sources.IsValid() || !o.addr.Addr().Is4() {
		return d
	}
	d.LocalAddr = net.TCPAddrFromAddrPort(netip.AddrPortFrom(sourceAddr(o.sources, seq), 0))
	d.Control = func(_, _ string, c syscall.RawConn) error {
		var serr error
		if err := c.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_BIND_ADDRESS_NO_PORT, 1)
		}); err != nil {
			return err
		}
		if serr != nil {
			return fmt.Errorf("setsockopt IP_BIND_ADDRESS_NO_PORT: %w", serr)
		}
		return nil
	}
	return d
}

// once makes connection seq: connect, send the line, shut the sending
// side, read to EOF, close, compare.
func once(o options, seq uint64) (time.Duration, error) {
	line := "loadgen " + o.name + " " + strconv.FormatUint(seq, 10) + "\n"
	start := time.Now()
	deadline := start.Add(o.timeout)
	conn, err := dialer(o, seq, deadline).DialContext(context.Background(), "tcp", o.addr.String())
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	tc := conn.(*net.TCPConn)
	if err := tc.SetDeadline(deadline); err != nil {
		return 0, err
	}
	if _, err := io.WriteString(tc, line); err != nil {
		return 0, fmt.Errorf("write: %w", err)
	}
	if err := tc.CloseWrite(); err != nil {
		return 0, fmt.Errorf("shutdown: %w", err)
	}
	var buf [maxReply]byte
	got := 0
	for {
		n, err := tc.Read(buf[got:])
		got += n
		if err == io.EOF {
			break
		}
		if err != nil {
			return 0, fmt.Errorf("read after %d bytes: %w", got, err)
		}
		if got == len(buf) {
			return 0, fmt.Errorf("reply longer than %d bytes", len(buf)-1)
		}
	}
	took := time.Since(start)
	if reply := string(buf[:got]); reply != line {
		return 0, fmt.Errorf("reply %q, want %q", reply, line)
	}
	return took, nil
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
	if r.byTime {
		fmt.Fprintf(human, "  -duration %v ended the run before -n %d\n", o.duration, o.n)
	}
	fmt.Fprintf(machine, "result name=%s c=%d conns=%d errors=%d rate=%.1f p50_us=%d p90_us=%d p99_us=%d max_us=%d elapsed_ms=%d\n",
		o.name, o.c, r.conns, r.errors, rate, us(p50), us(p90), us(p99), us(maxLat), r.elapsed.Milliseconds())
}
