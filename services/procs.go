package services

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// killDelay is how long a handler that outlived its timeout has between
// SIGTERM and SIGKILL.
const killDelay = 5 * time.Second

// Procs tracks every running handler process. It outlives the Service
// values that start handlers, so a handler of a service removed by a
// reload is still reaped, logged and signalled at shutdown.
//
// Procs owns one goroutine per running handler, which waits for it (every
// Start has exactly one Wait), one per stderr pipe, which logs its lines
// and closes it at the latest stderrDrainMax after the handler's reap
// (processes the handler left may hold it forever), and, while handlers
// have left processes behind, one that watches those (watchLeftovers).
// Wait waits for all of them.
type Procs struct {
	startMu sync.Mutex // held from a handler's start to its registration
	mu      sync.Mutex
	procs   map[int]struct{} // pids of running handlers (= their process groups)
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
	// Services short of descriptors wait for it (see released).
	freed chan struct{}
	wg    sync.WaitGroup
}

// NewProcs returns an empty process table.
func NewProcs() *Procs {
	return &Procs{
		procs:  make(map[int]struct{}),
		groups: make(map[int]*leftovers),
		pipes:  make(map[*stderrPipe]struct{}),
		freed:  make(chan struct{}),
	}
}

// released returns a channel that is closed the next time superd closes
// descriptors of a handler. Take it before the attempt that may fail for
// want of descriptors, so that a release in between is not missed.
func (p *Procs) released() <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.freed
}

// releasedLocked wakes whoever waits in released.
func (p *Procs) releasedLocked() {
	close(p.freed)
	p.freed = make(chan struct{})
}

// startRequest is one handler to start.
type startRequest struct {
	cmd    *exec.Cmd
	log    *slog.Logger // carries the service attribute
	remote string       // the client, for the log; "" in wait mode
	// logStderr makes Procs give the handler a pipe as stderr and log
	// every line written to it.
	logStderr bool
	timeout   time.Duration
	// confined marks a start through the confinement trampoline, which
	// reports a failure before the handler's exec on fd 3; exe is the
	// running superd binary, which the trampoline is executed from (as
	// fd 4, see exeFD). Procs does not close exe.
	confined bool
	exe      *os.File
	// exited runs once the handler has been reaped, before the exit is
	// logged; it frees the handler's slots.
	exited func()
}

// start starts req.cmd in a new session and reaps it in a goroutine of
// its own. The caller still owns (and closes) the files it put in cmd;
// on error nothing was started and exited is not called.
func (p *Procs) start(req startRequest) (int, error) {
	if req.confined && req.exe == nil {
		return 0, errNoExe
	}
	if !req.logStderr && req.cmd.Stderr == nil {
		// Opened here rather than by os/exec, so that forkNearLimit
		// knows the number of every descriptor the child gets.
		null, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
		if err != nil {
			return 0, fmt.Errorf("stderr: %w", err)
		}
		req.cmd.Stderr = null
		defer null.Close()
	}
	var rd *os.File
	if req.logStderr {
		r, w, err := logPipe()
		if err != nil {
			return 0, fmt.Errorf("stderr pipe: %w", err)
		}
		req.cmd.Stderr = w
		defer w.Close()
		rd = r
	}
	var report *os.File
	if req.confined {
		r, w, err := logPipe()
		if err != nil {
			if rd != nil {
				rd.Close()
			}
			return 0, fmt.Errorf("trampoline pipe: %w", err)
		}
		// Go's child puts every file of the start in place before the
		// exec, whatever their numbers in superd: the exe is at exeFD
		// when the kernel resolves trampolinePath.
		req.cmd.ExtraFiles = []*os.File{w, req.exe}
		// Closed right after Start, so the report's end of file comes
		// with the trampoline's exec.
		defer w.Close()
		report = r
	}
	began := time.Now()
	// startMu makes start and register one step for ReapOrphans, which
	// must never take a handler that exited before it was registered.
	// Go serializes forks anyway.
	p.startMu.Lock()
	if err := req.cmd.Start(); err != nil {
		p.startMu.Unlock()
		if rd != nil {
			rd.Close()
		}
		if report != nil {
			report.Close()
		}
		return 0, forkNearLimit(req.cmd, err)
	}
	pid := req.cmd.Process.Pid
	var errPipe *stderrPipe
	if rd != nil {
		errPipe = &stderrPipe{rd: rd, done: make(chan struct{})}
	}
	p.mu.Lock()
	p.procs[pid] = struct{}{}
	if errPipe != nil {
		p.pipes[errPipe] = struct{}{}
	}
	p.mu.Unlock()
	p.startMu.Unlock()

	who := []any{"pid", pid}
	if req.remote != "" {
		who = append(who, "remote", req.remote)
	}
	// Logged here, before the reaper exists, so that start always
	// precedes exit in the log.
	req.log.Info("start", who...)
	log := req.log
	if errPipe != nil {
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			p.logStderr(errPipe, log, pid)
		}()
	}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		p.reap(req, pid, who, began, errPipe)
	}()
	if report != nil {
		req.cmd.ExtraFiles[0].Close()
		if msg := readReport(report); msg != "" {
			log.Error("start_failed", append(slices.Clip(who), "err", msg)...)
			return pid, errReported
		}
	}
	return pid, nil
}

