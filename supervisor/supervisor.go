// Package supervisor owns superd's running set of services: one
// services.Listener per listen identity. On start and on every reload
// (Reload) it works out what to bind, update and close (diff, a pure
// function), applies that plan with rollback (apply), retries the binds
// that failed, shuts down when Run's context ends, and keeps systemd
// informed through sd_notify. It runs both sides of a binary upgrade
// (handover.go): Upgrade starts the new binary with every socket and
// drains this process once the new one is ready; a process started by
// an upgrade (Options.Predecessor) takes over from the old one.
//
// It does not catch SIGHUP, SIGUSR2, SIGTERM or SIGINT: main turns those
// into Reload and Upgrade calls and a cancelled context, so that a stop
// request never queues behind reloads. It does not parse configuration
// files (package config does), accept connections (package services
// does) or run processes (package services/proc does; the supervisor
// only asks the process table to shut down).
//
// Every map in a Supervisor belongs to the one goroutine that runs Run;
// nothing else touches them, so there is no lock. The Listeners in them
// are the Supervisor's: it closes each one it made.
package supervisor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/superd/superd/config"
	"github.com/superd/superd/internal/pages"
	"github.com/superd/superd/services"
	"github.com/superd/superd/supervisor/upgrade"
)

// Options are a Supervisor's collaborators.
type Options struct {
	// Load reads the configuration again on SIGHUP; required.
	Load func() (*config.Config, error)
	// Log receives every event; required.
	Log *slog.Logger
	// Runtime is shared with every Listener; required. Run shuts its
	// process table down before it returns.
	Runtime *services.Runtime
	// Notify sends one sd_notify state; nil when not under systemd.
	Notify func(state string)
	// Watchdog is the interval at which systemd expects WATCHDOG=1; zero
	// when the watchdog is off.
	Watchdog time.Duration
	// ReapOrphans makes Run reap, on SIGCHLD, the orphans the kernel
	// hands to superd when it runs as PID 1.
	ReapOrphans bool
	// Inherited are the sockets superd was started with (systemd's
	// socket activation), each named as systemd names it (f.Name(): the
	// FileDescriptorName=, or LISTEN_FD_N). Run's first apply serves a
	// service on the one named after it, else on one whose protocol,
	// address and port fit it, instead of binding; it closes the rest.
	// The Supervisor owns them from New on: each is closed, adopted or
	// not, by the time Run has bound its services. nil: none.
	Inherited []*os.File
	// Upgrade is what Upgrade (SIGUSR2) starts; nil: upgrades are
	// refused.
	Upgrade *UpgradeOptions
	// Predecessor is the old process of the upgrade that started this
	// one, nil when none. New closes Runtime's Gate behind it: Run opens
	// it once the old process has stopped taking clients and told its
	// counts. The Supervisor owns it from New on.
	Predecessor *upgrade.Predecessor
}

