package main

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// maxMarks bounds the log lines a daemon keeps: only the few kinds
// marked() selects are kept, and a flood of warnings must not grow the
// memory of this program without bound.
const maxMarks = 10000

// mark is one log line of interest and when this program read it.
type mark struct {
	at   time.Time
	line string
}

// marked reports whether a log line is kept: readiness, reloads, and
// anything above INFO (a run prints how many of those it saw).
func marked(line string) bool {
	return strings.Contains(line, "event=ready ") || strings.Contains(line, "event=reloaded ") ||
		strings.Contains(line, "level=WARN") || strings.Contains(line, "level=ERROR")
}

// daemon is one superd process started by this program. Its three
// goroutines (Wait, the stderr reader, the sd_notify reader) are started
// by startDaemon and ended and waited for by stop.
type daemon struct {
	name    string
	config  string
	cmd     *exec.Cmd
	started time.Time // just before the exec
	notify  *net.UnixConn
	stderr  *os.File // read end of superd's stderr; closed by stop
	logPath string

	readers sync.WaitGroup
	exited  chan struct{} // closed once Wait returned
	logDone chan struct{} // closed once readLog returned
	waitErr error         // Wait's result, set before exited is closed

	mu      sync.Mutex
	ready   time.Time // arrival of the first READY=1; zero before
	marks   []mark
	lines   int           // all log lines read
	exits   int           // handler exit lines read
	changed chan struct{} // closed and replaced on every new mark, exit line or READY
}

// startDaemon starts superd (the binary at path) on config with a clean
// environment (PATH, NOTIFY_SOCKET, then env), its log in dir/NAME.log.
// The caller must call stop.
func startDaemon(path, dir, name, config string, env []string) (*daemon, error) {
	d := &daemon{
		name: name, config: config, logPath: filepath.Join(dir, name+".log"),
		exited: make(chan struct{}), logDone: make(chan struct{}), changed: make(chan struct{}),
	}
	sock := filepath.Join(dir, name+".notify")
	nc, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		return nil, fmt.Errorf("creating the sd_notify socket for %s: %w", name, err)
	}
	logf, err := os.Create(d.logPath)
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("creating the log of %s: %w", name, err)
	}
	r, w, err := os.Pipe()
	if err != nil {
		nc.Close()
		logf.Close()
		return nil, fmt.Errorf("creating the stderr pipe of %s: %w", name, err)
	}
	cmd := exec.Command(path, "run", "--config", config, "--log", "stderr")
	cmd.Env = append([]string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "NOTIFY_SOCKET=" + sock}, env...)
	cmd.Stderr = w
	d.started = time.Now()
	err = cmd.Start()
	w.Close() // superd holds its own copy now
	if err != nil {
		nc.Close()
		logf.Close()
		r.Close()
		return nil, fmt.Errorf("starting %s: %w", path, err)
	}
	d.cmd, d.notify, d.stderr = cmd, nc, r
	d.readers.Add(3)
	go func() {
		defer d.readers.Done()
		d.waitErr = cmd.Wait()
		close(d.exited)
	}()
	go func() {
		defer d.readers.Done()
		defer close(d.logDone)
		d.readLog(logf)
	}()
	go func() {
		defer d.readers.Done()
		d.readNotify()
	}()
	return d, nil
}

// readLog copies superd's stderr into logf, keeping the marked lines,
// until EOF (superd and every holder of its stderr are gone) or until
// stop closes the pipe.
func (d *daemon) readLog(logf *os.File) {
	defer logf.Close()
	bw := bufio.NewWriter(logf)
	defer bw.Flush()
	sc := bufio.NewScanner(d.stderr)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		at := time.Now()
		line := sc.Text()
		bw.WriteString(line)
		bw.WriteByte('\n')
		d.mu.Lock()
		d.lines++
		wake := false
		if strings.Contains(line, " event=exit ") {
			d.exits++
			wake = true
		}
		if marked(line) && len(d.marks) < maxMarks {
			d.marks = append(d.marks, mark{at, line})
			wake = true
		}
		if wake {
			close(d.changed)
			d.changed = make(chan struct{})
		}
		d.mu.Unlock()
	}
}

