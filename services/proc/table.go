// Package proc is superd's process table: it starts handler processes,
// reaps each one, enforces its timeout on the whole process group, logs
// its stderr lines and its exit, keeps track of the processes it leaves
// behind (by pidfd), reaps the orphans the kernel hands superd when it
// runs as PID 1, and runs the shutdown sequence (SIGTERM, grace, SIGKILL)
// as one call.
//
// The package deliberately does not know about sockets, services or
// admission: the caller builds the command (its stdin and stdout are
// the client's socket), and learns of the exit through the Exited
// function it put in its own Request. It does not decide when to start
// a handler, and it never retries a start.
//
// One Table serves every service of a superd process: a handler of a
// service that a reload removed is still reaped, logged and signalled at
// shutdown.
package proc

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/superd/superd/services/confine"
)

// killDelay is how long a handler that outlived its timeout has between
// SIGTERM and SIGKILL.
const killDelay = 5 * time.Second

// Shutdown's waits after the grace: for the SIGKILL to take effect, and
// for stderr pipes cut by closePipes to close.
const (
	killWait  = 5 * time.Second
	pipesWait = time.Second
)

// Table tracks every running handler process.
//
// Goroutines: the Table owns the exit poller (exits.go), one goroutine
// parked in Go's poller on an epoll instance that holds every running
// handler's pidfd: it reaps each handler that exits and calls its
// Exited; Shutdown ends it. What may wait after that (reading the stderr
// pipe after the exit, the exit line) runs on a worker, one per batch of
// exits. A handler the poller cannot take (a confined start, no pidfd)
// has a reaper goroutine of its own instead, which does all of it. Workers
// stay parked for the next job (up to maxIdleWorkers of them) until
// Shutdown. A handler that runs longer
// than stderrLive gets one more, the logger of its stderr, which closes
// the pipe at the latest stderrDrainMax after the reap (processes the
// handler left may hold it forever). While handlers have left processes
// behind, one more watches those (watchLeftovers). Wait waits for all
// of them; none outlives its handler by more than the drain and the
// leftovers it watches.
//
// Descriptors: the Table owns the read ends of stderr pipes and of the
// trampoline's report pipes, the pidfds of its handlers and of
// leftovers, one /dev/null and the exit poller's epoll instance; it
// closes them itself (/dev/null and the epoll instance in Shutdown). The files a Request carries stay the caller's.
type Table struct {
	startMu sync.Mutex // held from a handler's start to its registration
	// shutdown is set by Shutdown, under startMu: no start after it.
	shutdown bool

	mu    sync.Mutex
	procs map[int]*running // running handlers by pid (= their process group)
	// groups holds, by process group, the members left behind by
	// handlers that have been reaped (see leftovers.go); Signal and the
	// timeout reach them too, entries go once their members are gone.
	groups map[int]*leftovers
	// watching is true while the goroutine that forgets leftovers once
	// they are gone runs (watchLeftovers); it ends when groups is empty.
	watching bool
	pipes    map[*stderrPipe]struct{} // stderr pipes still open
	// freed is closed (and replaced) whenever superd has closed
	// descriptors of a handler: its pidfd at the reap, its stderr pipe.
	// Callers short of descriptors wait for it (see Released).
	freed chan struct{}
	// freedTaken is set when Released has handed out freed: only then
	// is there anyone to wake (and a channel to replace) at a release,
	// which every connection makes twice.
	freedTaken bool
	// null is /dev/null, the nil stdio of every handler; Shutdown
	// closes it (under startMu).
	null *os.File
	// active counts the goroutines the Table owns; idle is closed when
	// active drops to zero and replaced when it rises from zero, so that
	// Wait needs no goroutine of its own.
	active int
	idle   chan struct{}
	// readers holds the stderr readers' *bufio.Reader of maxLogLine
	// bytes, reused from handler to handler rather than allocated for
	// each (the GC ran every 450 connections, and 4 KiB of each was this).
	readers sync.Pool
	// workers runs the reapers of handlers that the exit poller does
	// not take (see exits.go); Shutdown stops it.
	workers workers
	// exits is the exit poller's epoll instance, nil until the first
	// start that uses it and after Shutdown (see exits.go).
	exits *os.File
	// exitsFD is exits' descriptor (exits.Fd would make it blocking).
	exitsFD int
}