// Supervisor runs one configuration at a time.
type Supervisor struct {
	opts Options
	log  *slog.Logger
	cfg  *config.Config
	// pages gives back the binary's start-up pages at settle; Run opens
	// and closes it (nil when /proc could not be read).
	pages *pages.Dropper
	// listeners holds the Listener of every bound identity; Run closes
	// them all before it returns.
	listeners map[config.ListenKey]*services.Listener
	// pending holds, by name, the services whose socket could not be
	// bound yet.
	pending map[string]*pending
	retry   *time.Timer
	// inherited are the sockets of Options.Inherited not adopted yet;
	// nil once Run's first apply is done. identities caches what each
	// is (see fits).
	inherited  []*os.File
	identities map[*os.File]identified
	// reloadC holds at most one reload request: requests that arrive
	// while one is pending or under way coalesce into one more reload.
	reloadC chan struct{}

	// upgradeC holds at most one upgrade request; upgrading is set while
	// a new process starts, whose end comes on upgradeDone.
	upgradeC    chan struct{}
	upgrading   bool
	upgradeDone chan upgradeResult

	// The new process's side of an upgrade (Options.Predecessor): the
	// gate its Listeners wait at, what the old process's clients hold,
	// and the goroutine that reads the old process's messages (predC)
	// until readerStop. predDone is set once the old process has ended
	// or can no longer tell.
	gate       chan struct{}
	held       map[int]*held // by the descriptor each socket was passed on
	predC      chan predEvent
	readerStop chan struct{}
	readerDone chan struct{}
	predDone   bool
	// synced is set once the old process has sent its counts, or can no
	// longer; heldWait names (ListenKey.String()) the sockets its
	// wait-mode handlers hold, and deferred holds those sockets, not
	// adopted yet: adopting makes a socket non-blocking, under a handler
	// that may block on it.
	synced     bool
	heldWait   map[int]bool
	deferred   map[config.ListenKey]deferredSocket
	waitLogged map[config.ListenKey]bool // waiting_for_old_handler said
	// passedFD is, during the old process's upgrade, the descriptor each
	// Listener's socket was passed to the new process on.
	passedFD map[config.ListenKey]int
	// releasers are the old process's goroutines that tell the new one
	// when a wait-mode handler has exited; releaseStop ends them.
	releasers   sync.WaitGroup
	releaseStop chan struct{}
}

// pending is a service whose socket could not be bound yet.
type pending struct {
	svc   *config.Service
	delay time.Duration
	next  time.Time
}

// Bind retries start after firstRetry and double up to maxRetry.
const (
	firstRetry = time.Second
	maxRetry   = time.Minute
)

// New returns a Supervisor that will run cfg.
func New(cfg *config.Config, opts Options) *Supervisor {
	if opts.Notify == nil {
		opts.Notify = func(string) {}
	}
	s := &Supervisor{
		opts:        opts,
		log:         opts.Log,
		cfg:         cfg,
		listeners:   make(map[config.ListenKey]*services.Listener),
		pending:     make(map[string]*pending),
		inherited:   slices.Clone(opts.Inherited),
		reloadC:     make(chan struct{}, 1),
		upgradeC:    make(chan struct{}, 1),
		upgradeDone: make(chan upgradeResult, 1),
		predC:       make(chan predEvent),
		readerStop:  make(chan struct{}),
		predDone:    opts.Predecessor == nil,
		synced:      opts.Predecessor == nil,
		held:        make(map[int]*held),
		heldWait:    make(map[int]bool),
		deferred:    make(map[config.ListenKey]deferredSocket),
		waitLogged:  make(map[config.ListenKey]bool),
		releaseStop: make(chan struct{}),
	}
	if opts.Predecessor != nil {
		s.gate = make(chan struct{})
		opts.Runtime.Gate = s.gate
	}
	return s
}

// Reload asks Run to load the configuration again and apply it. It never
// blocks: requests made while a reload is pending coalesce, and requests
// made while one is under way cause exactly one more. Safe to call from
// any goroutine, before or during Run.
func (s *Supervisor) Reload() {
	select {
	case s.reloadC <- struct{}{}:
	default:
	}
}

