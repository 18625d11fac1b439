package upgrade

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Spec is the new process of an upgrade.
type Spec struct {
	// Path is the binary to run: the one at superd's path on disk now.
	Path string
	// Argv is its command line, argv[0] first: superd's own.
	Argv []string
	// Env is its environment; Start takes out the variables of socket
	// passing and sets its own.
	Env []string
	// Files are the sockets to hand over, each named (f.Name()) as
	// LISTEN_FDNAMES is to name it. Start does not close them.
	Files []*os.File
	// Owned lists the indexes in Files of the unix sockets whose file
	// the old process would remove when it closes them: the new process
	// takes that over (Predecessor.OwnsFile).
	Owned []int
	// Timeout bounds the wait for the new process to be ready.
	Timeout time.Duration
}

// exitWait bounds the wait for a new process that closed its end of the
// handshake before it was ready: it is exiting, or is killed after this.
const exitWait = 5 * time.Second

// Successor is the new process of an upgrade, once it has said it is
// ready.
//
// Ownership: the Successor owns the old process's end of the handshake
// and two goroutines, one that writes the queued messages on it and one
// that waits for the new process's exit. Close ends the writer and
// closes the handshake; the waiter ends when the new process does (if
// the old one exits first, the new one is the service manager's to
// reap).
type Successor struct {
	// Pid is the new process's.
	Pid int

	proc   *os.Process
	conn   net.Conn
	exited chan struct{} // closed once the new process has been reaped
	status string        // how it ended; set before exited is closed

	mu      sync.Mutex
	queue   []message
	closing bool
	wake    chan struct{} // one slot: the writer has something to do
	written chan struct{} // closed when the writer has returned
}

// Start starts the new process with spec's sockets and waits, at most
// spec.Timeout, until it says it is ready. When it fails to start,
// exits or does not say so in time, or ctx ends first, the new process
// is stopped (killed: it has taken no client) and reaped, and the error
// says what happened.
func Start(ctx context.Context, spec Spec) (*Successor, error) {
	pair, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("socketpair: %w", err)
	}
	mine := os.NewFile(uintptr(pair[0]), "upgrade")
	theirs := os.NewFile(uintptr(pair[1]), "upgrade")
	files := append(stdio(), spec.Files...)
	files = append(files, theirs)
	p, err := os.StartProcess(spec.Path, spec.Argv, &os.ProcAttr{Env: childEnv(spec), Files: files})
	theirs.Close()
	if err != nil {
		mine.Close()
		return nil, fmt.Errorf("cannot start %s: %w", spec.Path, err)
	}
	conn, err := net.FileConn(mine)
	mine.Close()
	s := &Successor{Pid: p.Pid, proc: p, conn: conn, exited: make(chan struct{}),
		wake: make(chan struct{}, 1), written: make(chan struct{})}
	go s.wait(p)
	if err != nil {
		return nil, s.fail(p, fmt.Errorf("handshake with the new process (pid %d): %w", p.Pid, err))
	}
	if err := s.awaitReady(ctx, spec.Timeout); err != nil {
		return nil, s.fail(p, err)
	}
	go s.write()
	return s, nil
}

// stdio is superd's descriptors 0 to 2 for the new process, nil (closed
// there too) for one that is not open.
func stdio() []*os.File {
	files := []*os.File{os.Stdin, os.Stdout, os.Stderr}
	for fd := range files {
		if _, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0); err != nil {
			files[fd] = nil
		}
	}
	return files
}

// childEnv is the environment of the new process: spec's, with the
// sockets' variables and this package's.
func childEnv(spec Spec) []string {
	env := filterEnv(spec.Env)
	if n := len(spec.Files); n > 0 {
		env = append(env, "LISTEN_FDS="+strconv.Itoa(n), "LISTEN_FDNAMES="+fdNames(spec.Files))
	}
	if len(spec.Owned) > 0 {
		fds := make([]string, len(spec.Owned))
		for i, n := range spec.Owned {
			fds[i] = strconv.Itoa(3 + n)
		}
		env = append(env, envOwned+"="+strings.Join(fds, ","))
	}
	return append(env,
		envFD+"="+strconv.Itoa(3+len(spec.Files)),
		envPID+"="+strconv.Itoa(os.Getpid()))
}

// maxFDNames bounds LISTEN_FDNAMES well below the kernel's limit on one
// environment string (128 KiB), which thousands of long service names
// would pass (exec then fails with E2BIG).
const maxFDNames = 64 << 10

// fdNames is LISTEN_FDNAMES for files. When the names are too long, the
// sockets of services are all named "/", which no service can be
// called: the new process then adopts each by its protocol, address and
// port alone, which identify it as well. Names with a '/' (superd's own
// sockets) stay.
func fdNames(files []*os.File) string {
	names := make([]string, len(files))
	for i, f := range files {
		names[i] = f.Name()
	}
	return joinFDNames(names)
}

