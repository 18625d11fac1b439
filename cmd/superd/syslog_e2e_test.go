package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"

	"github.com/superd/superd/internal/testkit"
)

// TestSyslogEndToEnd runs a real rsyslogd with a configuration of the
// test's own (its own socket and output file, nothing system-wide) and
// finds superd's lines, with facility and tag, in what rsyslogd wrote.
func TestSyslogEndToEnd(t *testing.T) {
	rsyslogd, err := exec.LookPath("rsyslogd")
	if err != nil {
		if os.Getenv("SUPERD_REQUIRE_RSYSLOG") != "" {
			t.Fatal("rsyslogd not installed; .ci/run installs Debian's rsyslog")
		}
		t.Skip("rsyslogd not installed (apt-get install rsyslog); .ci/run installs it")
	}
	dir := t.TempDir()
	sock := filepath.Join(dir, "log.sock")
	out := filepath.Join(dir, "out.log")
	conf := filepath.Join(dir, "rsyslog.conf")
	os.WriteFile(conf, []byte(fmt.Sprintf(`
global(workDirectory=%q)
module(load="imuxsock" SysSock.Use="off")
input(type="imuxsock" Socket=%q RateLimit.Interval="0" UseSpecialParser="off" ParseHostname="on")
template(name="superdtest" type="string" string="%%syslogfacility-text%%.%%syslogseverity-text%% %%syslogtag%%%%msg%%\n")
*.* action(type="omfile" file=%q template="superdtest")
`, dir, sock, out)), 0o644)
	rs := exec.Command(rsyslogd, "-n", "-f", conf, "-i", filepath.Join(dir, "rsyslogd.pid"))
	rs.Stderr = os.Stderr
	if err := rs.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		rs.Process.Signal(syscall.SIGTERM)
		rs.Wait()
	}()
	testkit.WaitFor(t, "rsyslogd's socket", func() bool {
		_, err := os.Stat(sock)
		return err == nil
	})

	port := testkit.FreePort(t, "tcp")
	d := newDaemon(t, fmt.Sprintf(`
[superd]
log = "syslog"
syslog_facility = "local5"
syslog_tag = "superd-e2e"
syslog_socket = %q

[services.hi]
port = %d
address = "127.0.0.1"
user = "root"
path = "/bin/echo"
args = ["hi"]
`, sock, port))
	d.start("--log", "syslog")
	d.waitNotify("READY=1")
	if got := roundTrip(t, port, ""); got != "hi\n" {
		t.Fatalf("reply %q", got)
	}
	want := regexp.MustCompile(fmt.Sprintf(`(?m)^local5\.info superd-e2e\[%d\]: ?service=hi event=exit pid=\d+ remote=127\.0\.0\.1:\d+ status=0`, d.pid()))
	// Polled: rsyslogd writes its file when it likes.
	var text string
	testkit.WaitFor(t, fmt.Sprintf("an exit line matching %v in rsyslog's output", want), func() bool {
		b, _ := os.ReadFile(out)
		text = string(b)
		return want.MatchString(text)
	})
	if strings.Contains(d.Logs(), "event=exit") {
		t.Errorf("log lines went to stderr too:\n%s", d.Logs())
	}
}
