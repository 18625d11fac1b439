package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/superd/superd/internal/testkit"
)

// debianXinetd is the copy of Debian's /etc/xinetd.d that config/legacy's
// tests use.
const debianXinetd = "../../config/legacy/testdata/xinetd/debian/xinetd.d"

// TestConvertGolden runs superd convert on inputs whose handlers every
// Debian host has, compares what it writes on stdout and stderr with the
// golden files, and, as root, checks the result with superd check.
func TestConvertGolden(t *testing.T) {
	tests := []struct {
		name  string
		files []string
	}{
		{"handlers-xinetd", []string{"testdata/convert/handlers.xinetd"}},
		{"handlers-inetd", []string{"testdata/convert/handlers.inetd.conf"}},
		{"debian-xinetd", []string{debianXinetd}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, errOut, status := superdCmd(t, append([]string{"convert"}, tt.files...)...)
			if status != 0 {
				t.Fatalf("convert exit %d; want 0\nstderr:\n%s", status, errOut)
			}
			golden(t, "convert/"+tt.name+".toml", out)
			golden(t, "convert/"+tt.name+".stderr", errOut)
			requireRoot(t)
			path := filepath.Join(t.TempDir(), "services.toml")
			if err := os.WriteFile(path, []byte(out), 0o644); err != nil {
				t.Fatal(err)
			}
			checkOut, checkErr, status := superdCmd(t, "check", "--config", path)
			if status != 0 {
				t.Fatalf("superd check refuses what convert wrote: exit %d\n%s%s\nconfig:\n%s", status, checkOut, checkErr, out)
			}
			golden(t, "convert/"+tt.name+".check", strings.ReplaceAll(checkOut, path, "services.toml"))
		})
	}
}

// TestConvertHelp compares `superd convert --help` with its golden file.
func TestConvertHelp(t *testing.T) {
	_, errOut, status := superdCmd(t, "convert", "--help")
	if status != 0 {
		t.Fatalf("convert --help exit %d", status)
	}
	golden(t, "convert/help.txt", errOut)
}

// TestConvertExitStatus checks the promise of the issue: 0 whenever a
// configuration was written (warnings included), 1 only when an input
// cannot be read or parsed, and nothing on stdout then; 2 for usage
// errors.
func TestConvertExitStatus(t *testing.T) {
	dir := t.TempDir()
	prose := filepath.Join(dir, "prose")
	open := filepath.Join(dir, "open")
	os.WriteFile(prose, []byte("This is not a configuration.\n"), 0o644)
	os.WriteFile(open, []byte("service echo\n{\n\ttype = INTERNAL\n"), 0o644)
	tests := []struct {
		args       []string
		status     int
		wantStdout string
		wantStderr string
	}{
		{[]string{"testdata/convert/handlers.xinetd"}, 0, "[services.upper]", "NOT CONVERTED: banner = /etc/issue.net"},
		{[]string{"--from", "inetd", "testdata/convert/handlers.inetd.conf"}, 0, "[services.7811]", "5 services converted (1 disabled)"},
		{[]string{"testdata/convert/handlers.inetd.conf", "--from", "inetd"}, 0, "[services.7811]", ""},
		{[]string{"/nonexistent/inetd.conf"}, 1, "", "cannot read /nonexistent/inetd.conf: no such file or directory"},
		{[]string{prose}, 1, "", "neither inetd.conf nor xinetd configuration"},
		{[]string{open}, 1, "", open + ":1: service echo is not closed"},
		{[]string{"testdata/convert/handlers.xinetd", prose}, 1, "", "nothing written"},
		{[]string{}, 2, "", "name at least one FILE"},
		{[]string{"--from", "systemd", "x"}, 2, "", `--from must be inetd or xinetd, not "systemd"`},
		{[]string{"--frm", "inetd", "x"}, 2, "", "flag provided but not defined: -frm"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			out, errOut, status := superdCmd(t, append([]string{"convert"}, tt.args...)...)
			if status != tt.status {
				t.Errorf("exit %d; want %d\nstderr:\n%s", status, tt.status, errOut)
			}
			if tt.wantStdout == "" && out != "" {
				t.Errorf("stdout %q; want nothing", out)
			}
			if !strings.Contains(out, tt.wantStdout) {
				t.Errorf("stdout %q; want it to contain %q", out, tt.wantStdout)
			}
			if !strings.Contains(errOut, tt.wantStderr) {
				t.Errorf("stderr %q; want it to contain %q", errOut, tt.wantStderr)
			}
		})
	}
}

