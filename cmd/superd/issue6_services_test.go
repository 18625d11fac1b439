package main

import (
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/superd/superd/internal/testkit"
)

// TestTrampolineIsRunningBinary runs superd from a copy of its binary
// and then deletes the copy, and then puts another program at its path,
// as a package upgrade does. The confinement trampoline (umask) must
// still be the superd that runs: the impostor is never executed as root
// with superd's private protocol, and the handler gets no descriptor of
// the binary.
func TestTrampolineIsRunningBinary(t *testing.T) {
	dir := t.TempDir()
	os.Chmod(dir, 0o755)
	path := filepath.Join(dir, "superd")
	if err := copyFile(bin.superd, path, 0o755); err != nil {
		t.Fatal(err)
	}
	port := testkit.FreePort(t, "tcp")
	d := newDaemon(t, fmt.Sprintf(`
[services.confined]
port = %d
address = "127.0.0.1"
user = "root"
umask = "077"
path = "%%HELPER%%"
args = ["describe"]
`, port))
	// Run the copy: sh drops the harness's binary from the command line.
	d.wrap = []string{"/bin/sh", "-c", `shift; exec "$0" "$@"`, path}
	d.start()
	d.waitNotify("READY=1")

	check := func(when string) {
		t.Helper()
		out := roundTrip(t, port, "")
		if !strings.Contains(out, "umask=0077\n") || !strings.Contains(out, "extra-fds=[]\n") {
			t.Fatalf("%s: confined handler said %q, want umask=0077 and extra-fds=[]", when, out)
		}
	}
	check("binary in place")
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	check("binary deleted")
	marker := filepath.Join(dir, "impostor-ran")
	impostor := fmt.Sprintf("#!/bin/sh\ntouch %s\necho impostor\n", marker)
	if err := os.WriteFile(path, []byte(impostor), 0o755); err != nil {
		t.Fatal(err)
	}
	check("another program at the binary's path")
	testkit.WaitFor(t, "3 clean exits", func() bool {
		return d.countLog(`service=confined event=exit .*status=0`) == 3
	})
	if _, err := os.Stat(marker); err == nil {
		t.Errorf("the program put at superd's path was executed (%s exists)", marker)
	}
}

// TestDescriptorsExhaustedDefers runs superd with a low descriptor limit
// and holds connections open until it runs out of descriptors. Further
// clients must wait (in the backlog, or accepted with their start
// deferred), not be dropped: once the held handlers end, every waiting
// client is served.
func TestDescriptorsExhaustedDefers(t *testing.T) {
	port := testkit.FreePort(t, "tcp")
	d := newDaemon(t, fmt.Sprintf(`
[services.hold]
port = %d
address = "127.0.0.1"
user = "root"
instances = 200
path = "/bin/sh"
args = ["-c", "read x; echo got $x"]
`, port))
	// superd needs about a dozen descriptors of its own, and two for
	// each running handler (its stderr pipe and its pidfd).
	const limit = 40
	d.wrap = []string{"/bin/sh", "-c", `ulimit -n ` + strconv.Itoa(limit) + ` && exec "$@"`, "sh"}
	d.start()
	d.waitNotify("READY=1")

	// Before the fix, a shortage showed as accept_failed and
	// start_failed (a client dropped): stop there too, and fail below.
	exhausted := func() bool {
		return d.countLog(`service=hold event=(descriptors_exhausted|accept_failed|start_failed)`) > 0
	}
	starts := func() int { return d.countLog(`service=hold event=start `) }
	var clients []net.Conn
	for !exhausted() {
		if len(clients) == limit {
			t.Fatalf("%d handlers started under a limit of %d descriptors, and no shortage", starts(), limit)
		}
		clients = append(clients, dial(t, port))
		n := len(clients)
		testkit.WaitFor(t, fmt.Sprintf("start %d or descriptors_exhausted", n), func() bool {
			return starts() == n || exhausted()
		})
	}
	// A few more: they wait in the backlog.
	for range 3 {
		clients = append(clients, dial(t, port))
	}
	held := starts()
	waiting := len(clients) - held
	if held == 0 || waiting < 3 {
		t.Fatalf("%d handlers running and %d clients waiting, want some of each", held, waiting)
	}
	for i, c := range clients {
		if _, err := fmt.Fprintf(c, "c%d\n", i); err != nil {
			t.Fatalf("client %d: write: %v", i, err)
		}
	}
	for i, c := range clients {
		b, err := io.ReadAll(c)
		c.Close()
		if want := fmt.Sprintf("got c%d\n", i); string(b) != want {
			t.Errorf("client %d of %d (%d held, %d waiting) got %q, %v; want %q", i, len(clients), held, waiting, b, err, want)
		}
	}
	testkit.WaitFor(t, "every handler's exit", func() bool {
		return d.countLog(`service=hold event=exit .*status=0`) == len(clients)
	})
	if n := d.countLog(`event=start_failed`); n != 0 {
		t.Errorf("%d start_failed lines, want 0: clients must wait for descriptors, not be dropped", n)
	}
	t.Logf("limit %d: %d handlers held, %d clients waited; %d descriptors_exhausted lines",
		limit, held, waiting, d.countLog(`event=descriptors_exhausted`))
}

