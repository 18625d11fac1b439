// Package testkit holds what the tests of superd's packages share, so
// that each package's tests do not keep a drifting copy of it:
//
//   - Recorder, a slog.Handler that keeps every record, with waits for
//     log events (Wait, WaitN) instead of sleeps;
//   - Helpers, a registry of the helper programs that the test binary
//     acts as when it is re-executed as a handler (in the manner of
//     os/exec's and net/http/cgi's tests), and the helper programs
//     themselves (Describe, Readline, Sleep, ...);
//   - loopback network helpers (FreePort, Dial, RoundTrip, ReadAll) and
//     WaitFor, which fail the test with t.Fatalf instead of returning an
//     error a caller might drop.
//
// Every wait is bounded by Timeout, a bound for "never", not a speed
// requirement: tests wait for events and count, they never assert that
// something was fast.
//
// The package is imported by _test.go files only. It deliberately keeps
// no package-level mutable state: a test holds the Recorder or Helpers
// it made. It does not start superd or build binaries (cmd/superd's
// harness does), and it knows nothing of superd's own types.
package testkit

import "time"

// Timeout bounds every wait of this package, and the deadline Dial sets
// on a connection. It is generous on purpose: -race and a loaded
// machine make handler starts slow, and a wait that gives up early is a
// flaky test.
const Timeout = 30 * time.Second