// New returns an empty process table, with the descriptors it keeps for
// all its handlers: /dev/null, their stdio where they get no other, and
// the exit poller's epoll instance (see exits.go).
func New() (*Table, error) {
	null, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("handlers' stdio: %w", err)
	}
	idle := make(chan struct{})
	close(idle)
	t := &Table{
		procs:   make(map[int]*running),
		groups:  make(map[int]*leftovers),
		pipes:   make(map[*stderrPipe]struct{}),
		null:    null,
		exitsFD: -1,
		freed:   make(chan struct{}),
		idle:    idle,
		readers: sync.Pool{New: func() any { return bufio.NewReaderSize(nil, maxLogLine) }},
	}
	// Opened now, as /dev/null is, so that the Table's descriptors are
	// there from the start; a failure leaves it to the first start.
	t.mu.Lock()
	t.openExitsLocked()
	t.mu.Unlock()
	return t, nil
}

// addLocked counts n more goroutines that Wait waits for; each calls
// goDone when it ends. t.mu is held.
func (t *Table) addLocked(n int) {
	if t.active == 0 {
		t.idle = make(chan struct{})
	}
	t.active += n
}

// goDone counts out one goroutine of addLocked.
func (t *Table) goDone() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.active--; t.active == 0 {
		close(t.idle)
	}
}

// Released returns a channel that is closed the next time superd closes
// descriptors of a handler. Take it before the attempt that may fail for
// want of descriptors, so that a release in between is not missed.
func (t *Table) Released() <-chan struct{} {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.freedTaken = true
	return t.freed
}

// releasedLocked wakes whoever waits in Released.
func (t *Table) releasedLocked() {
	if !t.freedTaken {
		return
	}
	close(t.freed)
	t.freed = make(chan struct{})
	t.freedTaken = false
}

// Request is one handler to start. The caller builds it and keeps
// ownership of everything in it: the Table closes none of Cmd's files
// and calls Exited exactly once.
type Request struct {
	// Cmd is the handler command; it must start a new session
	// (Sys.Setsid), so that its pid is its process group. Its Stderr is
	// not used when LogStderr is set; Start sets ExtraFiles when
	// Confined.
	Cmd *Command
	// Log carries the service attribute; start, stderr, timeout and exit
	// lines go there.
	Log *slog.Logger
	// Remote is the client, for the log; "" in wait mode, where superd
	// never sees one.
	Remote string
	// LogStderr gives the handler a pipe as stderr, in place of
	// Cmd.Stderr, and logs every line written to it. Otherwise a nil
	// Cmd.Stderr is /dev/null.
	LogStderr bool
	// Timeout, when positive, sends SIGTERM to the handler's process
	// group after it, and SIGKILL killDelay later.
	Timeout time.Duration
	// Confined marks a start through the confinement trampoline, which
	// reports a failure before the handler's exec on confine.ReportFD;
	// Exe is the running superd binary, which the trampoline is executed
	// from (as confine.ExeFD). The Table does not close Exe.
	Confined bool
	Exe      *os.File
	// Exited, when set, is called once the handler has been reaped,
	// before its exit is logged, on the goroutine that reaped it, with
	// how it ended: it is the caller's own code (freeing its admission
	// slots, handing a wait-mode socket back to its serve loop, counting
	// the exit) and must not block. It is not called when Start fails
	// (but is after ErrReported).
	Exited func(Exit)
}

// Exit is how a handler ended, as Request.Exited receives it.
type Exit struct {
	// Status is the wait status; meaningless when Err is set.
	Status syscall.WaitStatus
	// Err is set when the wait failed: how the handler ended is unknown.
	Err error
	// TimedOut is set when the Request's timeout struck (SIGTERM went to
	// the process group), whatever the handler did then.
	TimedOut bool
	// StartFailed is set when Start returned ErrReported: the process
	// reaped is the confinement trampoline, which never ran the handler.
	StartFailed bool
	// Duration is the handler's life, from its start to its reap.
	Duration time.Duration
}

