package admit

import (
	"context"
	"net/netip"
	"sync"
	"testing"
	"testing/synctest"

	"github.com/superd/superd/config"
	"github.com/superd/superd/internal/testkit"
)

// TestObserveHoldMirror plays both processes of an upgrade: the old
// Admission has clients when Observe starts, more come and go, and the
// new Admission, holding every Change it is told, ends with exactly the
// old one's counts, so that its own limits count the old clients.
func TestObserveHoldMirror(t *testing.T) {
	log := testkit.NewRecorder(t).Logger()
	svc := &config.Service{Limits: config.Limits{PerSource: 2}}
	client := func(ip string) Client { return Client{Addr: netip.MustParseAddr(ip), Remote: ip + ":1"} }
	old := New()
	old.Configure(10, 0)
	admit := func(ip string) func() {
		t.Helper()
		if !old.Acquire(context.Background(), nil) {
			t.Fatal("Acquire refused below the limit")
		}
		rel, ok := old.Check(svc, client(ip), log, nil)
		if !ok {
			t.Fatalf("%s refused", ip)
		}
		return rel
	}
	a1 := admit("192.0.2.1")
	a2 := admit("192.0.2.1")
	b1 := admit("192.0.2.2")

	next := New()
	next.Configure(3, 0)
	var mu sync.Mutex
	var told []Change
	old.Observe(func(c Change) { mu.Lock(); told = append(told, c); mu.Unlock() })
	apply := func() {
		mu.Lock()
		defer mu.Unlock()
		for _, c := range told {
			next.Hold(c)
		}
		told = nil
	}
	apply()
	if got := next.Slots(); got != 3 {
		t.Fatalf("new Slots = %d after the snapshot, want 3 (the old clients)", got)
	}
	// A source the old process has two of is at per_source already.
	if next.sources.take(sourceOf(netip.MustParseAddr("192.0.2.1")), 2) {
		t.Error("the new process took a third client of a source the old one serves twice, with per_source = 2")
	}

	c1 := admit("192.0.2.3") // after Observe: told too
	a1()
	b1()
	apply()
	if got := next.Slots(); got != 2 {
		t.Errorf("new Slots = %d, want 2 (a2, c1)", got)
	}
	if !next.sources.take(sourceOf(netip.MustParseAddr("192.0.2.1")), 2) {
		t.Error("the source's place that the old process gave back is still held")
	}
	next.sources.give(sourceOf(netip.MustParseAddr("192.0.2.1")))
	a2()
	c1()
	apply()
	if got, n := next.Slots(), len(next.sources.n); got != 0 || n != 0 {
		t.Errorf("new Slots = %d, sources %v once the old clients ended; want 0 and none", got, next.sources.n)
	}
}

// TestHoldReleaseWakes: a client waiting for a slot that an old
// process's client holds gets it once that client ends.
func TestHoldReleaseWakes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a := New()
		a.Configure(1, 0)
		a.Hold(Change{Slots: 1})
		got := make(chan bool, 1)
		go func() { got <- a.Acquire(context.Background(), nil) }()
		synctest.Wait()
		select {
		case <-got:
			t.Fatal("Acquire took the slot the old process's client holds")
		default:
		}
		a.Hold(Change{Slots: -1})
		if !<-got {
			t.Error("Acquire failed after the old client ended")
		}
	})
}