// forkNearLimit turns the EBADF of a start whose descriptors sit just
// below superd's RLIMIT_NOFILE into the shortage of descriptors it is:
// before it puts the files in place, Go's child moves its own error pipe
// and some of the files above the highest of them
// (syscall.forkAndExecInChild), and a dup3 beyond the limit fails with
// EBADF. Any other error is returned as it is.
func forkNearLimit(cmd *exec.Cmd, err error) error {
	if !errors.Is(err, syscall.EBADF) {
		return err
	}
	files := append([]*os.File(nil), cmd.ExtraFiles...)
	for _, f := range []any{cmd.Stdin, cmd.Stdout, cmd.Stderr} {
		if f, ok := f.(*os.File); ok {
			files = append(files, f)
		}
	}
	highest := 0
	for _, f := range files {
		if f != nil {
			// Start called Fd already: no mode changes here.
			highest = max(highest, int(f.Fd()))
		}
	}
	var lim unix.Rlimit
	if unix.Getrlimit(unix.RLIMIT_NOFILE, &lim) != nil {
		return err
	}
	// The child numbers descriptors up to highest + 1, plus one for its
	// pipe and one for each file it moves.
	if uint64(highest+2+len(files)) < lim.Cur {
		return err
	}
	return fmt.Errorf("%w (superd is at its descriptor limit: %w)", err, syscall.EMFILE)
}

// errReported is start's error when the confinement trampoline started
// but could not exec the handler: it has been logged, and the reaper
// still owns the request's exited callback.
var errReported = errors.New("handler could not be started (reported by the trampoline)")

// errNoExe is start's error for a service that needs the confinement
// trampoline when the Runtime has no Exe.
var errNoExe = errors.New("the running superd binary is not open (Runtime.Exe): cannot start the confinement trampoline")

// logPipe returns a pipe for a handler's stderr: a read end in Go's
// poller (so shutdown can interrupt it) and a plain blocking write end
// for the child. os.Pipe would register both ends with the poller and
// exec would then switch the write end back: four system calls more per
// connection.
func logPipe() (r, w *os.File, err error) {
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
		return nil, nil, err
	}
	if err := unix.SetNonblock(p[0], true); err != nil {
		unix.Close(p[0])
		unix.Close(p[1])
		return nil, nil, err
	}
	return os.NewFile(uintptr(p[0]), "|0"), os.NewFile(uintptr(p[1]), "|1"), nil
}

// readReport reads why the confinement trampoline could not start the
// handler; "" when it did. It returns at the handler's exec (end of file:
// the pipe is close-on-exec) or when the trampoline dies.
func readReport(r *os.File) string {
	defer r.Close()
	msg, _ := io.ReadAll(io.LimitReader(r, maxLogLine))
	return strings.TrimSpace(string(msg))
}

