package main

import (
	"context"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
)

// signals holds the channels of the signals superd acts on. Stop signals
// and SIGHUP have channels of their own, so a burst of SIGHUPs can never
// crowd out a stop: os/signal drops a signal whose channel is full, and a
// stop request must not be lost.
type signals struct {
	stop chan os.Signal // SIGTERM, SIGINT
	hup  chan os.Signal // SIGHUP
	usr2 chan os.Signal // SIGUSR2: upgrade
}

// catchSignals starts catching the signals at once, before the
// configuration is loaded: from here on a SIGHUP no longer kills superd
// (its default action) but waits for serve.
func catchSignals() *signals {
	s := &signals{stop: make(chan os.Signal, 2), hup: make(chan os.Signal, 1), usr2: make(chan os.Signal, 1)}
	signal.Notify(s.stop, syscall.SIGTERM, syscall.SIGINT)
	signal.Notify(s.hup, syscall.SIGHUP)
	signal.Notify(s.usr2, syscall.SIGUSR2)
	return s
}

// release stops catching; signals take their default action again.
func (s *signals) release() {
	signal.Stop(s.stop)
	signal.Stop(s.hup)
	signal.Stop(s.usr2)
}

// reloader is what serve asks for a reload or an upgrade;
// *supervisor.Supervisor has it.
type reloader interface {
	Reload()
	Upgrade()
}

// serve turns SIGHUP into sup.Reload, SIGUSR2 into sup.Upgrade and
// SIGTERM or SIGINT into stop, until ctx ends. Reload never blocks
// (requests coalesce in the supervisor), so the SIGHUP channel drains
// as fast as signals arrive; one slot is enough, since HUPs that arrive
// while one is queued mean "reload once more" anyway. Upgrade never
// blocks either: it refuses, logged, a request while one waits.
func (s *signals) serve(ctx context.Context, sup reloader, stop context.CancelFunc, log *slog.Logger) {
	for {
		select {
		case <-ctx.Done():
			return
		case sig := <-s.stop:
			log.Info("stopping", "signal", sig.String())
			stop()
			return
		case <-s.hup:
			sup.Reload()
		case <-s.usr2:
			sup.Upgrade()
		}
	}
}
