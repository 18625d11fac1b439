package supervisor

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/superd/superd/config"
	"github.com/superd/superd/services"
	"github.com/superd/superd/services/admit"
	"github.com/superd/superd/supervisor/upgrade"
)

// A binary upgrade, from the old process's side: Upgrade (SIGUSR2)
// starts the binary at superd's path with every socket; once the new
// process is ready, the old one drains (stops taking clients, closes its
// sockets, tells the new one what its clients hold) and exits when its
// last handler has ended. From the new process's side: takeOver tells
// the old one it is ready, holds the old one's counts, and only then
// opens the gate that lets its Listeners take clients.

// UpgradeOptions are what an upgrade starts.
type UpgradeOptions struct {
	// Path is the binary to start: superd's path as the administrator
	// gave it, so that a binary replaced there is the one started.
	Path string
	// Argv is the command line, argv[0] first.
	Argv []string
	// Files returns more sockets to hand over, each named: the metrics
	// socket, which main owns. Each call returns new descriptors, which
	// the supervisor closes. nil: none.
	Files func() ([]*os.File, error)
	// HandedOver is called once the new process serves: main stops
	// serving the metrics, which the new process serves from then on.
	HandedOver func()
}

// upgradeResult is how the start of a new process ended.
type upgradeResult struct {
	succ *upgrade.Successor
	err  error
}

// Upgrade asks Run to start the new binary and hand over to it. It never
// blocks. A request while one waits is refused and logged; one while an
// upgrade is under way is refused by Run.
func (s *Supervisor) Upgrade() {
	select {
	case s.upgradeC <- struct{}{}:
	default:
		s.log.Warn("upgrade_refused", "reason", "an upgrade request is already waiting")
	}
}

// startUpgrade starts the new process in a goroutine of its own, which
// reports on s.upgradeDone; Run goes on serving meanwhile.
func (s *Supervisor) startUpgrade(ctx context.Context) {
	up := s.opts.Upgrade
	switch {
	case s.upgrading:
		s.log.Warn("upgrade_refused", "reason", "an upgrade is under way")
		return
	case s.opts.Predecessor != nil && (s.opts.Predecessor.Running() || !s.predDone || len(s.deferred) > 0):
		s.log.Warn("upgrade_refused", "reason", fmt.Sprintf("the old process of the last upgrade (pid %d) still has handlers: try again once it has exited", s.opts.Predecessor.Pid))
		return
	case up == nil || up.Path == "":
		s.log.Warn("upgrade_refused", "reason", "this superd does not know the path of its binary")
		return
	case os.Getpid() == 1:
		s.log.Warn("upgrade_refused", "reason", "superd runs as PID 1, which cannot hand over: restart the container instead")
		return
	}
	if os.Geteuid() == 0 {
		if errs := config.RootExecutableProblems(up.Path); len(errs) > 0 {
			msgs := make([]string, len(errs))
			for i, err := range errs {
				msgs[i] = err.Error()
			}
			s.log.Error("upgrade_failed", "reason", fmt.Sprintf("not running %s as root: %s", up.Path, strings.Join(msgs, "; ")), "keeping", "this process, serving as before")
			return
		}
	}
	files, owned, fds, err := s.handoverFiles()
	if err != nil {
		s.log.Error("upgrade_failed", "reason", err.Error(), "keeping", "this process, serving as before")
		return
	}
	s.upgrading = true
	s.passedFD = fds
	s.log.Info("upgrading", "path", up.Path, "sockets", len(files), "timeout", s.cfg.Global.UpgradeTimeout)
	spec := upgrade.Spec{Path: up.Path, Argv: up.Argv, Env: os.Environ(), Files: files, Owned: owned, Timeout: s.cfg.Global.UpgradeTimeout}
	go func() {
		succ, err := upgrade.Start(ctx, spec)
		closeFiles(files)
		s.upgradeDone <- upgradeResult{succ, err}
	}()
}