// reap waits for one handler, enforcing its timeout on the whole process
// group, drains its stderr pipe (errPipe, nil without one), and logs its
// exit.
func (p *Procs) reap(req startRequest, pid int, who []any, began time.Time, errPipe *stderrPipe) {
	log := req.log
	stopTimers := func() {}
	if req.timeout > 0 {
		term := time.AfterFunc(req.timeout, func() {
			log.Warn("timeout", append(slices.Clip(who), "after", req.timeout)...)
			p.signalGroup(pid, syscall.SIGTERM)
		})
		kill := time.AfterFunc(addDurations(req.timeout, killDelay), func() { p.signalGroup(pid, syscall.SIGKILL) })
		// Once the timeout has struck, the SIGKILL stays due even if the
		// leader died of the SIGTERM: the rest of its group may not have.
		stopTimers = func() {
			if term.Stop() {
				kill.Stop()
			}
		}
	}
	err := req.cmd.Wait()
	stopTimers()
	left := findLeftovers(pid)
	p.mu.Lock()
	delete(p.procs, pid)
	p.releasedLocked() // Wait closed the pidfd
	if left != nil {
		p.groups[pid] = left
		if !p.watching {
			p.watching = true
			p.wg.Add(1)
			go p.watchLeftovers()
		}
	}
	p.mu.Unlock()
	req.exited()
	if errPipe != nil {
		// The handler's last lines come before its exit line; a process
		// it left holding the pipe delays that by stderrDrainMax at most.
		errPipe.drain()
	}
	status := exitStatus(req.cmd.ProcessState, err)
	took := time.Since(began).Round(time.Microsecond)
	log.Info("exit", append(slices.Clip(who), "status", status, "duration", took)...)
}

// exitStatus describes how a handler ended: its exit code, or the signal
// that killed it.
func exitStatus(ps *os.ProcessState, err error) string {
	if ps == nil {
		return err.Error()
	}
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return "signal:" + unix.SignalName(ws.Signal())
	}
	return fmt.Sprint(ps.ExitCode())
}

// signalGroup sends sig to a handler's process group while its leader
// runs, and afterwards to the members it left (and nobody else).
func (p *Procs) signalGroup(pgid int, sig syscall.Signal) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, running := p.procs[pgid]; running {
		syscall.Kill(-pgid, sig)
		return
	}
	if l := p.groups[pgid]; l != nil && !l.signal(sig) {
		delete(p.groups, pgid)
	}
}

// leftoverCheck is how often watchLeftovers looks for leftovers that
// are gone. They are not superd's children: no wait tells.
const leftoverCheck = 250 * time.Millisecond

// watchLeftovers forgets leftover processes once they are gone, closing
// their pidfds, and ends when none is left. Procs starts it with the
// first leftover; Wait waits for it.
func (p *Procs) watchLeftovers() {
	defer p.wg.Done()
	tick := time.NewTicker(leftoverCheck)
	defer tick.Stop()
	for range tick.C {
		p.mu.Lock()
		p.pruneLocked()
		if len(p.groups) == 0 {
			p.watching = false
			p.mu.Unlock()
			return
		}
		p.mu.Unlock()
	}
}

// Leftovers returns the number of exited handlers' process groups that
// still have members.
func (p *Procs) Leftovers() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.pruneLocked()
	return len(p.groups)
}

func (p *Procs) pruneLocked() {
	for g, l := range p.groups {
		if !l.signal(0) {
			delete(p.groups, g)
		}
	}
}

// Count returns the number of running handlers.
func (p *Procs) Count() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.procs)
}

// Signal sends sig to the process group of every running handler, and
// to the groups of exited handlers that still have members.
func (p *Procs) Signal(sig syscall.Signal) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for pid := range p.procs {
		syscall.Kill(-pid, sig)
	}
	for g, l := range p.groups {
		if !l.signal(sig) {
			delete(p.groups, g)
		}
	}
}

