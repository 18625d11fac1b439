package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/superd/superd/internal/testkit"
)

// privateJournald is a systemd-journald of a test's own, in a mount
// namespace of its own where /run/systemd, /run/log and /var/log/journal
// are empty tmpfs mounts: nothing it creates, and no socket it listens on,
// is visible outside. It also gets a PID namespace of its own, in which the
// kernel refuses journald's call to switch auditing on or off (Debian's
// journald turns it off at start), so the host's audit setting stays as it
// is.
type privateJournald struct {
	cmd *exec.Cmd
	log string // journald's own messages
}

// startJournald starts a private journald and waits for its READY=1. It is
// stopped at the end of the test.
func startJournald(t *testing.T) *privateJournald {
	t.Helper()
	requireRoot(t)
	skipIfShort(t, "the journald end-to-end test")
	// Where Debian and others install it; it is not on PATH.
	journaldPaths := []string{"/lib/systemd/systemd-journald", "/usr/lib/systemd/systemd-journald"}
	journald := ""
	for _, p := range journaldPaths {
		if _, err := os.Stat(p); err == nil {
			journald = p
			break
		}
	}
	if journald == "" {
		t.Skipf("systemd-journald not installed (none of %q; apt-get install systemd)", journaldPaths)
	}
	for _, prog := range []string{"nsenter", "journalctl"} {
		if _, err := exec.LookPath(prog); err != nil {
			t.Skipf("%s not installed (util-linux, systemd)", prog)
		}
	}
	parentNS, err := os.Readlink("/proc/self/ns/mnt")
	if err != nil {
		t.Fatal(err)
	}

	dir := t.TempDir()
	notifyPath := filepath.Join(dir, "journald-notify.sock")
	notify, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: notifyPath, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer notify.Close()
	logPath := filepath.Join(dir, "journald.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close() // the child has its own copy

	// set -e: if making / private fails, nothing is mounted. The check of
	// the namespace is belt and braces: the clone flag gives a new one.
	const script = `set -e
[ "$(readlink /proc/self/ns/mnt)" != "$PARENT_NS" ]
mount --make-rprivate /
mount -t tmpfs -o mode=0755 tmpfs /run/systemd
mount -t tmpfs -o mode=0755 tmpfs /run/log
if [ -d /var/log/journal ]; then mount -t tmpfs -o mode=0755 tmpfs /var/log/journal; fi
exec "$0"`
	cmd := exec.Command("/bin/sh", "-c", script, journald)
	cmd.Env = []string{
		"PATH=/usr/sbin:/usr/bin:/sbin:/bin",
		"PARENT_NS=" + parentNS,
		"NOTIFY_SOCKET=" + notifyPath,
		// Its own messages to stderr, not to the kernel log.
		"SYSTEMD_LOG_TARGET=console",
		"SYSTEMD_LOG_LEVEL=notice",
	}
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNS | syscall.CLONE_NEWPID}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start journald: %v", err)
	}
	j := &privateJournald{cmd: cmd, log: logPath}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		// As the first process of its PID namespace journald only gets
		// signals it handles: SIGTERM once it is up, SIGKILL always.
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(testkit.Timeout):
			cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			t.Logf("journald's messages:\n%s", b)
		}
	})

	// journald is Type=notify: READY=1 comes once its sockets are open.
	notify.SetReadDeadline(time.Now().Add(testkit.Timeout))
	buf := make([]byte, 4096)
	for {
		n, err := notify.Read(buf)
		if err != nil {
			b, _ := os.ReadFile(logPath)
			t.Fatalf("waiting for journald's READY=1: %v\njournald's messages:\n%s", err, b)
		}
		if slices.Contains(strings.Split(string(buf[:n]), "\n"), "READY=1") {
			break
		}
	}
	return j
}

// wrap is the command line that runs a program in journald's mount
// namespace, as the same process (nsenter execs it).
func (j *privateJournald) wrap() []string {
	return []string{"nsenter", fmt.Sprintf("--mount=/proc/%d/ns/mnt", j.cmd.Process.Pid), "--"}
}

