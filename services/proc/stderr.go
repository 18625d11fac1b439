package proc

import (
	"bufio"
	"errors"
	"io"
	"log/slog"
	"os"
	"strings"
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

// stderrPipe is the read end of a handler's stderr pipe. The goroutine
// that logs it (logStderr) closes it.
type stderrPipe struct {
	rd *os.File
	// drainFrom is when the drain began (Unix nanoseconds): when the
	// handler was reaped, or long ago for closePipes; 0 before.
	drainFrom atomic.Int64
	done      chan struct{} // closed once rd is closed
}

// logPipe returns a pipe for a handler's stderr (or the trampoline's
// report): a read end in Go's poller (so shutdown can interrupt it) and
// a plain blocking write end for the child, left a bare descriptor for
// the caller to close. os.Pipe would register both ends with the poller
// and exec would then switch the write end back: four system calls more
// per connection.
func logPipe() (r *os.File, w int, err error) {
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC|unix.O_NONBLOCK); err != nil {
		return nil, -1, err
	}
	// The write end has no other status flag to keep: one fcntl.
	if _, err := unix.FcntlInt(uintptr(p[1]), unix.F_SETFL, 0); err != nil {
		unix.Close(p[0])
		unix.Close(p[1])
		return nil, -1, err
	}
	return os.NewFile(uintptr(p[0]), "|0"), p[1], nil
}

// readReport reads why the confinement trampoline could not start the
// handler; "" when it did. It returns at the handler's exec (end of file:
// the pipe is close-on-exec) or when the trampoline dies.
func readReport(r *os.File) string {
	defer r.Close()
	msg, _ := io.ReadAll(io.LimitReader(r, maxLogLine))
	return strings.TrimSpace(string(msg))
}

// drain starts the drain of the pipe and waits until it is closed.
func (sp *stderrPipe) drain() {
	select {
	case <-sp.done:
		return // end of file came first, as it mostly does: no deadline to set
	default:
	}
	now := time.Now()
	sp.drainFrom.Store(now.UnixNano())
	// A deadline on a closed pipe fails, harmlessly.
	sp.rd.SetReadDeadline(now.Add(stderrDrain))
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
		sp.rd.SetReadDeadline(time.Unix(0, 1))
	}
	for _, sp := range pipes {
		<-sp.done
	}
}

// logStderr logs the lines of a handler's stderr until end of file, or
// until the drain or closePipes ends it, and then closes the pipe. A pipe
// closed before end of file is logged as stderr_cut, with the bytes it
// still held.
func (t *Table) logStderr(sp *stderrPipe, log *slog.Logger, pid int) {
	defer close(sp.done)
	br := t.readers.Get().(*bufio.Reader)
	br.Reset(sp.rd)
	cut, eof := logLines(br, sp, log, pid)
	br.Reset(nil)
	t.readers.Put(br)
	if !eof {
		log.Warn("stderr_cut", "pid", pid, "bytes", cut)
	}
	sp.rd.Close()
	t.mu.Lock()
	delete(t.pipes, sp)
	t.releasedLocked()
	t.mu.Unlock()
}

// logLines logs each line read from sp, through br, until end of file (eof true) or
// another end: an error, or the limits of the drain. Then cut is the
// number of bytes read or waiting in the pipe that were not logged.
func logLines(br *bufio.Reader, sp *stderrPipe, log *slog.Logger, pid int) (cut int, eof bool) {
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
