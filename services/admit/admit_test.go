package admit

import (
	"context"
	"errors"
	"net/netip"
	"strconv"
	"testing"
	"testing/synctest"
	"time"

	"github.com/superd/superd/config"
	"github.com/superd/superd/internal/metrics"
	"github.com/superd/superd/internal/metrics/metricstest"
	"github.com/superd/superd/internal/testkit"
)

// TestSlots checks the instances counter: acquire below the limit at
// once, wait at the limit, wake on release and on poke after the limit
// grew, and give up when the context ends. synctest.Wait makes "still
// waiting" a fact rather than a timeout.
func TestSlots(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := slots{wake: make(chan struct{})}
		g.setLimit(2)
		ctx := context.Background()

		for i := range 2 {
			if err := g.acquire(ctx, nil); err != nil {
				t.Fatalf("acquire %d below the limit: %v", i+1, err)
			}
		}
		if got := g.count(); got != 2 {
			t.Fatalf("count after 2 acquires = %d, want 2", got)
		}

		waiter := func(ctx context.Context) chan error {
			ch := make(chan error, 1)
			go func() { ch <- g.acquire(ctx, nil) }()
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
		if got := g.waiting(); got != 1 {
			t.Fatalf("waiting with one acquire blocked = %d, want 1", got)
		}
		g.release()
		synctest.Wait()
		if err := <-w; err != nil {
			t.Fatalf("acquire after a release: %v", err)
		}
		if got := g.count(); got != 2 {
			t.Fatalf("count after release+acquire = %d, want 2", got)
		}

		// A wake without a larger limit (Configure with the same
		// instances) wakes the waiter, which waits again.
		w = waiter(ctx)
		g.setLimit(2)
		if !blocked(w) {
			t.Fatalf("acquire returned after a poke with the limit unchanged")
		}
		// A larger limit wakes the waiter at once.
		g.setLimit(3)
		synctest.Wait()
		if err := <-w; err != nil {
			t.Fatalf("acquire after the limit grew to 3: %v", err)
		}
		if got := g.count(); got != 3 {
			t.Fatalf("count = %d, want 3", got)
		}

		// A smaller limit: nothing is taken back, new acquires wait.
		g.setLimit(1)
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
		if got := g.waiting(); got != 0 {
			t.Fatalf("waiting after every acquire returned = %d, want 0", got)
		}
	})
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
	c := sources{n: make(map[netip.Prefix]int)}
	a := sourceOf(netip.MustParseAddr("192.0.2.1"))
	b := sourceOf(netip.MustParseAddr("192.0.2.2"))
	steps := []struct {
		op   string
		key  netip.Prefix
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
		rec := testkit.NewRecorder(t)
		log := rec.Logger()
		var d denials
		lines := func(reason string) []testkit.Entry { return rec.Filter(testkit.Match("refused", "reason", reason)) }

		d.log(log, "access", "192.0.2.1:1000")
		for i := range 4 {
			d.log(log, "access", "192.0.2.1:"+strconv.Itoa(1001+i))
		}
		d.log(log, "per_source", "192.0.2.9:2000")
		if got := lines("access"); len(got) != 1 || got[0].Attrs["count"] != "1" || got[0].Attrs["remote"] != "192.0.2.1:1000" {
			t.Fatalf("access lines after 5 refusals in one instant = %v, want one with count=1 remote=192.0.2.1:1000", got)
		}
		if got := lines("per_source"); len(got) != 1 || got[0].Attrs["count"] != "1" {
			t.Fatalf("per_source lines = %v, want one with count=1 (reasons are limited apart)", got)
		}
		if got := rec.All()[0].Level; got.String() != "WARN" {
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
		if len(got) != 2 || got[1].Attrs["count"] != "5" || got[1].Attrs["remote"] != "192.0.2.1:1100" {
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
		if len(got) != 3 || got[2].Attrs["count"] != "2" || got[2].Attrs["remote"] != "192.0.2.1:1300" {
			t.Errorf("access lines = %v, want a third one with count=2 remote=192.0.2.1:1300", got)
		}
		total := 0
		for _, l := range got {
			n, _ := strconv.Atoi(l.Attrs["count"])
			total += n
		}
		if total != 8 {
			t.Errorf("counts add up to %d, want 8 refusals", total)
		}
	})
}

