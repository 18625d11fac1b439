package proc

import (
	"bufio"
	"errors"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

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

// maxLogLine is the longest stderr line logged as one record; a longer
// one is logged in pieces rather than held in memory.
const maxLogLine = 4096

// stderrLive is how long a handler's stderr pipe goes unwatched after the
// start. Most handlers of a superserver live for less, and their pipe is
// then read once, by the reaper, after the exit: no registration with
// Go's poller, no goroutine, no wake-up of superd when the handler
// closes its end. That was a fifth of superd's CPU per connection and a
// sixth of the handler's own (docs/performance.md). A handler that lives
// longer gets a logger goroutine then, so that its lines reach the log
// as they come, at most stderrLive late; one that writes more than a
// pipe buffer (64 KiB) to stderr before that waits for it, once.
const stderrLive = 50 * time.Millisecond

// stderrPipe is the read end of a handler's stderr pipe.
//
// It is read by one of three, and closed by that one: the reaper after
// the handler's exit (the common case: a handler that lived for less
// than stderrLive), the logger that the timer starts after stderrLive,
// or closePipes. state says which; the first to leave pipeIdle owns the
// pipe, and a reaper that finds the pipe still held by someone else
// after the exit (a process the handler left) takes it into the poller
// itself.
type stderrPipe struct {
	log   *slog.Logger // the handler's, for its lines
	pid   int          // the handler's
	fd    int          // the read end, non-blocking
	mu    sync.Mutex
	timer *time.Timer // starts the logger after stderrLive; under mu
	state pipeState   // under mu
	// rd is fd in Go's poller, once a reader has to wait for data (under
	// mu; never changes once set): a logger's, or a reaper's whose
	// handler left the pipe to a process still running.
	rd *os.File
	// drainFrom is when the drain began (Unix nanoseconds): when the
	// handler was reaped, or long ago for closePipes; 0 before.
	drainFrom atomic.Int64
	done      chan struct{} // closed once the pipe is closed
}

// pipeState is who reads a stderrPipe.
type pipeState int

const (
	pipeIdle   pipeState = iota // nobody yet: the handler runs
	pipeReaper                  // the reaper, after the exit
	pipeLogger                  // the logger, the handler still running
	pipeCut                     // closePipes, which closes it at once
)

// claim makes the caller the pipe's reader, as state, unless another one
// is. It reports whether it did.
func (sp *stderrPipe) claim(state pipeState) bool {
	sp.mu.Lock()
	defer sp.mu.Unlock()
	if sp.state != pipeIdle {
		return false
	}
	sp.state = state
	return true
}

// polled returns the pipe in Go's poller, registering it the first time.
func (sp *stderrPipe) polled() *os.File {
	sp.mu.Lock()
	defer sp.mu.Unlock()
	if sp.rd == nil {
		sp.rd = os.NewFile(uintptr(sp.fd), "|0")
	}
	return sp.rd
}

// polledFile returns rd, or nil while the pipe is not in the poller.
func (sp *stderrPipe) polledFile() *os.File {
	sp.mu.Lock()
	defer sp.mu.Unlock()
	return sp.rd
}

// Read reads the pipe for the reader that owns it: without the poller
// as long as data or end of file is there, and in the poller (with the
// drain's deadline) once it has to wait for a process that still holds
// the write end.
func (sp *stderrPipe) Read(p []byte) (int, error) {
	if rd := sp.polledFile(); rd != nil {
		return rd.Read(p)
	}
	for {
		n, err := unix.Read(sp.fd, p)
		switch {
		case err == unix.EINTR:
			continue
		case err == unix.EAGAIN:
			rd := sp.polled()
			if from := sp.drainFrom.Load(); from != 0 {
				rd.SetReadDeadline(drainDeadline(from))
			}
			return rd.Read(p)
		case err != nil:
			return 0, err
		case n == 0:
			return 0, io.EOF
		}
		return n, nil
	}
}

// drainDeadline is the next read deadline of a drain that began at from
// (Unix nanoseconds): stderrDrain from now, but not past stderrDrainMax
// from the start.
func drainDeadline(from int64) time.Time {
	end := time.Unix(0, from).Add(stderrDrainMax)
	if next := time.Now().Add(stderrDrain); next.Before(end) {
		return next
	}
	return end
}

// rawPipe returns a pipe for a handler's stderr (or the trampoline's
// report): a non-blocking read end and a plain blocking write end for the
// child, both bare descriptors for the caller to close. os.Pipe would
// register both ends with the poller and exec would then switch the
// write end back: four system calls more per connection.
func rawPipe() (r, w int, err error) {
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC|unix.O_NONBLOCK); err != nil {
		return -1, -1, err
	}
	// The write end has no other status flag to keep: one fcntl.
	if _, err := unix.FcntlInt(uintptr(p[1]), unix.F_SETFL, 0); err != nil {
		unix.Close(p[0])
		unix.Close(p[1])
		return -1, -1, err
	}
	return p[0], p[1], nil
}

