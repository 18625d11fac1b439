//go:build !race

package config

import (
	"runtime"
	"strings"
	"testing"
)

// TestLoad1MBAllocations checks the bytes Load allocates on each 1 MB
// shape against a bound with a wide margin (see shapes1MB). Bytes
// allocated depend neither on the machine's speed nor on the collector,
// so the test cannot flake, and they follow the time closely enough:
// the decoder and the collector are most of the cost. The race detector
// would only make the test slow (it is left out of -race runs).
func TestLoad1MBAllocations(t *testing.T) {
	for _, sh := range shapes1MB() {
		t.Run(sh.name, func(t *testing.T) {
			path := sh.write(t)
			// A first, small load makes the one-time look-ups (the
			// services database, the user database) that are not
			// Load's to count.
			small := sh.toml[:strings.LastIndexByte(sh.toml[:min(len(sh.toml), 4096)], '\n')+1]
			warm := writeFile(t, t.TempDir(), "small.toml", small, 0o644)
			_, _ = sh.opts().Load(warm)
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			sh.load(t, path)
			runtime.ReadMemStats(&after)
			got := after.TotalAlloc - before.TotalAlloc
			t.Logf("%d KB of input, %d MB allocated", len(sh.toml)>>10, got>>20)
			if got > sh.maxAlloc {
				t.Errorf("Load allocated %d MB, want at most %d MB", got>>20, sh.maxAlloc>>20)
			}
		})
	}
}