// TestConvertHostFiles converts whatever /etc/xinetd.d/* and
// /etc/inetd.conf this machine has (CI installs xinetd and
// openbsd-inetd) and checks the result with superd check.
func TestConvertHostFiles(t *testing.T) {
	skipIfShort(t, "converting this machine's inetd and xinetd files")
	files, _ := filepath.Glob("/etc/xinetd.d/*")
	if _, err := os.Stat("/etc/inetd.conf"); err == nil {
		files = append(files, "/etc/inetd.conf")
	}
	var why string
	switch {
	case len(files) == 0:
		why = "no /etc/xinetd.d/* and no /etc/inetd.conf (apt-get install xinetd openbsd-inetd; .ci/run installs them)"
	case os.Geteuid() != 0:
		why = "superd check of the converted services needs root (their users); CI runs as root"
	}
	if why != "" {
		if os.Getenv("SUPERD_REQUIRE_PROGRAMS") == "1" {
			t.Fatalf("%s, and SUPERD_REQUIRE_PROGRAMS=1 requires it", why)
		}
		t.Skip(why)
	}
	out, errOut, status := superdCmd(t, append([]string{"convert"}, files...)...)
	if status != 0 {
		t.Fatalf("convert %q: exit %d\n%s", files, status, errOut)
	}
	t.Logf("converted %q:\n%s", files, errOut)
	path := filepath.Join(t.TempDir(), "services.toml")
	if err := os.WriteFile(path, []byte(out), 0o644); err != nil {
		t.Fatal(err)
	}
	checkOut, checkErr, status := superdCmd(t, "check", "--config", path)
	if status != 0 {
		t.Fatalf("superd check refuses the converted host files: exit %d\n%s%s\nconfig:\n%s", status, checkOut, checkErr, out)
	}
}

// TestConvertSideBySide starts xinetd on loopback from Debian's own
// /etc/xinetd.d/echo (enabled, on free ports) and from a handler
// service, converts the same files with superd convert, runs superd on
// the result, and checks that both answer the same bytes: the echo
// built-in over TCP and UDP, and tr as a handler.
func TestConvertSideBySide(t *testing.T) {
	realProgram(t, "/usr/sbin/xinetd", "xinetd")
	dir := t.TempDir()
	tcpPort, udpPort, upperPort := testkit.FreePort(t, "tcp"), testkit.FreePort(t, "udp"), testkit.FreePort(t, "tcp")
	orig, err := os.ReadFile(filepath.Join(debianXinetd, "echo"))
	if err != nil {
		t.Fatal(err)
	}
	confDir := filepath.Join(dir, "xinetd.d")
	os.Mkdir(confDir, 0o755)
	writeText(t, filepath.Join(confDir, "echo"), onLoopback(t, string(orig), tcpPort, udpPort))
	writeText(t, filepath.Join(confDir, "upper"), fmt.Sprintf(`service upper
{
	type		= UNLISTED
	port		= %d
	bind		= 127.0.0.1
	socket_type	= stream
	protocol	= tcp
	wait		= no
	user		= nobody
	server		= /usr/bin/tr
	server_args	= a-z A-Z
}
`, upperPort))
	conf := filepath.Join(dir, "xinetd.conf")
	writeText(t, conf, "defaults\n{\n}\nincludedir "+confDir+"\n")

	exchanges := []struct {
		name string
		talk func(t *testing.T) string
	}{
		{"echo over tcp", func(t *testing.T) string { return tcpExchange(t, tcpPort, "hello, superd\r\n") }},
		{"echo over udp", func(t *testing.T) string { return udpExchange(t, udpPort, "one datagram") }},
		{"tr as a handler", func(t *testing.T) string { return tcpExchange(t, upperPort, "hello world\n") }},
	}
	want := map[string]string{"echo over tcp": "hello, superd\r\n", "echo over udp": "one datagram", "tr as a handler": "HELLO WORLD\n"}

	x := startXinetd(t, conf, filepath.Join(dir, "xinetd.pid"))
	fromXinetd := map[string]string{}
	for _, ex := range exchanges {
		fromXinetd[ex.name] = ex.talk(t)
	}
	x.stop(t)

	out, errOut, status := superdCmd(t, "convert", conf)
	if status != 0 {
		t.Fatalf("convert exit %d\n%s", status, errOut)
	}
	startDaemon(t, out)
	for _, ex := range exchanges {
		got := ex.talk(t)
		if got != fromXinetd[ex.name] {
			t.Errorf("%s: superd answered %q, xinetd %q", ex.name, got, fromXinetd[ex.name])
		}
		if got != want[ex.name] {
			t.Errorf("%s: superd answered %q; want %q", ex.name, got, want[ex.name])
		}
	}
	if t.Failed() {
		t.Logf("converted configuration:\n%s", out)
	}
}