// Run binds every service and serves until ctx ends, then shuts down:
// sockets closed, handlers sent SIGTERM, SIGKILL after the configured
// grace. It returns nil after a clean shutdown. A stop takes precedence
// over pending reloads: at most the reload under way when ctx ends
// delays it.
func (s *Supervisor) Run(ctx context.Context) error {
	// Opened before READY, so that settle opens no descriptor after it.
	if d, err := pages.Open(); err == nil {
		s.pages = d
		defer d.Close()
	} else {
		s.log.Debug("keeping the binary's start-up pages mapped", "err", err)
	}
	var orphans chan os.Signal // nil unless reaping: never ready
	if s.opts.ReapOrphans {
		orphans = make(chan os.Signal, 1) // SIGCHLDs coalesce: one scan reaps all
		signal.Notify(orphans, syscall.SIGCHLD)
		defer signal.Stop(orphans)
	}

	s.retry = time.NewTimer(time.Hour)
	s.retry.Stop()
	defer s.retry.Stop()

	// Nothing runs yet, so nothing can need an update: this apply only
	// binds, and cannot fail.
	s.apply(s.cfg)
	s.closeInherited()
	s.publish()
	ready := "READY=1\n"
	if s.opts.Predecessor != nil {
		s.takeOver(ctx)
		// systemd hears from this process from now on.
		ready = fmt.Sprintf("MAINPID=%d\nREADY=1\n", os.Getpid())
		if s.opts.Watchdog > 0 {
			ready += "WATCHDOG=1\n"
		}
	}
	s.opts.Notify(ready + s.status())
	s.log.Info("ready", "services", len(s.listeners), "pending", len(s.pending))
	s.settle()

	var watchdog <-chan time.Time
	if s.opts.Watchdog > 0 {
		t := time.NewTicker(s.opts.Watchdog / 2)
		defer t.Stop()
		watchdog = t.C
	}
	for {
		// select picks among ready cases at random: look at ctx first so
		// that a stream of reload requests cannot postpone the stop.
		if ctx.Err() != nil {
			return s.shutdown()
		}
		// A reload waits while an upgrade is under way: the new process
		// gets the sockets as they were when it started.
		reloadC, retryC := s.reloadC, s.retry.C
		if s.upgrading {
			// Bind retries too: every Listener's socket goes to the new
			// process as it is when the upgrade starts.
			reloadC, retryC = nil, nil
		}
		select {
		case <-reloadC:
			s.reload()
		case <-s.upgradeC:
			s.startUpgrade(ctx)
		case r := <-s.upgradeDone:
			if succ := s.finishUpgrade(r); succ != nil {
				if ctx.Err() != nil {
					// A stop came with the new process's ready: it wins.
					succ.Abort()
					s.log.Error("upgrade_failed", "reason", fmt.Sprintf("superd is stopping: stopped the new process (pid %d)", succ.Pid),
						"keeping", "nothing: superd is stopping")
					return s.shutdown()
				}
				s.handover(succ)
				return s.drain(ctx, succ)
			}
		case ev := <-s.predC:
			s.predecessorEvent(ev)
		case <-ctx.Done():
			return s.shutdown()
		case <-watchdog:
			s.opts.Notify("WATCHDOG=1")
		case <-orphans:
			s.opts.Runtime.Procs.ReapOrphans()
		case <-retryC:
			s.retryBinds(time.Now())
		}
	}
}

// status is the STATUS= line systemctl status shows.
func (s *Supervisor) status() string {
	st := fmt.Sprintf("STATUS=%d services running", len(s.listeners))
	if len(s.pending) > 0 {
		st += fmt.Sprintf(", %d waiting for their socket", len(s.pending))
	}
	return st + fmt.Sprintf(", %d handlers", s.opts.Runtime.Procs.Count())
}

// reload loads the configuration again and applies it. An invalid
// configuration, or one that cannot be applied (apply rolls back), is
// logged and changes nothing.
func (s *Supervisor) reload() {
	s.opts.Notify(fmt.Sprintf("RELOADING=1\nMONOTONIC_USEC=%d", monotonicUsec()))
	s.log.Info("reloading")
	m := s.opts.Runtime.Metrics
	next, err := s.opts.Load()
	if err != nil {
		for _, e := range flatten(err) {
			s.log.Error("reload_failed", "err", e, "keeping", "the running configuration")
		}
		m.Reloaded(false)
		s.opts.Notify("READY=1\n" + s.status() + " (last reload failed)")
		return
	}
	for _, w := range next.Warnings {
		s.log.Warn("config_warning", "warning", w.Error())
	}
	if g, h := s.cfg.Global, next.Global; g.Log != h.Log || g.SyslogFacility != h.SyslogFacility || g.SyslogTag != h.SyslogTag || g.SyslogSocket != h.SyslogSocket {
		s.log.Warn("log_settings_changed", "note", "log settings take effect when superd restarts")
	}
	if was, is := s.cfg.Global.Metrics, next.Global.Metrics; was != is {
		s.log.Warn("config_warning", "warning", fmt.Sprintf("[superd] metrics changed from %q to %q: it takes effect when superd restarts (until then superd serves the metrics as it started)", was, is))
	}
	s.warnClosing(next)
	prev := s.cfg
	p, err := s.apply(next)
	if err != nil {
		// The rollback closed the services this reload added: forget
		// their series too.
		s.dropSeries(next)
		s.publish()
		m.Reloaded(false)
		var ue *updateError
		name := ""
		if errors.As(err, &ue) {
			name = ue.service
		}
		s.log.Error("reload_failed", "service", name, "err", err, "keeping", "the running configuration")
		s.opts.Notify("READY=1\n" + s.status() + " (last reload failed)")
		return
	}
	s.cfg = next
	s.dropSeries(prev)
	s.publish()
	m.Reloaded(true)
	s.log.Info("reloaded", "services", len(s.listeners), "pending", len(s.pending),
		"added", p.added, "removed", p.removed, "changed", p.changed)
	s.opts.Notify("READY=1\n" + s.status())
	s.settle()
}