// newStderrPipe returns the stderr pipe of the handler pid, whose read
// end is fd. The caller registers it in t.pipes, counted as one of the
// Table's goroutines until it is closed, and then arms it (watch).
func newStderrPipe(fd int, log *slog.Logger, pid int) *stderrPipe {
	return &stderrPipe{log: log, pid: pid, fd: fd, done: make(chan struct{})}
}

// watch arms the timer that starts a logger after stderrLive (see
// stderrLive).
func (t *Table) watch(sp *stderrPipe) {
	sp.mu.Lock()
	defer sp.mu.Unlock()
	sp.timer = time.AfterFunc(stderrLive, func() {
		if !sp.claim(pipeLogger) {
			return
		}
		rd := sp.polled()
		// A drain that began before rd existed (the handler exited, or
		// closePipes ran, just now) set no deadline: set it here, or a
		// process the handler left holding the pipe would hold up its
		// exit line for as long as it lives.
		if from := sp.drainFrom.Load(); from != 0 {
			rd.SetReadDeadline(drainDeadline(from))
		}
		t.logStderr(sp)
	})
}

// stopTimer stops the timer of watch, if it is armed.
func (sp *stderrPipe) stopTimer() {
	sp.mu.Lock()
	defer sp.mu.Unlock()
	if sp.timer != nil {
		sp.timer.Stop()
	}
}

// finishStderr reads the rest of the pipe after the handler's exit and
// returns once it is closed: the handler's last lines come before its
// exit line; a process it left holding the pipe delays that by
// stderrDrainMax at most.
func (t *Table) finishStderr(sp *stderrPipe) {
	// A drain closePipes began (drainFrom 1, long past) stays that.
	sp.drainFrom.CompareAndSwap(0, time.Now().UnixNano())
	sp.stopTimer()
	if sp.claim(pipeReaper) {
		t.logStderr(sp)
		return
	}
	// The logger or closePipes has it: wake a logger waiting in the
	// poller so that it keeps to the drain's limits. A deadline on a
	// closed pipe fails, harmlessly.
	select {
	case <-sp.done:
		return // end of file came first, as it mostly does
	default:
	}
	if rd := sp.polledFile(); rd != nil {
		rd.SetReadDeadline(drainDeadline(sp.drainFrom.Load()))
	}
	<-sp.done
}

// closePipes closes every stderr pipe still open, logging what each
// still held (stderr_cut), and returns once they are closed. Pipes close
// on their own shortly after their handler is reaped; this is for
// shutdown, when a handler cannot even be reaped.
func (t *Table) closePipes() {
	t.mu.Lock()
	pipes := make([]*stderrPipe, 0, len(t.pipes))
	for sp := range t.pipes {
		pipes = append(pipes, sp)
	}
	t.mu.Unlock()
	for _, sp := range pipes {
		sp.drainFrom.Store(1) // long past: no more reads
		if sp.claim(pipeCut) {
			sp.stopTimer()
			t.cutStderr(sp, unread(sp.fd))
			continue
		}
		if rd := sp.polledFile(); rd != nil {
			rd.SetReadDeadline(time.Unix(0, 1))
		}
	}
	for _, sp := range pipes {
		<-sp.done
	}
}

