package admit

import "net/netip"

// A binary upgrade runs two superd processes on one socket for a while:
// the old one, whose handlers finish, and the new one, which takes every
// new client. instances and per_source must count the old one's clients
// until they end, so the old process tells the new one its counts
// (Observe) and the new one holds them in its own Admission (Hold).

// Change is a change to an Admission's counts: Slots instance slots
// taken (negative: given back) and, when Source is valid, Sources
// per_source places of that source taken (negative: given back).
type Change struct {
	Slots   int
	Source  netip.Prefix
	Sources int
}

// Observe calls obs with the counts as they are now, as Changes, and
// then with every later change to them, for as long as the Admission
// lives. Each count's current value and its changes are told under the
// same lock, so that obs sees each exactly once: the sum of what obs
// was told is the count at any moment. obs is called with that lock
// held and from the goroutines that take and give back places: it must
// not block or call into the Admission. Observe is meant to be called
// once.
func (a *Admission) Observe(obs func(Change)) {
	a.slots.mu.Lock()
	if a.slots.used != 0 {
		obs(Change{Slots: a.slots.used})
	}
	a.slots.obs = obs
	a.slots.mu.Unlock()

	a.sources.mu.Lock()
	for k, n := range a.sources.n {
		obs(Change{Source: k, Sources: n})
	}
	a.sources.obs = obs
	a.sources.mu.Unlock()
}

// Hold applies c, a change to the counts of the clients another process
// serves on the same socket (the old superd of an upgrade): they take
// instance slots and per_source places beyond the limits, and give them
// back as they end, which wakes a client waiting for a slot.
func (a *Admission) Hold(c Change) {
	if c.Slots != 0 {
		a.slots.mu.Lock()
		a.slots.used += c.Slots
		if c.Slots < 0 {
			a.slots.pokeLocked()
		}
		a.slots.mu.Unlock()
	}
	if c.Source.IsValid() && c.Sources != 0 {
		a.sources.mu.Lock()
		if a.sources.n[c.Source] += c.Sources; a.sources.n[c.Source] <= 0 {
			delete(a.sources.n, c.Source)
		}
		a.sources.mu.Unlock()
	}
}