// TestDaemonizedHandlersReleaseStderr runs handlers that leave a daemon
// behind (a session of its own) holding the stderr pipe. Once their
// exits are logged, superd's descriptors are back where they were: the
// pipes were drained and closed (stderr_cut), not held for as long as
// the daemons live.
func TestDaemonizedHandlersReleaseStderr(t *testing.T) {
	ports := []int{testkit.FreePort(t, "tcp"), testkit.FreePort(t, "tcp")}
	d := startDaemon(t, fmt.Sprintf(`
[services.warm]
port = %d
address = "127.0.0.1"
user = "root"
path = "/bin/sh"
args = ["-c", "echo warm >&2; echo hi"]

[services.daemonize]
port = %d
address = "127.0.0.1"
user = "root"
path = "/bin/sh"
args = ["-c", "(setsid sh -c 'echo $$ > %%DIR%%/daemon.$$; exec sleep 30' </dev/null >/dev/null &); echo hi"]
`, ports[0], ports[1]))
	t.Cleanup(func() {
		files, _ := filepath.Glob(filepath.Join(d.dir, "daemon.*"))
		for _, f := range files {
			if pid, err := strconv.Atoi(strings.TrimPrefix(filepath.Ext(f), ".")); err == nil {
				syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	})
	// Whatever superd opens once and keeps is open after a first handler.
	if got := roundTrip(t, ports[0], ""); got != "hi\n" {
		t.Fatalf("warm-up handler said %q", got)
	}
	d.waitLog(`service=warm event=exit .*status=0`)
	base := d.fdCount()

	const n = 20
	for i := range n {
		if got := roundTrip(t, ports[1], ""); got != "hi\n" {
			t.Fatalf("handler %d said %q, want hi", i, got)
		}
	}
	testkit.WaitFor(t, "every exit logged", func() bool {
		return d.countLog(`service=daemonize event=exit .*status=0`) == n
	})
	files, _ := filepath.Glob(filepath.Join(d.dir, "daemon.*"))
	if len(files) != n {
		t.Fatalf("%d daemons wrote their pid, want %d: the test did not set up what it meant to", len(files), n)
	}
	// Polled: nothing announces the closes after the exit lines (the
	// pidfds go with the reaps).
	testkit.WaitFor(t, fmt.Sprintf("superd's descriptors back at its %d from before %d daemonizing handlers", base, n), func() bool {
		return d.fdCount() <= base
	})
	if got := d.countLog(`service=daemonize event=stderr_cut pid=\d+ bytes=0`); got != n {
		t.Errorf("%d stderr_cut lines, want %d", got, n)
	}
	t.Logf("superd descriptors: %d before, %d after %d daemonizing handlers", base, d.fdCount(), n)
}
