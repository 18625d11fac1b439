package services

import (
	"testing"
	"time"
)

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