// onLoopback turns Debian's echo file into one xinetd serves on test
// ports: enabled, UNLISTED (xinetd requires the /etc/services port of a
// listed service), bound to 127.0.0.1.
func onLoopback(t *testing.T, text string, tcpPort, udpPort int) string {
	t.Helper()
	entry := regexp.MustCompile(`(?s)\{\n(.*?)\n\}`)
	n := 0
	text = entry.ReplaceAllStringFunc(text, func(e string) string {
		n++
		port := tcpPort
		if strings.Contains(e, "dgram") {
			port = udpPort
		}
		e = strings.Replace(e, "disable\t\t= yes", "disable\t\t= no", 1)
		e = strings.Replace(e, "type\t\t= INTERNAL\n", "type\t\t= INTERNAL UNLISTED\n", 1)
		return strings.Replace(e, "{\n", fmt.Sprintf("{\n\tport\t\t= %d\n\tbind\t\t= 127.0.0.1\n", port), 1)
	})
	if n != 2 || strings.Count(text, "disable\t\t= no") != 2 || strings.Count(text, "INTERNAL UNLISTED") != 2 {
		t.Fatalf("Debian's echo file has changed shape; the test expects two entries with disable and type = INTERNAL:\n%s", text)
	}
	return text
}

func writeText(t *testing.T, path, text string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
}

// xinetdProc is a running xinetd started by a test.
type xinetdProc struct {
	cmd     *exec.Cmd
	started chan struct{} // closed when xinetd logs "Started working"
	exited  chan struct{} // closed once its log ended and Wait returned

	mu   sync.Mutex
	logs []string // every log line so far
}

// startXinetd starts xinetd in the foreground, logging to a pipe, and
// returns once it logged that it started working. A goroutine reads the
// log until xinetd exits; stop, or the test's cleanup, ends xinetd and
// waits for that goroutine.
func startXinetd(t *testing.T, conf, pidfile string) *xinetdProc {
	t.Helper()
	cmd := exec.Command("/usr/sbin/xinetd", "-dontfork", "-f", conf, "-pidfile", pidfile, "-filelog", "/dev/stderr")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	x := &xinetdProc{cmd: cmd, started: make(chan struct{}), exited: make(chan struct{})}
	go func() {
		defer close(x.exited)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			x.mu.Lock()
			x.logs = append(x.logs, sc.Text())
			x.mu.Unlock()
			if strings.Contains(sc.Text(), "Started working") {
				close(x.started)
			}
		}
		io.Copy(io.Discard, stderr)
		cmd.Wait()
	}()
	t.Cleanup(func() { x.stop(t) })
	select {
	case <-x.started:
	case <-x.exited:
		t.Fatalf("xinetd exited before it started working:\n%s", x.log())
	case <-time.After(testkit.Timeout):
		t.Fatalf("xinetd did not start working within %v:\n%s", testkit.Timeout, x.log())
	}
	if l := x.log(); !strings.Contains(l, "Started working: 3 available services") {
		t.Fatalf("xinetd did not take all three services:\n%s", l)
	}
	return x
}

// log returns what xinetd logged so far.
func (x *xinetdProc) log() string {
	x.mu.Lock()
	defer x.mu.Unlock()
	return strings.Join(x.logs, "\n")
}

// stop ends xinetd and waits for it, so that its ports are free; a
// second call only waits.
func (x *xinetdProc) stop(t *testing.T) {
	x.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-x.exited:
	case <-time.After(testkit.Timeout):
		x.cmd.Process.Kill()
		<-x.exited
		t.Errorf("xinetd did not exit within %v of SIGTERM", testkit.Timeout)
	}
}

// tcpExchange sends req, closes the sending side and returns everything
// the server writes until it closes.
func tcpExchange(t *testing.T, port int, req string) string {
	t.Helper()
	c := testkit.Dial(t, net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	defer c.Close()
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	c.(*net.TCPConn).CloseWrite()
	return testkit.ReadAll(t, c)
}

// udpExchange sends one datagram and returns the one that answers it.
func udpExchange(t *testing.T, port int, req string) string {
	t.Helper()
	c := testkit.DialNetwork(t, "udp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	defer c.Close()
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4096)
	n, err := c.Read(buf)
	if err != nil {
		t.Fatalf("udp echo on port %d: %v", port, err)
	}
	return string(buf[:n])
}
