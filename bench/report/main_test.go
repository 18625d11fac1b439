package main

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden from the current output")

// TestGolden checks the tables printed for a fixed set of results,
// including an even number of rounds (median of two), a target missing
// at one concurrency, a run with errors and a listed target with no rows.
func TestGolden(t *testing.T) {
	var stdout, stderr bytes.Buffer
	code := run([]string{
		"-targets", "cfloor busybox superd",
		"-ratios", "superd/cfloor superd/busybox inproc/cfloor",
		filepath.Join("testdata", "results.txt"),
	}, &stdout, &stderr)
	if code != 0 {
		t.Fatalf("exit %d, stderr %q", code, stderr.String())
	}
	golden := filepath.Join("testdata", "report.golden")
	if *update {
		if err := os.WriteFile(golden, stdout.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if got := stdout.String(); got != string(want) {
		t.Errorf("report printed:\n%s\nwant (%s; go test -update rewrites it):\n%s", got, golden, want)
	}
}

func TestRefusesBrokenInput(t *testing.T) {
	for name, in := range map[string]string{
		"unknown kind":  "hello name=x c=1\n",
		"no name":       "result c=1 conns=1 errors=0 rate=1 p50_us=1 p99_us=1\n",
		"no rate":       "result name=x c=1 conns=1 errors=0 p50_us=1 p99_us=1\n",
		"not a number":  "result name=x c=one conns=1 errors=0 rate=1 p50_us=1 p99_us=1\n",
		"fraction":      "result name=x c=1.5 conns=1 errors=0 rate=1 p50_us=1 p99_us=1\n",
		"bare word":     "result name=x c=1 conns=1 errors=0 rate=1 p50_us=1 p99_us=1 junk\n",
		"bad syscalls":  "syscalls name=x conns=1\n",
		"negative conn": "result name=x c=1 conns=-1 errors=0 rate=1 p50_us=1 p99_us=1\n",
	} {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "results.txt")
			if err := os.WriteFile(path, []byte(in), 0o644); err != nil {
				t.Fatal(err)
			}
			var stdout, stderr bytes.Buffer
			if code := run([]string{path}, &stdout, &stderr); code != 1 {
				t.Errorf("exit %d (stdout %q), want 1", code, stdout.String())
			}
			if !strings.Contains(stderr.String(), "line 1") {
				t.Errorf("stderr %q does not name the line", stderr.String())
			}
		})
	}
}

func TestRefusesBadRatios(t *testing.T) {
	var stdout, stderr bytes.Buffer
	path := filepath.Join("testdata", "results.txt")
	if code := run([]string{"-ratios", "superd", path}, &stdout, &stderr); code != 2 {
		t.Errorf("exit %d, want 2", code)
	}
}