// entries returns the entries journald holds with SYSLOG_IDENTIFIER tag, in
// order, read with journalctl from its journal directory (through /proc, so
// from outside the namespace). Fields journalctl shows as anything but a
// string (binary data, repeated fields) fail the test.
func (j *privateJournald) entries(t *testing.T, tag string) []map[string]string {
	t.Helper()
	dir := fmt.Sprintf("/proc/%d/root/run/log/journal", j.cmd.Process.Pid)
	out, err := exec.Command("journalctl", "-q", "--no-pager", "-o", "json", "-D", dir, "SYSLOG_IDENTIFIER="+tag).Output()
	if err != nil {
		t.Fatalf("journalctl -D %s: %v\n%s", dir, err, out)
	}
	var entries []map[string]string
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var raw map[string]any
		if err := json.Unmarshal(sc.Bytes(), &raw); err != nil {
			t.Fatalf("journalctl -o json: %v in %s", err, sc.Bytes())
		}
		e := map[string]string{}
		for k, v := range raw {
			s, ok := v.(string)
			if !ok {
				t.Errorf("entry %s: field %s is %v, want a string", sc.Bytes(), k, v)
			}
			e[k] = s
		}
		entries = append(entries, e)
	}
	return entries
}

// TestJournalEndToEnd runs superd with log = "journal" against a real
// systemd-journald and reads superd's entries back with journalctl: one
// connection's start, stderr and exit entries with their fields, and
// superd's own events.
func TestJournalEndToEnd(t *testing.T) {
	j := startJournald(t)
	const tag = "superd-e2e-journal"
	port := testkit.FreePort(t, "tcp")
	d := newDaemon(t, fmt.Sprintf(`
[superd]
log = "journal"
syslog_tag = %q

[services.hi]
port = %d
address = "127.0.0.1"
user = "root"
path = "/bin/sh"
args = ["-c", "echo oops >&2; echo hi"]
`, tag, port))
	d.wrap = j.wrap()
	d.start("--log", "journal")
	d.waitNotify("READY=1")
	c := testkit.Dial(t, net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	remote := c.LocalAddr().String()
	c.(*net.TCPConn).CloseWrite()
	if got := testkit.ReadAll(t, c); got != "hi\n" {
		t.Fatalf("reply %q, want %q", got, "hi\n")
	}
	c.Close()
	if err := d.stop(syscall.SIGTERM, testkit.Timeout); err != nil {
		t.Fatalf("superd: %v", err)
	}

	// superd's last entry is "stopped"; journald reads its socket in
	// order, so once that is in the journal, all of superd's entries are.
	var entries []map[string]string
	testkit.WaitFor(t, "superd's stopped entry in the journal", func() bool {
		entries = j.entries(t, tag)
		return slices.ContainsFunc(entries, func(e map[string]string) bool { return e["SUPERD_EVENT"] == "stopped" })
	})
	defer func() {
		if t.Failed() {
			for _, e := range entries {
				t.Logf("entry %q", e)
			}
		}
	}()

	find := func(event string) (int, map[string]string) {
		t.Helper()
		i := slices.IndexFunc(entries, func(e map[string]string) bool { return e["SUPERD_EVENT"] == event })
		if i < 0 {
			t.Fatalf("no entry with SUPERD_EVENT=%s", event)
		}
		return i, entries[i]
	}
	for _, e := range entries {
		// Sent over the native protocol, not written to a stream.
		if e["SYSLOG_IDENTIFIER"] != tag || e["_TRANSPORT"] != "journal" || e["SYSLOG_FACILITY"] != "3" {
			t.Errorf("entry %q: want SYSLOG_IDENTIFIER=%s _TRANSPORT=journal SYSLOG_FACILITY=3 (daemon)", e["MESSAGE"], tag)
		}
	}
	iStart, start := find("start")
	iStderr, stderrLine := find("stderr")
	iExit, exit := find("exit")
	pid := start["SUPERD_HANDLER_PID"]
	if n, err := strconv.Atoi(pid); err != nil || n <= 0 {
		t.Fatalf("start: SUPERD_HANDLER_PID=%q, want a process id", pid)
	}
	wantFields := func(name string, e map[string]string, want map[string]string) {
		t.Helper()
		for k, v := range want {
			if e[k] != v {
				t.Errorf("%s entry: %s=%q, want %q", name, k, e[k], v)
			}
		}
	}
	wantFields("start", start, map[string]string{
		"PRIORITY": "6", "SUPERD_SERVICE": "hi", "SUPERD_REMOTE": remote,
		"MESSAGE": fmt.Sprintf("service=hi event=start pid=%s remote=%s", pid, remote),
	})
	wantFields("stderr", stderrLine, map[string]string{
		"PRIORITY": "6", "MESSAGE": "oops", "SUPERD_SERVICE": "hi", "SUPERD_HANDLER_PID": pid,
	})
	wantFields("exit", exit, map[string]string{
		"PRIORITY": "6", "SUPERD_SERVICE": "hi", "SUPERD_HANDLER_PID": pid, "SUPERD_REMOTE": remote, "SUPERD_EXIT_STATUS": "0",
	})
	if us, err := strconv.ParseInt(exit["SUPERD_DURATION_USEC"], 10, 64); err != nil || us < 0 {
		t.Errorf("exit: SUPERD_DURATION_USEC=%q, want microseconds", exit["SUPERD_DURATION_USEC"])
	}
	msg := regexp.MustCompile(fmt.Sprintf(`^service=hi event=exit pid=%s remote=%s status=0 duration=\S+$`, pid, regexp.QuoteMeta(remote)))
	if !msg.MatchString(exit["MESSAGE"]) {
		t.Errorf("exit: MESSAGE=%q, want match for %v", exit["MESSAGE"], msg)
	}
	if _, ok := stderrLine["SUPERD_LINE"]; ok {
		t.Errorf("stderr entry has SUPERD_LINE; the line is its MESSAGE")
	}
	if !(iStart < iStderr && iStderr < iExit) {
		t.Errorf("entries start, stderr, exit at %d, %d, %d: want them in that order", iStart, iStderr, iExit)
	}
	_, listening := find("listening")
	wantFields("listening", listening, map[string]string{"PRIORITY": "6", "SUPERD_SERVICE": "hi"})
	if logs := d.Logs(); strings.Contains(logs, "event=") {
		t.Errorf("superd logged to stderr too:\n%s", logs)
	}
}

// TestJournalUnavailableEndToEnd runs superd with --log journal where no
// journald listens (a private, empty /run/systemd): one line says so on
// stderr, and the events follow there.
func TestJournalUnavailableEndToEnd(t *testing.T) {
	requireRoot(t)
	skipIfShort(t, "the journald end-to-end test")
	unshare, err := exec.LookPath("unshare")
	if err != nil {
		t.Skip("unshare not installed (util-linux)")
	}
	port := testkit.FreePort(t, "tcp")
	d := newDaemon(t, fmt.Sprintf(`
[superd]
log = "journal"

[services.hi]
port = %d
address = "127.0.0.1"
user = "root"
path = "/bin/echo"
args = ["hi"]
`, port))
	// unshare and sh exec superd, so its pid is superd's.
	d.wrap = []string{unshare, "--mount", "--propagation", "private", "/bin/sh", "-c",
		`mount -t tmpfs -o mode=0755 tmpfs /run/systemd && exec "$0" "$@"`}
	d.start("--log", "journal")
	d.waitNotify("READY=1")
	if got := roundTrip(t, port, ""); got != "hi\n" {
		t.Fatalf("reply %q", got)
	}
	d.waitLog(`level=INFO service=hi event=exit pid=\d+ remote=127\.0\.0\.1:\d+ status=0`)
	notice := regexp.MustCompile(`(?m)^time=\S+ level=WARN event=journal_unavailable err="no journald at /run/systemd/journal/socket: [^"]+" logging_to=stderr$`)
	if n := len(notice.FindAllString(d.Logs(), -1)); n != 1 {
		t.Errorf("got %d journal_unavailable lines, want 1 matching %v:\n%s", n, notice, d.Logs())
	}
	if i := strings.Index(d.Logs(), "event="); i < 0 || !strings.HasPrefix(d.Logs()[i:], "event=journal_unavailable") {
		t.Errorf("the first line is not the notice:\n%s", d.Logs())
	}
}