// Wait waits until every handler has been reaped, every stderr pipe has
// been drained and every process a handler left behind is gone, or until
// ctx is done, and then returns ctx's error. It is for shutdown: once
// Wait has been called, no handler may start.
func (p *Procs) Wait(ctx context.Context) error {
	done := make(chan struct{})
	go func() {
		p.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Pending reports what Wait still waits for: handlers running, process
// groups of exited handlers that still have members (leftovers), and
// stderr pipes still open. At shutdown, it tells the log what the grace
// is spent on. A pipe outlives its handler by stderrDrainMax at most,
// unless ClosePipes is what ends it: its handler could not be reaped.
func (p *Procs) Pending() (handlers, leftovers, pipes int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.pruneLocked()
	return len(p.procs), len(p.groups), len(p.pipes)
}

// ClosePipes closes every stderr pipe still open, logging what each
// still held (stderr_cut), and returns once they are closed. Pipes close
// on their own shortly after their handler is reaped; this is for
// shutdown, when a handler cannot even be reaped.
func (p *Procs) ClosePipes() {
	p.mu.Lock()
	pipes := make([]*stderrPipe, 0, len(p.pipes))
	for sp := range p.pipes {
		pipes = append(pipes, sp)
	}
	p.mu.Unlock()
	for _, sp := range pipes {
		sp.drainFrom.Store(1) // long past: no more reads
		sp.rd.SetReadDeadline(time.Unix(0, 1))
	}
	for _, sp := range pipes {
		<-sp.done
	}
}

// After a handler's process has been reaped, its stderr pipe is read
// until end of file, as long as data keeps coming (at most stderrDrain
// apart), but for stderrDrainMax and stderrDrainBytes at most; then it
// is closed: a process the handler left behind (a daemon that kept fd 2)
// must not hold superd's descriptor for as long as it lives. What the
// handler wrote before its exit is at most a pipe buffer (64 KiB unless
// it grew the pipe), which the limits leave room for.
const (
	stderrDrain      = 100 * time.Millisecond
	stderrDrainMax   = time.Second
	stderrDrainBytes = 256 << 10
)

// stderrPipe is the read end of a handler's stderr pipe. The goroutine
// that logs it (logStderr) closes it.
type stderrPipe struct {
	rd *os.File
	// drainFrom is when the drain began (Unix nanoseconds): when the
	// handler was reaped, or long ago for ClosePipes; 0 before.
	drainFrom atomic.Int64
	done      chan struct{} // closed once rd is closed
}

// drain starts the drain of the pipe and waits until it is closed.
func (sp *stderrPipe) drain() {
	now := time.Now()
	sp.drainFrom.Store(now.UnixNano())
	// A deadline on a closed pipe fails, harmlessly.
	sp.rd.SetReadDeadline(now.Add(stderrDrain))
	<-sp.done
}

// logStderr logs the lines of a handler's stderr until end of file, or
// until the drain or ClosePipes ends it, and then closes the pipe. A pipe
// closed before end of file is logged as stderr_cut, with the bytes it
// still held.
func (p *Procs) logStderr(sp *stderrPipe, log *slog.Logger, pid int) {
	defer close(sp.done)
	if cut, eof := logLines(sp, log, pid); !eof {
		log.Warn("stderr_cut", "pid", pid, "bytes", cut)
	}
	sp.rd.Close()
	p.mu.Lock()
	delete(p.pipes, sp)
	p.releasedLocked()
	p.mu.Unlock()
}

// maxLogLine is the longest stderr line logged as one record; a longer
// one is logged in pieces rather than held in memory.
const maxLogLine = 4096

// logLines logs each line read from sp until end of file (eof true) or
// another end: an error, or the limits of the drain. Then cut is the
// number of bytes read or waiting in the pipe that were not logged.
func logLines(sp *stderrPipe, log *slog.Logger, pid int) (cut int, eof bool) {
	br := bufio.NewReaderSize(sp.rd, maxLogLine)
	drained := 0
	for {
		line, err := br.ReadSlice('\n')
		if len(line) > 0 {
			log.Info("stderr", "pid", pid, "line", strings.TrimRight(string(line), "\r\n"))
		}
		if errors.Is(err, io.EOF) {
			return 0, true
		}
		if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
			return br.Buffered() + unread(sp.rd), false
		}
		if from := sp.drainFrom.Load(); from != 0 {
			// Draining, and data came: allow another stderrDrain.
			drained += len(line)
			end := time.Unix(0, from).Add(stderrDrainMax)
			if drained > stderrDrainBytes || !time.Now().Before(end) {
				return br.Buffered() + unread(sp.rd), false
			}
			next := time.Now().Add(stderrDrain)
			if next.After(end) {
				next = end
			}
			sp.rd.SetReadDeadline(next)
		}
	}
}

// unread returns the number of bytes waiting in a pipe.
func unread(f *os.File) int {
	rc, err := f.SyscallConn()
	if err != nil {
		return 0
	}
	n := 0
	// TIOCINQ is Linux's other name for FIONREAD, which pipes answer.
	rc.Control(func(fd uintptr) { n, _ = unix.IoctlGetInt(int(fd), unix.TIOCINQ) })
	return n
}

// addDurations returns a+b, saturated at the largest (or smallest)
// Duration instead of wrapping around: a timeout of hundreds of years
// plus killDelay must stay hundreds of years, not turn negative.
func addDurations(a, b time.Duration) time.Duration {
	sum := a + b
	switch {
	case a > 0 && b > 0 && sum < 0:
		return math.MaxInt64
	case a < 0 && b < 0 && sum >= 0:
		return math.MinInt64
	}
	return sum
}
