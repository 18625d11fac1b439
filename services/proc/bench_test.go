package proc

import (
	"io"
	"os/exec"
	"syscall"
	"testing"

	"github.com/superd/superd/internal/logging"
)

// BenchmarkStartReap starts and reaps b.N handlers, at most 8 at a time,
// as a nowait service with default settings does: a stderr pipe, the
// start and exit lines through superd's stderr sink (to io.Discard here).
// The handler is /bin/true, so the figure is the process table's part of
// a connection plus the fork and exec; `-cpuprofile` shows which. It
// needs no root.
func BenchmarkStartReap(b *testing.B) {
	path, err := exec.LookPath("true")
	if err != nil {
		b.Skip("no true(1) to start")
	}
	log, closeLog, err := logging.New(logging.Options{Target: logging.TargetStderr}, io.Discard)
	if err != nil {
		b.Fatal(err)
	}
	defer closeLog()
	log = log.With("service", "bench")
	tab, err := New()
	if err != nil {
		b.Fatal(err)
	}
	const concurrency = 8
	slots := make(chan struct{}, concurrency)
	exited := func(Exit) { <-slots }
	sys := &syscall.SysProcAttr{Setsid: true}
	env := []string{"PATH=/usr/bin:/bin"}
	for b.Loop() {
		slots <- struct{}{}
		req := Request{
			Cmd:       &Command{Path: path, Args: []string{"true"}, Env: env, Sys: sys},
			Log:       log,
			Remote:    "127.0.0.1:40000",
			LogStderr: true,
			Exited:    exited,
		}
		if _, err := tab.Start(req); err != nil {
			b.Fatal(err)
		}
	}
	for range concurrency {
		slots <- struct{}{}
	}
	if err := tab.waitFor(testTimeout); err != nil {
		b.Fatal(err)
	}
	if err := tab.Shutdown(0, log); err != nil {
		b.Fatal(err)
	}
}