// settle returns the garbage of loading a configuration (the decoded
// TOML, the old services) to the system once it is served: otherwise
// an idle superd would hold it until a collection that traffic may never
// trigger. It also unmaps the pages of superd's binary that loading it
// mapped (see package pages): 12.0 → 5.1 MiB of RSS at READY with 100
// services. Called after READY, so it delays no client and no reload.
func (s *Supervisor) settle() {
	debug.FreeOSMemory()
	if s.pages == nil {
		return
	}
	if _, err := s.pages.Drop(); err != nil {
		// Only memory is at stake: superd serves on as it is.
		s.log.Debug("keeping the binary's start-up pages mapped", "err", err)
	}
}

// warnClosing logs a config_warning naming every service that next
// closes. A valid but empty or truncated file (an editor's non-atomic
// save) would otherwise take services down with only "closed" lines.
func (s *Supervisor) warnClosing(next *config.Config) {
	keep := make(map[string]bool, len(next.Services))
	for _, svc := range next.Services {
		if !svc.Disabled {
			keep[svc.Name] = true
		}
	}
	var gone []string
	for _, l := range s.listeners {
		if name := l.Name(); !keep[name] {
			gone = append(gone, name)
		}
	}
	for name := range s.pending {
		if !keep[name] {
			gone = append(gone, name)
		}
	}
	if len(gone) == 0 {
		return
	}
	slices.Sort(gone)
	msg := fmt.Sprintf("the new configuration closes %d service(s): %s", len(gone), strings.Join(gone, ", "))
	if len(keep) == 0 {
		msg += " (it has no enabled services: was the file saved half-way?)"
	}
	s.log.Warn("config_warning", "warning", msg, "closing", strings.Join(gone, ","))
}

// flatten lists the errors joined by errors.Join.
func flatten(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

// shutdown stops accepting, closes every Listener, and ends the
// handlers through the process table: SIGTERM to each process group,
// SIGKILL to what is left after the grace.
func (s *Supervisor) shutdown() error {
	s.opts.Notify("STOPPING=1")
	if s.upgrading {
		// Run's context has ended, which stops the new process.
		r := <-s.upgradeDone
		if r.succ != nil {
			r.succ.Abort() // ready just before ctx ended
			r.err = fmt.Errorf("superd is stopping: stopped the new process (pid %d)", r.succ.Pid)
		}
		s.log.Error("upgrade_failed", "reason", r.err.Error(), "keeping", "nothing: superd is stopping")
		s.upgrading = false
	}
	stopped := s.stopPredecessor()
	for key, d := range s.deferred {
		d.f.Close()
		delete(s.deferred, key)
	}
	for key, l := range s.listeners {
		l.Close()
		delete(s.listeners, key)
	}
	err := s.opts.Runtime.Procs.Shutdown(s.cfg.Global.ShutdownGrace, s.log)
	if stopped {
		s.awaitPredecessor()
	}
	if err != nil {
		return err
	}
	s.log.Info("stopped")
	return nil
}