// handoverFiles duplicates every bound socket, named after its service,
// and main's; owned are the indexes of the unix sockets whose file this
// process would remove, and fds the descriptor each Listener's socket
// is passed on, which the handshake names it by.
func (s *Supervisor) handoverFiles() (files []*os.File, owned []int, fds map[config.ListenKey]int, err error) {
	fds = make(map[config.ListenKey]int, len(s.listeners))
	for key, l := range s.listeners {
		f, err := l.File()
		if err != nil {
			closeFiles(files)
			return nil, nil, nil, fmt.Errorf("service %q: %w", l.Name(), err)
		}
		if l.RemovesFile() {
			owned = append(owned, len(files))
		}
		fds[key] = 3 + len(files)
		files = append(files, f)
	}
	if more := s.opts.Upgrade.Files; more != nil {
		extra, err := more()
		if err != nil {
			closeFiles(files)
			return nil, nil, nil, err
		}
		files = append(files, extra...)
	}
	return files, owned, fds, nil
}

func closeFiles(files []*os.File) {
	for _, f := range files {
		f.Close()
	}
}

// finishUpgrade takes the end of a start: it returns the new process
// when it is ready, and logs the failure otherwise.
func (s *Supervisor) finishUpgrade(r upgradeResult) *upgrade.Successor {
	s.upgrading = false
	if r.err != nil {
		s.passedFD = nil
		s.log.Error("upgrade_failed", "reason", r.err.Error(), "keeping", "this process, serving as before")
		return nil
	}
	select {
	case <-r.succ.Exited():
		r.succ.Close()
		s.log.Error("upgrade_failed", "reason", fmt.Sprintf("the new process (pid %d) %s right after it said it was ready", r.succ.Pid, r.succ.Status()),
			"keeping", "this process, serving as before")
		return nil
	default:
	}
	return r.succ
}

// handover drains every Listener and tells succ what their clients hold.
// From here on this process takes no client, and tells systemd nothing:
// the new process is the main one.
func (s *Supervisor) handover(succ *upgrade.Successor) {
	// With NotifyAccess=main systemd takes notifications from the main
	// process only: this one says which that is now, before the new one
	// (which says so too) sends anything. It comes first: the new
	// process sends only once it has read synced, written below.
	// The watchdog, when on, is pinged now: the new process's first ping
	// comes with its READY=1.
	ping := ""
	if s.opts.Watchdog > 0 {
		ping = "WATCHDOG=1\n"
	}
	s.opts.Notify(fmt.Sprintf("%sMAINPID=%d", ping, succ.Pid))
	s.opts.Notify = func(string) {}
	s.retry.Stop()
	clear(s.pending) // the new process binds them
	for key, l := range s.listeners {
		if err := l.Drain(); err != nil {
			s.log.Warn("drain_failed", "service", l.Name(), "err", err)
		}
		// Reloads and bind retries wait while an upgrade is under way,
		// so every Listener's socket was passed.
		fd, ok := s.passedFD[key]
		if !ok {
			continue
		}
		l.Observe(func(c admit.Change) {
			succ.Send(upgrade.Change{FD: fd, Slots: c.Slots, Source: c.Source, Sources: c.Sources})
		})
		if exited := l.WaitHandler(); exited != nil {
			succ.Send(upgrade.Change{FD: fd, Held: true})
			s.releasers.Add(1)
			go func() {
				defer s.releasers.Done()
				select {
				case <-exited:
					succ.Send(upgrade.Change{FD: fd, Released: true})
				case <-s.releaseStop:
				}
			}()
		}
	}
	succ.Synced()
	if h := s.opts.Upgrade.HandedOver; h != nil {
		h()
	}
	s.log.Info("upgraded", "new_pid", succ.Pid, "handlers", s.opts.Runtime.Procs.Count(),
		"note", "this process exits once its handlers and built-in connections have ended")
}