// TestTokenFollowsRateChange checks that a wait for a token on a slow
// bucket ends when a reload lifts the rate, instead of sitting out the
// old bucket's delay. The bubble's clock makes "still waiting" a fact.
func TestTokenFollowsRateChange(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a := New()
		a.Configure(1, 0.05) // one token every 20s, burst 1
		if !a.Token(context.Background(), nil) {
			t.Fatal("first token refused")
		}
		began := time.Now()
		got := make(chan bool, 1)
		go func() { got <- a.Token(context.Background(), nil) }()
		synctest.Wait()
		select {
		case <-got:
			t.Fatal("second token came at once from a 0.05/s bucket")
		default:
		}
		a.Configure(1, 0)
		synctest.Wait()
		select {
		case ok := <-got:
			if !ok {
				t.Errorf("token after the rate was lifted = false")
			}
		default:
			t.Fatal("a wait for a token did not follow the rate change")
		}
		if took := time.Since(began); took != 0 {
			t.Errorf("the token came %v after the wait began, want at the rate change (no time passed)", took)
		}
	})
}

// TestDenialsClose checks that Close logs the refusals a summary holds
// back and stops its timer: after Close, nothing logs, neither the timer
// nor a refusal that comes later (before the fix the timer logged after
// shutdown).
func TestDenialsClose(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rec := testkit.NewRecorder(t)
		log := rec.Logger()
		a := New()
		a.Configure(4, 0)
		c := Client{Addr: netip.MustParseAddr("192.0.2.1"), Remote: "192.0.2.1:1000"}
		svc := &config.Service{Access: config.Access{NoAccess: []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}}}
		for range 3 {
			if !a.Acquire(context.Background(), nil) {
				t.Fatal("Acquire refused below the limit")
			}
			if _, ok := a.Check(svc, c, log, nil); ok {
				t.Fatal("a client in no_access was admitted")
			}
		}
		refused := testkit.Match("refused", "reason", "access")
		if n := rec.Count(refused); n != 1 {
			t.Fatalf("%d refused lines for 3 refusals in one instant, want 1 (the others held back)", n)
		}
		a.Close()
		got := rec.Filter(refused)
		if len(got) != 2 || got[1].Attrs["count"] != "2" {
			t.Fatalf("refused lines after Close = %v, want a second one with count=2 (Close logs what is held back)", got)
		}
		a.Close() // idempotent
		a.denials.log(log, "access", "192.0.2.1:2000")
		time.Sleep(2 * denialInterval)
		synctest.Wait()
		if n := rec.Count(testkit.Prefix("")); n != 2 {
			t.Errorf("%d lines logged in all, want 2: nothing may log after Close", n)
		}
		if got := a.Slots(); got != 0 {
			t.Errorf("slots in use after refusals = %d, want 0", got)
		}
	})
}

// TestCheck checks who passes: unix clients always, unknown clients
// never, TCP clients by the access lists and per_source; and that
// Running and the slots follow admissions and releases.
func TestCheck(t *testing.T) {
	rec := testkit.NewRecorder(t)
	log := rec.Logger()
	a := New()
	a.Configure(10, 0)
	svc := &config.Service{
		Access: config.Access{OnlyFrom: []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}},
		Limits: config.Limits{PerSource: 1},
	}
	client := func(ip string) Client {
		return Client{Addr: netip.MustParseAddr(ip), Remote: ip + ":1"}
	}
	check := func(c Client) (func(), bool) {
		t.Helper()
		if !a.Acquire(context.Background(), nil) {
			t.Fatal("Acquire refused below the limit")
		}
		return a.Check(svc, c, log, nil)
	}
	relUnix, ok := check(Client{Unix: true, Remote: "unix"})
	if !ok {
		t.Fatal("a unix client was refused")
	}
	if _, ok := check(Client{Remote: "?"}); ok {
		t.Error("a client superd cannot identify was admitted")
	}
	if _, ok := check(client("198.51.100.1")); ok {
		t.Error("a client outside only_from was admitted")
	}
	rel1, ok := check(client("192.0.2.1"))
	if !ok {
		t.Fatal("an allowed client was refused")
	}
	if _, ok := check(client("192.0.2.1")); ok {
		t.Error("a second client of one source was admitted with per_source = 1")
	}
	rel2, ok := check(client("192.0.2.2"))
	if !ok {
		t.Fatal("a client of another source was refused")
	}
	if got, slots := a.Running(), a.Slots(); got != 3 || slots != 3 {
		t.Errorf("Running, Slots = %d, %d with three clients admitted; want 3, 3", got, slots)
	}
	rel1()
	if _, ok := check(client("192.0.2.1")); !ok {
		t.Error("a client whose source's place was given back was refused")
	}
	relUnix()
	rel2()
	for _, reason := range []string{"unknown peer", "access", "per_source"} {
		if n := rec.Count(testkit.Match("refused", "reason", reason)); n != 1 {
			t.Errorf("%d refused lines with reason %q, want 1", n, reason)
		}
	}
	if got := a.Running(); got != 1 {
		t.Errorf("Running = %d, want 1 (the last client)", got)
	}
}