// ErrReported is Start's error when the confinement trampoline started
// but could not exec the handler: the failure has been logged
// (start_failed), and the handler is reaped as usual, so Exited is
// still called.
var ErrReported = errors.New("handler could not be started (reported by the trampoline)")

// ErrNoExe is Start's error for a confined start without an Exe.
var ErrNoExe = errors.New("the running superd binary is not open (Runtime.Exe): cannot start the confinement trampoline")

// ErrShutdown is Start's error once Shutdown has been called.
var ErrShutdown = errors.New("superd is shutting down: no handler starts any more")

// Start starts req.Cmd in a new session, for the exit poller (or a
// reaper of its own) to reap. The caller still owns (and closes) the files it put in Cmd:
// once Start returns, closing them leaves the handler its own copies. On
// an error other than ErrReported nothing was started and Exited is not
// called. It logs the start (start) before the reaper exists, so that
// start always precedes stderr and exit in the log.
func (t *Table) Start(req Request) (pid int, err error) {
	if req.Confined && req.Exe == nil {
		return 0, ErrNoExe
	}
	stderrR, stderrW := -1, -1 // the stderr pipe; -1: Cmd.Stderr
	if req.LogStderr {
		r, w, err := rawPipe()
		if err != nil {
			return 0, fmt.Errorf("stderr pipe: %w", err)
		}
		defer unix.Close(w)
		stderrR, stderrW = r, w
	}
	var report *os.File
	if req.Confined {
		rfd, wfd, err := rawPipe()
		if err != nil {
			if stderrR >= 0 {
				unix.Close(stderrR)
			}
			return 0, fmt.Errorf("trampoline pipe: %w", err)
		}
		r, w := os.NewFile(uintptr(rfd), "|0"), os.NewFile(uintptr(wfd), "|1")
		// Go's child puts every file of the start in place before the
		// exec, whatever their numbers in superd: the exe is at
		// confine.ExeFD when the kernel resolves confine.TrampolinePath.
		req.Cmd.ExtraFiles = confine.ExtraFiles(w, req.Exe)
		// Closed right after Start, so the report's end of file comes
		// with the trampoline's exec.
		defer w.Close()
		report = r
	}
	closeOurs := func() {
		if stderrR >= 0 {
			unix.Close(stderrR)
		}
		if report != nil {
			report.Close()
		}
	}
	began := time.Now()
	// startMu makes start and register one step for ReapOrphans, which
	// must never take a handler that exited before it was registered.
	// Go serializes forks anyway.
	t.startMu.Lock()
	if t.shutdown {
		t.startMu.Unlock()
		closeOurs()
		return 0, ErrShutdown
	}
	null := t.null // Shutdown clears it, under startMu
	pid, pidfd, err := forkExec(req.Cmd, null, stderrW)
	if err != nil {
		t.startMu.Unlock()
		closeOurs()
		return 0, forkNearLimit(req.Cmd, null, stderrW, err)
	}
	var errPipe *stderrPipe
	if stderrR >= 0 {
		errPipe = newStderrPipe(stderrR, req.Log, pid)
	}
	r := &running{req: req, pid: pid, pidfd: pidfd, who: handler{pid: pid, remote: req.Remote}, began: began, errPipe: errPipe}
	t.mu.Lock()
	t.procs[pid] = r
	t.addLocked(1) // the reap
	if errPipe != nil {
		t.pipes[errPipe] = struct{}{}
		t.addLocked(1) // the pipe, until it is closed
	}
	t.mu.Unlock()
	t.startMu.Unlock()

	who := r.who
	// Logged here, before the reaper and the stderr logger exist, so
	// that start always precedes stderr and exit in the log.
	log := req.Log
	who.log(log, slog.LevelInfo, "start")
	if errPipe != nil {
		t.watch(errPipe)
	}
	r.stopTimeout = t.armTimeout(r)
	// reported tells the reaper of a confined start whether the
	// trampoline reported a failure, before it calls Exited; nil for a
	// direct start, which either fails in forkExec or runs the handler.
	// A confined start has a reaper of its own, which may wait for it.
	var reported chan bool
	if report != nil {
		reported = make(chan bool, 1)
		r.reported = reported
	}
	if reported != nil || !t.registerExit(r) {
		t.reapAlone(r)
	}
	if report != nil {
		req.Cmd.ExtraFiles[confine.ReportFD-3].Close()
		msg := readReport(report)
		if msg != "" {
			// Logged before the reaper hears of it: the reaper logs the
			// exit only after that.
			who.log(log, slog.LevelError, "start_failed", slog.String("err", msg))
		}
		reported <- msg != ""
		if msg != "" {
			return pid, ErrReported
		}
	}
	return pid, nil
}