// drain waits, after handover, for the last handler and built-in
// connection of this process to end, and then shuts down. A stop
// request meanwhile (ctx) ends them as a stop does.
func (s *Supervisor) drain(ctx context.Context, succ *upgrade.Successor) error {
	defer func() {
		close(s.releaseStop)
		s.releasers.Wait()
		succ.Close()
	}()
	stop, cancel := context.WithCancel(context.Background())
	defer cancel()
	idle := make(chan struct{})
	// The goroutine gets the Listeners' Done channels, not the map,
	// which shutdown changes.
	done := make([]<-chan struct{}, 0, len(s.listeners))
	for _, l := range s.listeners {
		done = append(done, l.Done())
	}
	go func() {
		defer close(idle)
		for _, d := range done {
			select {
			case <-d:
			case <-stop.Done():
				return
			}
		}
		s.opts.Runtime.Procs.Wait(stop)
	}()
	defer func() { cancel(); <-idle }()
	exited := succ.Exited()
	for {
		select {
		case <-idle:
			if stop.Err() == nil {
				s.log.Info("handed_over", "new_pid", succ.Pid, "note", "the last handler has ended")
				return s.shutdown()
			}
		case <-ctx.Done():
			return s.shutdown()
		case <-s.reloadC:
			s.log.Warn("reload_ignored", "reason", fmt.Sprintf("this process has handed over to pid %d: reload that one", succ.Pid))
		case <-s.upgradeC:
			s.log.Warn("upgrade_refused", "reason", fmt.Sprintf("this process has handed over to pid %d", succ.Pid))
		case <-exited:
			exited = nil
			s.log.Warn("successor_exited", "new_pid", succ.Pid, "status", succ.Status())
		}
	}
}

// held is what the old process's clients hold of one socket it passed,
// as far as it has told: counted from the start, given to the socket's
// Listener once that is made (adopted), and given back when the old
// process has ended.
type held struct {
	l       *services.Listener // nil until adopted
	slots   int
	sources map[netip.Prefix]int
}

// predEvent is one message of the old process after synced, or the end
// of the handshake (err).
type predEvent struct {
	c   upgrade.Change
	err error
}

// takeOver tells the old process that this one has its sockets, holds
// the counts it sends until synced, and opens the gate. It never fails:
// a handshake that breaks or times out before synced means the old
// process ended or is stuck, and this one must serve either way.
func (s *Supervisor) takeOver(ctx context.Context) {
	p := s.opts.Predecessor
	// A stop while the old process has not synced yet ends the wait.
	defer context.AfterFunc(ctx, p.Interrupt)()
	defer close(s.gate)
	// However the handshake ends, the old process's sockets are adopted
	// then: the old one has stopped taking clients, or can no longer
	// say; those a wait-mode handler holds wait for its exit.
	defer s.adoptDeferred()
	if err := p.Ready(); err != nil {
		s.log.Error("takeover_failed", "old_pid", p.Pid, "err", err, "doing", "serving without the old process's counts")
		s.predDone, s.synced = true, true
		return
	}
	deadline := time.Now().Add(s.cfg.Global.UpgradeTimeout)
	for {
		c, synced, err := p.Next(deadline)
		if err != nil {
			s.log.Error("takeover_incomplete", "old_pid", p.Pid, "err", err, "doing", "serving without the old process's counts")
			s.releaseHeld()
			s.predDone, s.synced = true, true
			clear(s.heldWait)
			return
		}
		if synced {
			s.synced = true
			break
		}
		s.hold(c)
	}
	s.log.Info("took_over", "old_pid", p.Pid, "old_clients", s.heldSlots())
	s.readerDone = make(chan struct{})
	go s.readPredecessor()
}

// readPredecessor is the goroutine that passes the old process's
// messages after synced to Run, until the handshake ends. Run's
// shutdown stops it (readerStop, and closing the handshake).
func (s *Supervisor) readPredecessor() {
	defer close(s.readerDone)
	for {
		c, _, err := s.opts.Predecessor.Next(time.Time{})
		select {
		case s.predC <- predEvent{c, err}:
		case <-s.readerStop:
			return
		}
		if err != nil {
			return
		}
	}
}

// predecessorEvent applies one of readPredecessor's events.
func (s *Supervisor) predecessorEvent(ev predEvent) {
	if ev.err == nil {
		s.hold(ev.c)
		return
	}
	s.predDone = true
	clear(s.heldWait)
	defer s.adoptDeferred()
	if errors.Is(ev.err, io.EOF) {
		// Its clients have all ended and it exits: done with its pidfd.
		s.opts.Predecessor.Close()
		s.log.Info("predecessor_done", "old_pid", s.opts.Predecessor.Pid)
	} else {
		s.opts.Predecessor.CloseHandshake()
		s.log.Warn("predecessor_lost", "old_pid", s.opts.Predecessor.Pid, "err", ev.err, "doing", "no longer counting its clients")
	}
	s.releaseHeld()
}