// TestCheckCountsRefusals checks that every refusal counts once in the
// service's metrics, by reason, and that an admitted client counts
// nothing.
func TestCheckCountsRefusals(t *testing.T) {
	reg := metrics.New("test", "test")
	m := reg.For("svc")
	log := testkit.NewRecorder(t).Logger()
	a := New()
	a.Configure(10, 0)
	svc := &config.Service{
		Access: config.Access{NoAccess: []netip.Prefix{netip.MustParsePrefix("198.51.100.0/24")}},
		Limits: config.Limits{PerSource: 1},
	}
	check := func(c Client) (func(), bool) {
		t.Helper()
		if !a.Acquire(context.Background(), m) {
			t.Fatal("Acquire refused below the limit")
		}
		return a.Check(svc, c, log, m)
	}
	allowed := Client{Addr: netip.MustParseAddr("192.0.2.1"), Remote: "192.0.2.1:1"}
	rel, ok := check(allowed)
	if !ok {
		t.Fatal("an allowed client was refused")
	}
	check(allowed)                                                                     // per_source
	check(allowed)                                                                     // per_source
	check(Client{Addr: netip.MustParseAddr("198.51.100.7"), Remote: "198.51.100.7:1"}) // no_access
	check(Client{Remote: "?"})                                                         // unknown: access
	if !a.AllowDatagram(svc.Access, netip.MustParseAddr("192.0.2.1"), "192.0.2.1:1", log, m) ||
		a.AllowDatagram(svc.Access, netip.MustParseAddr("198.51.100.7"), "198.51.100.7:1", log, m) {
		t.Fatal("AllowDatagram judged wrongly")
	}
	rel()
	f := metricstest.Gather(t, reg.Gatherer())
	for reason, want := range map[string]float64{"per_source": 2, "access": 3, "start_failed": 0} {
		if got := f.Value(t, "superd_connections_refused_total", "service", "svc", "reason", reason); got != want {
			t.Errorf("refused{reason=%q} = %v, want %v", reason, got, want)
		}
	}
	for _, reason := range []string{"instances", "rate"} {
		if got := f.Value(t, "superd_admission_waits_total", "service", "svc", "reason", reason); got != 0 {
			t.Errorf("waits{reason=%q} = %v with neither limit reached, want 0", reason, got)
		}
	}
}

// TestAdmissionWaitsCounted checks that a wait for a slot and a wait for
// a rate token each count once, for its limit, however long they last
// and however often they wake. The bubble's clock makes "still waiting"
// a fact.
func TestAdmissionWaitsCounted(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		reg := metrics.New("test", "test")
		m := reg.For("svc")
		waits := func(reason string) float64 {
			return metricstest.Gather(t, reg.Gatherer()).Value(t, "superd_admission_waits_total", "service", "svc", "reason", reason)
		}
		a := New()
		a.Configure(1, 0)
		ctx := context.Background()
		if !a.Acquire(ctx, m) {
			t.Fatal("first Acquire refused")
		}
		got := make(chan bool, 1)
		go func() { got <- a.Acquire(ctx, m) }()
		synctest.Wait()
		a.Configure(1, 0) // wakes the waiter, which waits on
		synctest.Wait()
		if n := waits("instances"); n != 1 {
			t.Fatalf("waits{instances} with one Acquire blocked (woken once) = %v, want 1", n)
		}
		a.Return()
		if !<-got {
			t.Fatal("the blocked Acquire failed after a Return")
		}
		if n := waits("instances"); n != 1 {
			t.Errorf("waits{instances} after the wait ended = %v, want 1", n)
		}

		// The rate: one token a second, burst 1.
		a.Return()
		a.Configure(10, 1)
		if !a.Acquire(ctx, m) {
			t.Fatal("Acquire with a full bucket refused")
		}
		if n := waits("rate"); n != 0 {
			t.Fatalf("waits{rate} after a token from a full bucket = %v, want 0", n)
		}
		if !a.Acquire(ctx, m) {
			t.Fatal("Acquire on an empty bucket failed")
		}
		if n, i := waits("rate"), waits("instances"); n != 1 || i != 1 {
			t.Errorf("waits{rate}, waits{instances} after waiting for a token = %v, %v; want 1, 1", n, i)
		}
	})
}
