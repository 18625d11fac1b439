package main

import (
	"bytes"
	"errors"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// superdCmd runs the built binary with args and returns its output and
// exit status.
func superdCmd(t *testing.T, args ...string) (stdout, stderr string, status int) {
	t.Helper()
	cmd := exec.Command(bin.superd, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		status = ee.ExitCode()
	case err != nil:
		t.Fatal(err)
	}
	return out.String(), errb.String(), status
}

// golden compares got with testdata/NAME, or rewrites it with -update.
func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("output differs from %s (go test -update rewrites it):\ngot:\n%s\nwant:\n%s", path, got, want)
	}
}

func TestCLI(t *testing.T) {
	tests := []struct {
		args       []string
		status     int
		wantOut    string // substring of stdout
		wantStderr string // substring of stderr
	}{
		{[]string{"version"}, 0, "superd " + version, ""},
		{[]string{"--help"}, 0, "superd run [--config PATH]", ""},
		{[]string{"run", "--help"}, 0, "", "-config file"},
		{[]string{"check", "--help"}, 0, "", "-config file"},
		{[]string{}, 2, "", "Usage:"},
		{[]string{"frobnicate"}, 2, "", `unknown command "frobnicate"`},
		{[]string{"run", "--log", "jounral", "--config", "/nonexistent"}, 2, "", `--log must be syslog, stderr or journal, not "jounral"`},
		{[]string{"check", "--config", "/nonexistent/services.toml"}, 1, "", "/nonexistent/services.toml"},
		{[]string{"run", "--config", "/nonexistent/services.toml"}, 1, "", "/nonexistent/services.toml"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			out, errOut, status := superdCmd(t, tt.args...)
			if status != tt.status {
				t.Errorf("exit status %d, want %d\nstdout: %s\nstderr: %s", status, tt.status, out, errOut)
			}
			if !strings.Contains(out, tt.wantOut) {
				t.Errorf("stdout %q, want it to contain %q", out, tt.wantOut)
			}
			if !strings.Contains(errOut, tt.wantStderr) {
				t.Errorf("stderr %q, want it to contain %q", errOut, tt.wantStderr)
			}
		})
	}
}

func TestCheckValidGolden(t *testing.T) {
	requireRoot(t)
	out, errOut, status := superdCmd(t, "check", "--config", "testdata/check/valid.toml")
	if status != 0 {
		t.Fatalf("check exit %d: %s", status, errOut)
	}
	golden(t, "check/valid.out", out)
}

func TestCheckReportsEveryError(t *testing.T) {
	requireRoot(t)
	out, errOut, status := superdCmd(t, "check", "--config", "testdata/check/broken.toml")
	if status != 1 || out != "" {
		t.Fatalf("check exit %d, stdout %q; want 1 and nothing", status, out)
	}
	golden(t, "check/broken.out", errOut)
}

// TestCheckWarnsNoServices checks that a valid configuration without
// services passes but says that superd would listen on nothing: a
// truncated file should not close every service unnoticed.
func TestCheckWarnsNoServices(t *testing.T) {
	requireRoot(t)
	out, errOut, status := superdCmd(t, "check", "--config", "testdata/check/empty.toml")
	if status != 0 {
		t.Fatalf("check exit %d: %s", status, errOut)
	}
	golden(t, "check/empty.out", out)
}