// hold applies c to the Listener it is of, while that Listener is the
// one takeOver found: a reload that closed it closed its counts too.
func (s *Supervisor) hold(c upgrade.Change) {
	switch {
	case c.Held:
		s.heldWait[c.FD] = true
		return
	case c.Released:
		delete(s.heldWait, c.FD)
		if s.synced {
			s.adoptDeferred()
		}
		return
	}
	h := s.held[c.FD]
	if h == nil {
		h = &held{sources: map[netip.Prefix]int{}}
		s.held[c.FD] = h
	}
	h.slots += c.Slots
	if c.Source.IsValid() {
		if h.sources[c.Source] += c.Sources; h.sources[c.Source] == 0 {
			delete(h.sources, c.Source)
		}
	}
	if s.live(h) {
		h.l.Hold(admit.Change{Slots: c.Slots, Source: c.Source, Sources: c.Sources})
	}
}

// live reports whether h's Listener is still the one serving its
// socket: a reload that closed it closed its counts too.
func (s *Supervisor) live(h *held) bool { return h.l != nil && s.listeners[h.l.Key()] == h.l }

// adopted gives l, just made on the socket passed on fd, what the old
// process's clients hold of it so far.
func (s *Supervisor) adopted(fd int, l *services.Listener) {
	h := s.held[fd]
	if h == nil {
		h = &held{sources: map[netip.Prefix]int{}}
		s.held[fd] = h
	}
	h.l = l
	if h.slots != 0 {
		l.Hold(admit.Change{Slots: h.slots})
	}
	for src, n := range h.sources {
		l.Hold(admit.Change{Source: src, Sources: n})
	}
}

// releaseHeld gives back what the old process's clients still hold: it
// has ended, or can no longer tell.
func (s *Supervisor) releaseHeld() {
	for fd, h := range s.held {
		if s.live(h) {
			h.l.Hold(admit.Change{Slots: -h.slots})
			for src, n := range h.sources {
				h.l.Hold(admit.Change{Source: src, Sources: -n})
			}
		}
		delete(s.held, fd)
	}
}

// heldSlots is the number of the old process's clients held.
func (s *Supervisor) heldSlots() int {
	n := 0
	for _, h := range s.held {
		n += h.slots
	}
	return n
}

// stopPredecessor ends the reading of the old process's messages at
// shutdown, and sends the old process SIGTERM when it still runs: a stop
// of the new process is a stop of the service, the old handlers
// included. It reports whether it did; awaitPredecessor waits.
func (s *Supervisor) stopPredecessor() bool {
	p := s.opts.Predecessor
	if p == nil {
		return false
	}
	close(s.readerStop)
	p.CloseHandshake()
	if s.readerDone != nil {
		<-s.readerDone
	}
	if !p.Running() {
		return false
	}
	s.log.Info("stopping_predecessor", "old_pid", p.Pid)
	if err := p.Terminate(); err != nil {
		s.log.Warn("stop_predecessor_failed", "old_pid", p.Pid, "err", err)
		return false
	}
	return true
}

// awaitPredecessor waits, after stopPredecessor, for the old process to
// have ended its handlers (its grace and SIGKILL wait): under systemd's
// KillMode=mixed, what is left of the unit is SIGKILLed as soon as this
// process, the main one, exits.
func (s *Supervisor) awaitPredecessor() {
	p := s.opts.Predecessor
	if !p.Wait(s.cfg.Global.ShutdownGrace + predecessorKillWait) {
		s.log.Warn("predecessor_still_running", "old_pid", p.Pid)
	}
	p.Close()
}

// predecessorKillWait is how much longer than its shutdown_grace the old
// process gets to exit after SIGTERM: its SIGKILL and reaping.
const predecessorKillWait = 10 * time.Second