// running is a handler from its start to its reap: what its reap needs.
type running struct {
	req     Request
	pid     int
	pidfd   int // -1: none (the kernel gave none); closed at the reap
	who     handler
	began   time.Time
	errPipe *stderrPipe // nil without a stderr pipe
	// stopTimeout stops the timeout's timers that have not fired, and
	// reports whether the timeout struck; the SIGKILL stays due after a
	// strike when leftBehind (see armTimeout).
	stopTimeout func(leftBehind bool) (struck bool)
	// leftBehind is set (under Table.mu) at the reap when the handler
	// left processes in its group.
	leftBehind bool
	// reported, for a confined start, says whether the trampoline
	// failed (see Start); nil otherwise.
	reported <-chan bool
	// polled is set (under Table.mu) once the exit poller has the pidfd.
	polled bool
}

// armTimeout starts r's timeout, if it has one, and returns what stops
// it (see running.stopTimeout).
func (t *Table) armTimeout(r *running) func(leftBehind bool) bool {
	req := r.req
	if req.Timeout <= 0 {
		return func(bool) bool { return false }
	}
	term := time.AfterFunc(req.Timeout, func() {
		r.who.log(req.Log, slog.LevelWarn, "timeout", slog.Duration("after", req.Timeout))
		t.signalGroup(r, syscall.SIGTERM)
	})
	kill := time.AfterFunc(addDurations(req.Timeout, killDelay), func() { t.signalGroup(r, syscall.SIGKILL) })
	// Once the timeout has struck, the SIGKILL stays due even if the
	// leader died of the SIGTERM: the rest of its group may not have.
	// When it left nobody, the SIGKILL has nobody to reach, and is
	// stopped: kept, it could reach the leftovers of a later handler
	// that got the same pid. The timer keeps no goroutine: it ends on
	// its own.
	return func(leftBehind bool) bool {
		if term.Stop() {
			kill.Stop()
			return false
		}
		if !leftBehind {
			kill.Stop()
		}
		return true
	}
}

// reapAlone gives r a reaper of its own, on a worker: r is a handler
// the exit poller does not (or no longer) take.
func (t *Table) reapAlone(r *running) {
	t.workers.run(func() {
		defer t.goDone()
		t.reap(r)
	})
}

// reap waits for one handler (and closes its pidfd) on a goroutine of
// its own, and then finishes it. It serves the handlers that the exit
// poller does not take.
func (t *Table) reap(r *running) {
	awaitExit(r.pid, r.pidfd)
	t.mu.Lock()
	ws, err, done := t.reapLocked(r)
	t.mu.Unlock()
	if !done {
		// Exited, says waitid, but not waitable: wait for it, then
		// remove it (the wait below is outside the lock).
		for {
			_, err = syscall.Wait4(r.pid, &ws, 0, nil)
			if !errors.Is(err, syscall.EINTR) {
				break
			}
		}
		t.mu.Lock()
		t.removeLocked(r)
		t.mu.Unlock()
	}
	x := t.reaped(r, ws, err)
	t.logExit(r, x)
}

// reapLocked reaps r if it has exited (done false when it has not), and
// removes it from the table in the same step (removeLocked): once
// reaped, its pid may name a stranger, or the next handler, whose Start
// registers it; no Signal, timeout or Start may see r's entry then.
// t.mu is held.
func (t *Table) reapLocked(r *running) (ws syscall.WaitStatus, err error, done bool) {
	for {
		var n int
		n, err = syscall.Wait4(r.pid, &ws, syscall.WNOHANG, nil)
		switch {
		case errors.Is(err, syscall.EINTR):
			continue
		case err == nil && n == 0:
			return ws, nil, false
		}
		t.removeLocked(r)
		return ws, err, true
	}
}