// joinFDNames is fdNames of the names; it may change names.
func joinFDNames(names []string) string {
	all := strings.Join(names, ":")
	if len(all) <= maxFDNames {
		return all
	}
	for i, name := range names {
		if !strings.Contains(name, "/") {
			names[i] = "/"
		}
	}
	return strings.Join(names, ":")
}

// wait reaps the new process and records how it ended.
func (s *Successor) wait(p *os.Process) {
	st, err := p.Wait()
	if err != nil {
		s.status = err.Error()
	} else {
		s.status = describe(st)
	}
	close(s.exited)
}

// describe says how a process ended, as the log says it of handlers.
func describe(st *os.ProcessState) string {
	if ws, ok := st.Sys().(interface{ Signaled() bool }); ok && ws.Signaled() {
		return "was killed (" + st.String() + ")"
	}
	return "exited with status " + strconv.Itoa(st.ExitCode())
}

// awaitReady reads the new process's first message.
func (s *Successor) awaitReady(ctx context.Context, timeout time.Duration) error {
	s.conn.SetReadDeadline(time.Now().Add(timeout))
	stop := context.AfterFunc(ctx, func() { s.conn.SetReadDeadline(time.Unix(1, 0)) })
	line, err := bufio.NewReader(s.conn).ReadBytes('\n')
	stop()
	var m message
	switch {
	case ctx.Err() != nil:
		return fmt.Errorf("superd is stopping: stopped the new process (pid %d)", s.Pid)
	case errors.Is(err, os.ErrDeadlineExceeded):
		return fmt.Errorf("the new process (pid %d) was not ready within %v (upgrade_timeout): stopped it", s.Pid, timeout)
	case err != nil:
		select {
		case <-s.exited:
			hint := ""
			if strings.HasPrefix(s.status, "exited") {
				hint = " (what it said is on superd's standard error, above)"
			}
			return fmt.Errorf("the new process (pid %d) %s before it was ready%s", s.Pid, s.status, hint)
		case <-time.After(exitWait):
			return fmt.Errorf("the new process (pid %d) closed the handshake before it was ready: stopped it", s.Pid)
		}
	case json.Unmarshal(line, &m) != nil || !m.Ready:
		return fmt.Errorf("the new process (pid %d) said %q instead of that it was ready: stopped it", s.Pid, strings.TrimSpace(string(line)))
	}
	s.conn.SetReadDeadline(time.Time{})
	return nil
}

// fail stops the new process, which has no client yet, and returns err.
func (s *Successor) fail(p *os.Process, err error) error {
	p.Kill()
	<-s.exited
	if s.conn != nil {
		s.conn.Close()
	}
	close(s.written)
	return err
}

// Send queues c for the new process. It never blocks: it is called
// with an admission state's lock held.
func (s *Successor) Send(c Change) {
	m := message{FD: c.FD, Slots: c.Slots, Held: c.Held, Released: c.Released}
	if c.Source.IsValid() {
		m.Source, m.Sources = c.Source.String(), c.Sources
	}
	s.push(m)
}

// Synced queues the message that the counts sent so far are the old
// process's as they were when it stopped taking clients.
func (s *Successor) Synced() { s.push(message{Synced: true}) }

func (s *Successor) push(m message) {
	s.mu.Lock()
	if !s.closing {
		s.queue = append(s.queue, m)
	}
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// Close sends what is queued and closes the handshake, which tells the
// new process that the old one's clients have all ended. It waits for
// the writer; a new process that stopped reading cannot hold it up for
// long, see write.
func (s *Successor) Close() {
	s.mu.Lock()
	s.closing = true
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
	<-s.written
}

// Abort kills the new process, ready but not yet told synced (so it has
// taken no client), and closes the handshake: the old process keeps its
// sockets after all (it is stopping).
func (s *Successor) Abort() {
	s.proc.Kill()
	s.Close()
	<-s.exited
}

// Exited is closed when the new process has ended; Status says how.
func (s *Successor) Exited() <-chan struct{} { return s.exited }

// Status says how the new process ended, once Exited is closed.
func (s *Successor) Status() string { return s.status }

// writeTimeout bounds one write of queued messages: a new process that
// no longer reads them (it hangs) must not keep the old one from
// exiting once its clients are done.
const writeTimeout = 10 * time.Second

// write is the writer goroutine: it sends the queue in batches until
// Close. After a failed write it drops what comes: the new process is
// gone or stuck, and the counts are its only use.
func (s *Successor) write() {
	defer close(s.written)
	defer s.conn.Close()
	broken := false
	var buf []byte
	for {
		<-s.wake
		s.mu.Lock()
		batch, closing := s.queue, s.closing
		s.queue = nil
		s.mu.Unlock()
		if !broken && len(batch) > 0 {
			buf = buf[:0]
			for _, m := range batch {
				b, _ := json.Marshal(m)
				buf = append(append(buf, b...), '\n')
			}
			s.conn.SetWriteDeadline(time.Now().Add(writeTimeout))
			_, err := s.conn.Write(buf)
			broken = err != nil
		}
		if closing {
			return
		}
	}
}
