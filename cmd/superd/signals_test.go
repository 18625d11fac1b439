package main

import (
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/superd/superd/internal/testkit"
)

// TestSignalTerm checks that SIGTERM stops superd with status 0 and logs
// the signal.
func TestSignalTerm(t *testing.T) {
	port := testkit.FreePort(t, "tcp")
	d := startDaemon(t, fmt.Sprintf("[services.echo]\nbuiltin = \"echo\"\nport = %d\naddress = \"127.0.0.1\"\n", port))
	if err := d.stop(syscall.SIGTERM, 20*time.Second); err != nil {
		t.Fatalf("superd after SIGTERM: %v, want exit status 0", err)
	}
	if !strings.Contains(d.Logs(), "event=stopping signal=terminated") {
		t.Errorf("no stopping line naming the signal in:\n%s", d.Logs())
	}
}

// TestHUPStormThenTerm is the regression test for a lost SIGTERM: with
// 100 services, 50 SIGHUPs 0.5 ms apart and then one SIGTERM used to
// leave superd running (HUP and TERM shared one 8-slot channel drained
// by the goroutine that ran each reload). The stop must not be lost. The
// deadline is a bound for "never", not a speed requirement.
func TestHUPStormThenTerm(t *testing.T) {
	var cfg strings.Builder
	for i := range 100 {
		fmt.Fprintf(&cfg, "[services.s%03d]\npath = \"/bin/cat\"\nuser = \"root\"\nprotocol = \"unix\"\naddress = \"%%DIR%%/s%03d.sock\"\n", i, i)
	}
	for trial := range 3 {
		d := startDaemon(t, cfg.String())
		for range 50 {
			if err := d.cmd.Process.Signal(syscall.SIGHUP); err != nil {
				t.Fatal(err)
			}
			time.Sleep(500 * time.Microsecond)
		}
		if err := d.stop(syscall.SIGTERM, 60*time.Second); err != nil {
			t.Fatalf("trial %d: superd after 50 SIGHUPs and a SIGTERM: %v, want exit status 0", trial, err)
		}
		if n := d.countLog("event=reloading"); n > 50 {
			t.Errorf("trial %d: %d reloads for 50 SIGHUPs", trial, n)
		}
	}
}