// removeLocked takes the reaped handler r out of procs and records the
// processes it left in its process group, at once, so that a signal for
// r's group (its timeout's SIGKILL, Shutdown's) reaches them in any case.
// It reads /proc only when the group has members. t.mu is held.
func (t *Table) removeLocked(r *running) {
	if t.procs[r.pid] == r {
		delete(t.procs, r.pid)
	}
	left := findLeftovers(r.pid)
	if left == nil {
		return
	}
	r.leftBehind = true
	if old := t.groups[r.pid]; old != nil {
		// An earlier handler with the same pid left members too (the
		// pid came round again before they were gone): keep them all.
		old.members = append(old.members, left.members...)
	} else {
		t.groups[r.pid] = left
	}
	if !t.watching {
		t.watching = true
		t.addLocked(1)
		go func() {
			defer t.goDone()
			t.watchLeftovers()
		}()
	}
}

// reaped does what must follow a handler's reap at once (the reaper has
// removed it from the table and closed its pidfd): it stops its timeout,
// starts the drain of its stderr pipe and calls its Exited. None of it
// waits for anybody: the exit poller runs it for every handler. The
// rest, which may wait (the stderr drain, the log), is logExit's.
func (t *Table) reaped(r *running, ws syscall.WaitStatus, err error) Exit {
	took := time.Since(r.began).Round(time.Microsecond)
	t.mu.Lock()
	leftBehind := r.leftBehind
	t.releasedLocked() // the pidfd is closed
	t.mu.Unlock()
	struck := r.stopTimeout(leftBehind)
	if r.errPipe != nil {
		// The drain's limits count from the reap, however long its
		// logExit waits for a worker (see finishStderr).
		r.errPipe.drainFrom.CompareAndSwap(0, time.Now().UnixNano())
	}
	x := Exit{Status: ws, Err: err, TimedOut: struck, Duration: took}
	// A confined start's trampoline has exec'd or died by now, so its
	// report is in (or on its way, from Start's goroutine, which logs a
	// start_failed first): waited for even without an Exited, so that
	// the exit line comes after it.
	x.StartFailed = r.reported != nil && <-r.reported
	if r.req.Exited != nil {
		r.req.Exited(x)
	}
	return x
}

// logExit drains the stderr pipe of a reaped handler and logs its exit,
// in that order: its last lines come before its exit line. A process the
// handler left holding the pipe delays it by stderrDrainMax at most.
func (t *Table) logExit(r *running, x Exit) {
	if r.errPipe != nil {
		t.finishStderr(r.errPipe)
	}
	r.who.log(r.req.Log, slog.LevelInfo, "exit", slog.String("status", exitStatus(x.Status, x.Err)), slog.Duration("duration", x.Duration))
}

// handler names a handler process in its log lines: its pid, and the
// client it serves ("" in wait mode).
type handler struct {
	pid    int
	remote string
}

// log logs msg at level with the handler's pid and remote before attrs,
// as log.LogAttrs would, but without the caller's program counter, which
// no sink of superd's prints. Every connection writes a start and an
// exit line: runtime.Callers and the boxing of each value of Logger.Info
// were 40 % of a line's cost (1.45 against 0.84 µs in a benchmark to
// io.Discard).
func (h handler) log(log *slog.Logger, level slog.Level, msg string, attrs ...slog.Attr) {
	ctx := context.Background()
	sink := log.Handler()
	if !sink.Enabled(ctx, level) {
		return
	}
	r := slog.NewRecord(time.Now(), level, msg, 0)
	r.AddAttrs(slog.Int("pid", h.pid))
	if h.remote != "" {
		r.AddAttrs(slog.String("remote", h.remote))
	}
	r.AddAttrs(attrs...)
	// A sink's error has nowhere better to go than Logger.Info's does.
	_ = sink.Handle(ctx, r)
}

