package services

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
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
// Start has exactly one Wait), one per stderr pipe, which logs its lines,
// and, while handlers have left processes behind, one that watches those
// (watchLeftovers). Wait waits for all of them.
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
	pipes    map[*os.File]struct{} // stderr read ends still being logged
	wg       sync.WaitGroup
}

// NewProcs returns an empty process table.
func NewProcs() *Procs {
	return &Procs{procs: make(map[int]struct{}), groups: make(map[int]*leftovers), pipes: make(map[*os.File]struct{})}
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
	// reports a failure before the handler's exec on fd 3.
	confined bool
	// exited runs once the handler has been reaped, before the exit is
	// logged; it frees the handler's slots.
	exited func()
}

// start starts req.cmd in a new session and reaps it in a goroutine of
// its own. The caller still owns (and closes) the files it put in cmd;
// on error nothing was started and exited is not called.
func (p *Procs) start(req startRequest) (int, error) {
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
		req.cmd.ExtraFiles = []*os.File{w}
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
		return 0, err
	}
	pid := req.cmd.Process.Pid
	p.mu.Lock()
	p.procs[pid] = struct{}{}
	if rd != nil {
		p.pipes[rd] = struct{}{}
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
	if rd != nil {
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			logLines(rd, log, pid)
			p.mu.Lock()
			delete(p.pipes, rd)
			p.mu.Unlock()
			rd.Close()
		}()
	}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		p.reap(req, pid, who, began)
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

// errReported is start's error when the confinement trampoline started
// but could not exec the handler: it has been logged, and the reaper
// still owns the request's exited callback.
var errReported = errors.New("handler could not be started (reported by the trampoline)")

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
// group, and logs its exit.
func (p *Procs) reap(req startRequest, pid int, who []any, began time.Time) {
	log := req.log
	stopTimers := func() {}
	if req.timeout > 0 {
		term := time.AfterFunc(req.timeout, func() {
			log.Warn("timeout", append(slices.Clip(who), "after", req.timeout)...)
			p.signalGroup(pid, syscall.SIGTERM)
		})
		kill := time.AfterFunc(req.timeout+killDelay, func() { p.signalGroup(pid, syscall.SIGKILL) })
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

// ClosePipes ends the logging of stderr pipes still open after their
// handlers were killed: processes that left the handler's process group
// can hold them forever. Their goroutines end soon after.
func (p *Procs) ClosePipes() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for rd := range p.pipes {
		rd.SetReadDeadline(time.Unix(1, 0))
	}
}

// maxLogLine is the longest stderr line logged as one record; a longer
// one is logged in pieces rather than held in memory.
const maxLogLine = 4096

// logLines logs each line read from r until EOF or an error.
func logLines(r *os.File, log *slog.Logger, pid int) {
	br := bufio.NewReaderSize(r, maxLogLine)
	for {
		line, err := br.ReadSlice('\n')
		if len(line) > 0 {
			log.Info("stderr", "pid", pid, "line", strings.TrimRight(string(line), "\r\n"))
		}
		if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
			return
		}
	}
}
