package services

import (
	"context"
	"errors"
	"net/netip"
	"strconv"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

// TestSlots checks the instances counter: acquire below the limit at
// once, wait at the limit, wake on release and on poke after the limit
// grew, and give up when the context ends. synctest.Wait makes "still
// waiting" a fact rather than a timeout.
func TestSlots(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := slots{wake: make(chan struct{})}
		var limit atomic.Int64
		limit.Store(2)
		lim := func() int { return int(limit.Load()) }
		ctx := context.Background()

		for i := range 2 {
			if err := g.acquire(ctx, lim); err != nil {
				t.Fatalf("acquire %d below the limit: %v", i+1, err)
			}
		}
		if got := g.count(); got != 2 {
			t.Fatalf("count after 2 acquires = %d, want 2", got)
		}

		waiter := func(ctx context.Context) chan error {
			ch := make(chan error, 1)
			go func() { ch <- g.acquire(ctx, lim) }()
			return ch
		}
		blocked := func(ch chan error) bool {
			synctest.Wait()
			select {
			case err := <-ch:
				t.Logf("acquire returned %v", err)
				return false
			default:
				return true
			}
		}

		// At the limit: waits until a release.
		w := waiter(ctx)
		if !blocked(w) {
			t.Fatalf("acquire at the limit (2 of 2 used) did not wait")
		}
		g.release()
		synctest.Wait()
		if err := <-w; err != nil {
			t.Fatalf("acquire after a release: %v", err)
		}
		if got := g.count(); got != 2 {
			t.Fatalf("count after release+acquire = %d, want 2", got)
		}

		// A poke without a larger limit wakes the waiter, which waits again.
		w = waiter(ctx)
		g.poke()
		if !blocked(w) {
			t.Fatalf("acquire returned after a poke with the limit unchanged")
		}
		// A larger limit takes effect on the next poke (Update does that).
		limit.Store(3)
		g.poke()
		synctest.Wait()
		if err := <-w; err != nil {
			t.Fatalf("acquire after the limit grew to 3: %v", err)
		}
		if got := g.count(); got != 3 {
			t.Fatalf("count = %d, want 3", got)
		}

		// A smaller limit: nothing is taken back, new acquires wait.
		limit.Store(1)
		g.release()
		cctx, cancel := context.WithCancel(ctx)
		w = waiter(cctx)
		if !blocked(w) {
			t.Fatalf("acquire with 2 used and limit 1 did not wait")
		}
		cancel()
		synctest.Wait()
		if err := <-w; !errors.Is(err, context.Canceled) {
			t.Fatalf("acquire after cancel = %v, want context.Canceled", err)
		}
		if got := g.count(); got != 2 {
			t.Fatalf("count after a cancelled acquire = %d, want 2", got)
		}
	})
}

// TestLoopGuard feeds start times to loopGuard.record: loopStarts starts
// within loopWindow mark a loop, older starts do not count, and the
// count starts afresh after a loop was reported.
func TestLoopGuard(t *testing.T) {
	ms := func(n int) time.Duration { return time.Duration(n) * time.Millisecond }
	burst := func(n int, step time.Duration) []time.Duration {
		out := make([]time.Duration, n)
		for i := range out {
			out[i] = time.Duration(i) * step
		}
		return out
	}
	tests := []struct {
		name   string
		starts []time.Duration // offsets from an epoch
		want   []int           // indexes of the starts that report a loop
	}{
		{"one start short of a loop", burst(loopStarts-1, ms(10)), nil},
		{"the 40th start within the window loops", burst(loopStarts, ms(10)), []int{loopStarts - 1}},
		{"counting starts afresh after a loop", burst(2*loopStarts+5, ms(1)), []int{loopStarts - 1, 2*loopStarts - 1}},
		{"spread out starts never loop", burst(200, loopWindow/time.Duration(loopStarts-2)), nil},
		{"a start exactly one window old no longer counts",
			append(burst(loopStarts-1, 0), loopWindow), nil},
		{"a start just inside the window counts",
			append(burst(loopStarts-1, 0), loopWindow-time.Nanosecond), []int{loopStarts - 1}},
	}
	epoch := time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var g loopGuard
			var got []int
			for i, off := range tt.starts {
				if g.record(epoch.Add(off)) {
					got = append(got, i)
				}
			}
			if !equalInts(got, tt.want) {
				t.Errorf("loops reported at starts %v, want %v", got, tt.want)
			}
		})
	}
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestSourceOf checks the per_source key: an IPv4 client is its /32, an
// IPv6 client its /64 without zone, and an IPv4-mapped IPv6 address is
// the IPv4 client it stands for.
func TestSourceOf(t *testing.T) {
	tests := []struct{ ip, want string }{
		{"192.0.2.1", "192.0.2.1/32"},
		{"127.0.0.1", "127.0.0.1/32"},
		{"2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"},
		{"2001:db8:1:2:ffff::1", "2001:db8:1:2::/64"},
		{"::1", "::/64"},
		{"fe80::1%eth0", "fe80::/64"},
		{"::ffff:192.0.2.1", "192.0.2.1/32"},
	}
	for _, tt := range tests {
		got := sourceOf(netip.MustParseAddr(tt.ip))
		if got.String() != tt.want {
			t.Errorf("sourceOf(%s) = %s, want %s", tt.ip, got, tt.want)
		}
	}
	// Two hosts of one /64 share a key; two IPv4 hosts do not.
	if a, b := sourceOf(netip.MustParseAddr("2001:db8::1")), sourceOf(netip.MustParseAddr("2001:db8::2")); a != b {
		t.Errorf("keys of two addresses in one /64: %s and %s, want equal", a, b)
	}
	if a, b := sourceOf(netip.MustParseAddr("::ffff:192.0.2.1")), sourceOf(netip.MustParseAddr("::ffff:198.51.100.7")); a == b {
		t.Errorf("two different IPv4-mapped clients share the key %s, want distinct keys", a)
	}
}