// exitStatus describes how a handler ended: its exit code, or the signal
// that killed it; err is the wait's error, if it failed.
func exitStatus(ws syscall.WaitStatus, err error) string {
	switch {
	case err != nil:
		return "unknown (wait: " + err.Error() + ")"
	case ws.Signaled():
		return "signal:" + unix.SignalName(ws.Signal())
	}
	return strconv.Itoa(ws.ExitStatus())
}

// signalGroup sends sig to handler r's process group while r runs, and
// afterwards to the members it left (and nobody else): once r is reaped
// its pid, and so its group's number, may name a stranger.
func (t *Table) signalGroup(r *running, sig syscall.Signal) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.procs[r.pid] == r {
		syscall.Kill(-r.pid, sig)
		return
	}
	if l := t.groups[r.pid]; l != nil && !l.signal(sig) {
		delete(t.groups, r.pid)
	}
}

// Count returns the number of running handlers.
func (t *Table) Count() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.procs)
}

// Signal sends sig to the process group of every running handler, and
// to the groups of exited handlers that still have members.
func (t *Table) Signal(sig syscall.Signal) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for pid := range t.procs {
		syscall.Kill(-pid, sig)
	}
	for g, l := range t.groups {
		if !l.signal(sig) {
			delete(t.groups, g)
		}
	}
}

// Wait waits until every handler has been reaped, every stderr pipe has
// been drained and every process a handler left behind is gone, or until
// ctx is done, and then returns ctx's error. It starts no goroutine, so
// a Wait that ends with its context leaves nothing behind. Handlers
// started after Wait was called may or may not be waited for.
func (t *Table) Wait(ctx context.Context) error {
	t.mu.Lock()
	idle := t.idle
	t.mu.Unlock()
	select {
	case <-idle:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// waitFor is Wait with a timeout.
func (t *Table) waitFor(d time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	return t.Wait(ctx)
}

// Pending reports what Wait still waits for: handlers running, process
// groups of exited handlers that still have members (leftovers), and
// stderr pipes still open. At shutdown, it tells the log what the grace
// is spent on. A pipe outlives its handler's reap by stderrDrainMax at
// most; the pipe of a handler that cannot be reaped lasts until
// Shutdown cuts it.
func (t *Table) Pending() (handlers, leftovers, pipes int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.pruneLocked()
	return len(t.procs), len(t.groups), len(t.pipes)
}

// Shutdown ends every handler: it logs what it waits for (terminating,
// when anything runs), sends SIGTERM to every process group, waits up to
// grace, then sends SIGKILL to what is left (kill_after_grace) and waits
// killWait more, and finally cuts the stderr pipes that processes which
// left their handler's group still hold. It returns an error when
// handlers still run after all that. No handler starts once Shutdown has
// been called (Start returns ErrShutdown); the caller stops its serve
// loops first, so that none tries.
func (t *Table) Shutdown(grace time.Duration, log *slog.Logger) error {
	t.startMu.Lock()
	t.shutdown = true
	t.workers.stop()
	if t.null != nil {
		t.null.Close()
		t.null = nil
	}
	t.startMu.Unlock()
	// Say what the grace is spent on: running handlers, processes they
	// left behind in their groups, and stderr pipes still being read.
	if n, left, pipes := t.Pending(); n+left+pipes > 0 {
		log.Info("terminating", "count", n, "left_behind", left, "stderr_pipes", pipes, "grace", grace)
	}
	t.Signal(syscall.SIGTERM)
	err := t.waitFor(grace)
	if n, left, pipes := t.Pending(); err != nil && n+left > 0 {
		log.Warn("kill_after_grace", "count", n, "left_behind", left, "stderr_pipes", pipes)
		t.Signal(syscall.SIGKILL)
		err = t.waitFor(killWait)
	}
	// What can outlive SIGKILL is a stderr pipe held by a process that
	// left its handler's process group.
	if err != nil {
		t.closePipes()
		if err := t.waitFor(pipesWait); err != nil {
			// The exit poller stays, for the handlers still to reap.
			return fmt.Errorf("shutdown: handlers still running after SIGKILL: %w", err)
		}
	}
	t.closeExits()
	return nil
}
