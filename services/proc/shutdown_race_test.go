package proc

import (
	"errors"
	"io"
	"log/slog"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// TestTableFailedStartDuringShutdown starts handlers whose exec fails
// while Shutdown runs. Start reads t.null for forkNearLimit after it has
// let go of startMu (table.go, Start: `return 0, forkNearLimit(req.Cmd,
// t.null, stderrW, err)`), while Shutdown sets it to nil under startMu:
// a data race that -race reports. (Not new in this change, which only
// added the stderrW argument to that call.)
func TestTableFailedStartDuringShutdown(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	for range 5 {
		tab, err := New()
		if err != nil {
			t.Fatal(err)
		}
		var tries atomic.Int32
		done := make(chan struct{})
		go func() {
			defer close(done)
			for {
				cmd := &Command{Path: "/nonexistent/handler", Args: []string{"handler"}, Sys: &syscall.SysProcAttr{Setsid: true}}
				_, err := tab.Start(Request{Cmd: cmd, Log: log, LogStderr: true, Exited: func(Exit) {}})
				tries.Add(1)
				if errors.Is(err, ErrShutdown) {
					return
				}
			}
		}()
		for tries.Load() < 3 {
			time.Sleep(time.Millisecond)
		}
		if err := tab.Shutdown(time.Second, log); err != nil {
			t.Fatal(err)
		}
		<-done
	}
}