// readNotify records when READY=1 first arrives, until stop closes the
// socket. The socket is drained at once: a full datagram socket would
// make superd's next sd_notify wait.
func (d *daemon) readNotify() {
	buf := make([]byte, 4096)
	for {
		n, err := d.notify.Read(buf)
		if err != nil {
			return
		}
		at := time.Now()
		if !strings.Contains(string(buf[:n]), "READY=1") {
			continue
		}
		d.mu.Lock()
		if d.ready.IsZero() {
			d.ready = at
			close(d.changed)
			d.changed = make(chan struct{})
		}
		d.mu.Unlock()
	}
}

// pid is superd's process id.
func (d *daemon) pid() int { return d.cmd.Process.Pid }

// waitFor waits until cond (called with d.mu held) holds, superd exits,
// or within has passed.
func (d *daemon) waitFor(what string, within time.Duration, cond func() bool) error {
	deadline := time.NewTimer(within)
	defer deadline.Stop()
	for {
		d.mu.Lock()
		ok, c := cond(), d.changed
		d.mu.Unlock()
		if ok {
			return nil
		}
		select {
		case <-c:
		case <-d.exited:
			return fmt.Errorf("%s exited (%v) while waiting for %s; its log: %s", d.name, d.waitErr, what, d.logPath)
		case <-deadline.C:
			return fmt.Errorf("%s: no %s within %v; its log: %s", d.name, what, within, d.logPath)
		}
	}
}

// waitReady waits for READY=1 and returns the time from the exec to its
// arrival, and the ready log line.
func (d *daemon) waitReady(within time.Duration) (time.Duration, string, error) {
	var line string
	err := d.waitFor("READY=1", within, func() bool {
		if d.ready.IsZero() {
			return false
		}
		for _, m := range d.marks {
			if strings.Contains(m.line, "event=ready ") {
				line = m.line
				return true
			}
		}
		return false
	})
	if err != nil {
		return 0, "", err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.ready.Sub(d.started), line, nil
}

// markCount is the number of marked lines read so far, for waitMark.
func (d *daemon) markCount() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.marks)
}

// waitMark waits for a marked line containing substr among those from
// index from on.
func (d *daemon) waitMark(substr string, from int, within time.Duration) (mark, error) {
	var m mark
	err := d.waitFor(fmt.Sprintf("log line with %q", substr), within, func() bool {
		for _, x := range d.marks[min(from, len(d.marks)):] {
			if strings.Contains(x.line, substr) {
				m = x
				return true
			}
		}
		return false
	})
	return m, err
}

// waitExits waits until n handler exits have been logged in all.
func (d *daemon) waitExits(n int, within time.Duration) error {
	return d.waitFor(fmt.Sprintf("%d handler exits", n), within, func() bool { return d.exits >= n })
}

// problems returns the number of WARN and ERROR lines and the first few.
func (d *daemon) problems() (int, []string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	var n int
	var first []string
	for _, m := range d.marks {
		if strings.Contains(m.line, "level=WARN") || strings.Contains(m.line, "level=ERROR") {
			n++
			if len(first) < 3 {
				first = append(first, m.line)
			}
		}
	}
	return n, first
}

// signal sends sig to superd (by its pid).
func (d *daemon) signal(sig syscall.Signal) error {
	if err := d.cmd.Process.Signal(sig); err != nil {
		return fmt.Errorf("signalling %s (pid %d): %w", d.name, d.pid(), err)
	}
	return nil
}

// stop ends superd: SIGTERM, SIGKILL if it has not exited 20 s later;
// then it ends the readers and waits for them. It returns superd's exit
// error unless that was the expected end.
func (d *daemon) stop() error {
	select {
	case <-d.exited:
	default:
		d.cmd.Process.Signal(syscall.SIGTERM)
		t := time.NewTimer(20 * time.Second)
		select {
		case <-d.exited:
		case <-t.C:
			d.cmd.Process.Kill()
			<-d.exited
		}
		t.Stop()
	}
	d.notify.Close()
	// readLog ends at EOF, once superd and its handlers are gone; a
	// handler that outlived superd must not hold this program up.
	t := time.NewTimer(5 * time.Second)
	select {
	case <-d.logDone:
	case <-t.C:
	}
	t.Stop()
	d.stderr.Close()
	d.readers.Wait()
	if err := d.waitErr; err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) && ee.Success() {
			return nil
		}
		return fmt.Errorf("%s exited badly: %w (log: %s)", d.name, err, d.logPath)
	}
	return nil
}
