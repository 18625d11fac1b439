package main

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// The tests of this file run the real `superd check` on what used to
// pass it and then fail at every connection or bind (issue 8): script
// handlers whose #! interpreter cannot run, low ports for a superd that
// is not root, and socket_user and socket_group settings.

// checkDir returns a folder that nobody (uid 65534) can read, as every
// folder above it, for handlers run as nobody and for a check run as
// nobody.
func checkDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for _, d := range []string{filepath.Dir(dir), dir} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// putFile writes dir/name with exactly mode and returns its path.
func putFile(t *testing.T, dir, name, text string, mode os.FileMode) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(text), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil { // WriteFile's mode went through the umask
		t.Fatal(err)
	}
	return p
}

// checkOutput is what a user reads from `superd check`, with dir shown
// as DIR so that the golden files hold for every run. The table's
// columns are as wide as the longest path, which has the random name of
// the test's folder in it: runs of spaces become two.
func checkOutput(dir, stdout, stderr string, status int) string {
	var b strings.Builder
	b.WriteString("exit status " + strconv.Itoa(status) + "\n")
	if stdout != "" {
		b.WriteString("--- stdout\n" + stdout)
	}
	if stderr != "" {
		b.WriteString("--- stderr\n" + stderr)
	}
	return regexp.MustCompile(`  +`).ReplaceAllString(strings.ReplaceAll(b.String(), dir, "DIR"), "  ")
}

// serviceRunning writes a config with one tcp service on loopback that
// runs handler as nobody.
func serviceRunning(t *testing.T, dir, name, handler string) string {
	t.Helper()
	return putFile(t, dir, name+".toml",
		"[services.s]\nport = 7000\naddress = \"127.0.0.1\"\nuser = \"nobody\"\npath = \""+handler+"\"\n", 0o644)
}

func TestCheckScriptInterpreters(t *testing.T) {
	requireRoot(t)
	if _, err := os.Stat("/usr/bin/env"); err != nil {
		t.Skip("needs /usr/bin/env")
	}
	dir := checkDir(t)
	putFile(t, dir, "not-executable", "\x7fELF", 0o644)
	tests := []struct {
		name   string // also the golden file: testdata/check/NAME.out
		script string // %D is dir
		status int
	}{
		{"interpreter-missing", "#!/usr/bin/pythonX\nprint('hello')\n", 1},
		{"interpreter-not-executable", "#!%D/not-executable\n", 1},
		{"interpreter-works", "#!/bin/sh\necho hello\n", 0},
		{"env-program-missing", "#!/usr/bin/env nosuchprog\n", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := putFile(t, dir, tt.name+".sh", strings.ReplaceAll(tt.script, "%D", dir), 0o755)
			cfg := serviceRunning(t, dir, tt.name, h)
			out, errOut, status := superdCmd(t, "check", "--config", cfg)
			if status != tt.status {
				t.Errorf("exit status %d, want %d; stderr:\n%s", status, tt.status, errOut)
			}
			golden(t, "check/"+tt.name+".out", checkOutput(dir, out, errOut, status))
		})
	}
}

// TestCheckScriptInterpreterTruth runs the handlers the check judged, so
// that each verdict is the kernel's: the accepted one runs, the refused
// ones fail to start.
func TestCheckScriptInterpreterTruth(t *testing.T) {
	requireRoot(t)
	dir := checkDir(t)
	putFile(t, dir, "not-executable", "\x7fELF", 0o644)
	for _, tt := range []struct {
		script string
		errno  syscall.Errno // 0: runs
	}{
		{"#!/usr/bin/pythonX\n", syscall.ENOENT},
		{"#!" + filepath.Join(dir, "not-executable") + "\n", syscall.EACCES},
		{"#!/bin/sh\nexit 0\n", 0},
	} {
		h := putFile(t, dir, "h", tt.script, 0o755)
		cmd := exec.Command(h)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
		err := cmd.Run()
		if tt.errno == 0 && err != nil || tt.errno != 0 && !errors.Is(err, tt.errno) {
			t.Errorf("running %q as nobody: %v, want %v", tt.script, err, tt.errno)
		}
		_, _, status := superdCmd(t, "check", "--config", serviceRunning(t, dir, "truth", h))
		if got, want := status == 0, tt.errno == 0; got != want {
			t.Errorf("check of %q: exit status %d, but the kernel says runs=%v", tt.script, status, want)
		}
	}
}

// TestCheckAsNobody runs `superd check` as uid 65534, which has no
// capabilities: a port below net.ipv4.ip_unprivileged_port_start and a
// socket given to another user or group are refused, as the bind and
// the chown would be.
func TestCheckAsNobody(t *testing.T) {
	requireRoot(t)
	start := readPortStart(t)
	if start <= 80 {
		t.Skipf("net.ipv4.ip_unprivileged_port_start is %d: anyone may bind port 80 here", start)
	}
	dir := checkDir(t)
	cfg := putFile(t, dir, "services.toml", `[services.high]
port = 8080
address = "127.0.0.1"
path = "/bin/cat"

[services.low]
port = 80
address = "127.0.0.1"
path = "/bin/cat"

[services.sock-own-group]
protocol = "unix"
address = "`+dir+`/own.sock"
socket_user = 65534
socket_group = 65534
path = "/bin/cat"

[services.sock-other]
protocol = "unix"
address = "`+dir+`/other.sock"
socket_user = "root"
socket_group = "root"
path = "/bin/cat"
`, 0o644)
	cmd := exec.Command(bin.superd, "check", "--config", cfg)
	cmd.Dir = dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534, Groups: []uint32{}}}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		t.Fatalf("check as nobody: %v, want exit status 1; stderr:\n%s", err, stderr.String())
	}
	got := checkOutput(dir, stdout.String(), stderr.String(), ee.ExitCode())
	got = strings.ReplaceAll(got, "ip_unprivileged_port_start is "+strconv.Itoa(start)+")", "ip_unprivileged_port_start is START)")
	golden(t, "check/as-nobody.out", got)
}

// readPortStart reads net.ipv4.ip_unprivileged_port_start.
func readPortStart(t *testing.T) int {
	t.Helper()
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_unprivileged_port_start")
	if err != nil {
		return 1024 // before Linux 4.11: always 1024
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatalf("ip_unprivileged_port_start: %v", err)
	}
	return n
}

func TestCheckSocketOwnerErrors(t *testing.T) {
	requireRoot(t)
	_, errOut, status := superdCmd(t, "check", "--config", "testdata/check/socket-owner.toml")
	if status != 1 {
		t.Errorf("exit status %d, want 1", status)
	}
	golden(t, "check/socket-owner.out", errOut)
}