// logStderr logs the lines of a handler's stderr until end of file, or
// until the drain or closePipes ends it, and then closes the pipe. A pipe
// closed before end of file is logged as stderr_cut, with the bytes it
// still held.
func (t *Table) logStderr(sp *stderrPipe) {
	br := t.readers.Get().(*bufio.Reader)
	br.Reset(sp)
	cut, eof := logLines(br, sp)
	br.Reset(nil)
	t.readers.Put(br)
	if !eof {
		t.cutStderr(sp, cut)
		return
	}
	t.closeStderr(sp)
}

// cutStderr closes a pipe before its end of file, logging the bytes it
// still held (stderr_cut).
func (t *Table) cutStderr(sp *stderrPipe, held int) {
	handler{pid: sp.pid}.log(sp.log, slog.LevelWarn, "stderr_cut", slog.Int("bytes", held))
	t.closeStderr(sp)
}

// closeStderr closes the pipe for the reader that owns it.
func (t *Table) closeStderr(sp *stderrPipe) {
	if rd := sp.polledFile(); rd != nil {
		rd.Close()
	} else {
		unix.Close(sp.fd)
	}
	t.mu.Lock()
	delete(t.pipes, sp)
	t.releasedLocked()
	t.mu.Unlock()
	// Last: whoever waits for done (the reaper, then its exit line;
	// closePipes) must find the pipe gone from Pending.
	close(sp.done)
	t.goDone()
}

// logLines logs each line read from sp, through br, until end of file
// (eof true) or another end: an error, or the limits of the drain. Then
// cut is the number of bytes read or waiting in the pipe that were not
// logged.
func logLines(br *bufio.Reader, sp *stderrPipe) (cut int, eof bool) {
	drained := 0
	piece := false // the last record was a piece of a longer line
	for {
		line, err := br.ReadSlice('\n')
		text := strings.TrimRight(string(line), "\r\n")
		// The end of a line that filled the buffer exactly is no line of
		// its own.
		if len(line) > 0 && !(piece && text == "" && line[len(line)-1] == '\n') {
			handler{pid: sp.pid}.log(sp.log, slog.LevelInfo, "stderr", slog.String("line", text))
		}
		piece = errors.Is(err, bufio.ErrBufferFull)
		if errors.Is(err, io.EOF) {
			return 0, true
		}
		if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
			return br.Buffered() + unread(sp.fd), false
		}
		if from := sp.drainFrom.Load(); from != 0 {
			// Draining, and data came: allow another stderrDrain. The
			// time limit bounds waiting for a process that still holds
			// the pipe (a reader in the poller); what was in the pipe
			// already is read in full, up to stderrDrainBytes, however
			// long the exit waited for its worker behind others.
			drained += len(line)
			rd := sp.polledFile()
			if drained > stderrDrainBytes || (rd != nil && !time.Now().Before(time.Unix(0, from).Add(stderrDrainMax))) {
				return br.Buffered() + unread(sp.fd), false
			}
			if rd != nil {
				rd.SetReadDeadline(drainDeadline(from))
			}
		}
	}
}

// unread returns the number of bytes waiting in the pipe fd.
func unread(fd int) int {
	// TIOCINQ is Linux's other name for FIONREAD, which pipes answer.
	n, _ := unix.IoctlGetInt(fd, unix.TIOCINQ)
	return n
}

// readReport reads why the confinement trampoline could not start the
// handler; "" when it did. It returns at the handler's exec (end of file:
// the pipe is close-on-exec) or when the trampoline dies.
func readReport(r *os.File) string {
	defer r.Close()
	msg, _ := io.ReadAll(io.LimitReader(r, maxLogLine))
	return strings.TrimSpace(string(msg))
}