// TestSources checks the per-client counter: the limit holds per key,
// give frees one place, and a key whose count drops to zero is deleted.
func TestSources(t *testing.T) {
	c := sources{n: make(map[sourceKey]int)}
	a := sourceOf(netip.MustParseAddr("192.0.2.1"))
	b := sourceOf(netip.MustParseAddr("192.0.2.2"))
	steps := []struct {
		op   string
		key  sourceKey
		want bool
	}{
		{"take", a, true},
		{"take", a, true},
		{"take", a, false}, // limit 2 reached for a
		{"take", b, true},  // b is counted apart
		{"give", a, true},
		{"take", a, true},
		{"take", a, false},
	}
	for i, s := range steps {
		switch s.op {
		case "take":
			if got := c.take(s.key, 2); got != s.want {
				t.Fatalf("step %d: take(%s) = %v, want %v", i, s.key, got, s.want)
			}
		case "give":
			c.give(s.key)
		}
	}
	c.give(a)
	c.give(a)
	c.give(b)
	if len(c.n) != 0 {
		t.Errorf("counts after every place was given back = %v, want an empty map", c.n)
	}
}

// TestDenials checks refusal logging: at most one line per second per
// reason, each carrying the number of refusals since the last line. The
// bubble's fake clock makes the second exact.
func TestDenials(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rec, log := newRecorder(t)
		var d denials
		lines := func(reason string) []entry { return rec.filter(match("refused", "reason", reason)) }

		d.log(log, "access", "192.0.2.1:1000")
		for i := range 4 {
			d.log(log, "access", "192.0.2.1:"+strconv.Itoa(1001+i))
		}
		d.log(log, "per_source", "192.0.2.9:2000")
		if got := lines("access"); len(got) != 1 || got[0].attrs["count"] != "1" || got[0].attrs["remote"] != "192.0.2.1:1000" {
			t.Fatalf("access lines after 5 refusals in one instant = %v, want one with count=1 remote=192.0.2.1:1000", got)
		}
		if got := lines("per_source"); len(got) != 1 || got[0].attrs["count"] != "1" {
			t.Fatalf("per_source lines = %v, want one with count=1 (reasons are limited apart)", got)
		}
		if got := rec.all()[0].level; got.String() != "WARN" {
			t.Errorf("refusal level = %s, want WARN", got)
		}

		time.Sleep(time.Second - time.Millisecond)
		d.log(log, "access", "192.0.2.1:1100")
		if got := len(lines("access")); got != 1 {
			t.Fatalf("access lines 999ms after the first = %d, want 1", got)
		}
		// At the end of the second the held-back refusals are logged
		// without waiting for another one: 4 + 1.
		time.Sleep(time.Millisecond)
		synctest.Wait()
		got := lines("access")
		if len(got) != 2 || got[1].attrs["count"] != "5" || got[1].attrs["remote"] != "192.0.2.1:1100" {
			t.Fatalf("access lines 1s after the first = %v, want a second one with count=5 remote=192.0.2.1:1100", got)
		}

		// The next second starts from that line; the flood's tail is not
		// lost.
		d.log(log, "access", "192.0.2.1:1200")
		time.Sleep(500 * time.Millisecond)
		d.log(log, "access", "192.0.2.1:1300")
		if got := len(lines("access")); got != 2 {
			t.Fatalf("access lines within the second = %d, want still 2", got)
		}
		time.Sleep(600 * time.Millisecond)
		synctest.Wait()
		got = lines("access")
		if len(got) != 3 || got[2].attrs["count"] != "2" || got[2].attrs["remote"] != "192.0.2.1:1300" {
			t.Errorf("access lines = %v, want a third one with count=2 remote=192.0.2.1:1300", got)
		}
		total := 0
		for _, l := range got {
			n, _ := strconv.Atoi(l.attrs["count"])
			total += n
		}
		if total != 8 {
			t.Errorf("counts add up to %d, want 8 refusals", total)
		}
	})
}

// TestTokenFollowsRateChange checks that a wait for a token on a slow
// bucket ends when a reload lifts the rate, instead of sitting out the
// old bucket's delay.
func TestTokenFollowsRateChange(t *testing.T) {
	a := newAdmission()
	a.setRate(0.05) // one token every 20s, burst 1
	if !a.token(context.Background()) {
		t.Fatal("first token refused")
	}
	got := make(chan bool, 1)
	go func() { got <- a.token(context.Background()) }()
	select {
	case <-got:
		t.Fatal("second token came at once from a 0.05/s bucket")
	case <-time.After(100 * time.Millisecond):
	}
	a.setRate(0)
	select {
	case ok := <-got:
		if !ok {
			t.Errorf("token after the rate was lifted = false")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("waiting admit did not follow the rate change")
	}
}
