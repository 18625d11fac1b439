package main

import (
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/superd/superd/config"
)

// TestConfigTextLoads checks that the generated configurations are what
// superd accepts, with every service of the mix and of each step's own
// kinds: a key superd renames or refuses would otherwise show only as a
// failed run.
func TestConfigTextLoads(t *testing.T) {
	svcs := mix(100, 20000)
	svcs = append(svcs,
		service{name: "wait", kind: kindWait, port: 20100},
		service{name: "udp-fast", kind: kindUDP, builtin: "echo", port: 20101, extra: []string{"rate = 1000000"}},
		service{name: "echo-many", kind: kindBuiltin, builtin: "echo", port: 20102, extra: []string{"instances = 10064", "backlog = 4096"}},
	)
	svcs[1].extra = []string{`args = ["-u"]`}
	dir := t.TempDir()
	handler := filepath.Join(dir, "handler")
	if err := os.WriteFile(handler, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "services.toml")
	if err := writeFileAtomic(path, configText(svcs, os.Geteuid(), handler)); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Options{Euid: os.Geteuid()}.Load(path)
	if err != nil {
		t.Fatalf("superd refuses the generated configuration: %v", err)
	}
	if got, want := len(cfg.Services), len(svcs); got != want {
		t.Errorf("got %d services, want %d", got, want)
	}
}

// TestMix checks the shares of the mix and the indexes the rate and
// reload steps rely on.
func TestMix(t *testing.T) {
	svcs := mix(1000, 20000)
	count := map[kind]int{}
	names := map[string]bool{}
	for i, s := range svcs {
		count[s.kind]++
		if names[s.name] {
			t.Fatalf("service name %q twice", s.name)
		}
		names[s.name] = true
		if s.port != 20000+i {
			t.Fatalf("service %d on port %d, want %d", i, s.port, 20000+i)
		}
	}
	if count[kindCat] != 700 || count[kindBuiltin] != 200 || count[kindUDP] != 100 {
		t.Errorf("got %d cat, %d built-in, %d udp; want 700, 200, 100", count[kindCat], count[kindBuiltin], count[kindUDP])
	}
	if svcs[0].kind != kindCat || svcs[7].builtin != "echo" {
		t.Errorf("got %v and %q first; want a cat at 0 and the echo built-in at 7", svcs[0].kind, svcs[7].builtin)
	}
}

// TestSourcesAreLoopbackAndDistinct checks a long run of source
// addresses: all in 127.0.0.0/8, none of them 127.0.0.1 (the services'
// own address) or a broadcast-like .0/.255 last byte, none repeated
// before the cycle ends.
func TestSourcesAreLoopbackAndDistinct(t *testing.T) {
	var s sources
	seen := map[netip.Addr]bool{}
	for range 200_000 {
		a := s.next()
		b := a.As4()
		if b[0] != 127 || b[1] == 0 || b[1] == 255 || b[3] == 0 || b[3] == 255 {
			t.Fatalf("got source %v", a)
		}
		if seen[a] {
			t.Fatalf("source %v repeated after %d addresses", a, len(seen))
		}
		seen[a] = true
	}
}

// TestLogField is the truth table of logField on superd's log lines.
func TestLogField(t *testing.T) {
	line := "time=2026-12-01T11:50:38.413Z level=INFO event=reloaded services=3 pending=0 added=- removed=- changed=cat-0001"
	for key, want := range map[string]string{
		"event": "reloaded", "pending": "0", "changed": "cat-0001", "added": "-", "missing": "", "servic": "",
	} {
		if got := logField(line, key); got != want {
			t.Errorf("logField(%q) = %q, want %q", key, got, want)
		}
	}
}

// TestMedian covers odd, even and empty inputs, and that the input is
// left unsorted.
func TestMedian(t *testing.T) {
	in := []float64{3, 1, 2}
	if got := median(in); got != 2 {
		t.Errorf("median(3,1,2) = %v, want 2", got)
	}
	if in[0] != 3 {
		t.Errorf("median sorted its input: %v", in)
	}
	if got := median([]float64{4, 1, 3, 2}); got != 2.5 {
		t.Errorf("median(4,1,3,2) = %v, want 2.5", got)
	}
	if got := median(nil); got != 0 {
		t.Errorf("median() = %v, want 0", got)
	}
}

// TestParsePorts accepts FIRST-END ranges and refuses the rest.
func TestParsePorts(t *testing.T) {
	for in, ok := range map[string]bool{
		"20000-32000": true, "1024-1025": true, "1023-2000": false, "3000-3000": false,
		"2000": false, "a-b": false, "20000-70000": false,
	} {
		_, err := parsePorts(in)
		if (err == nil) != ok {
			t.Errorf("parsePorts(%q): got error %v, want ok=%v", in, err, ok)
		}
	}
}

// TestSampleProc reads this test process: it has memory, a thread and
// descriptors.
func TestSampleProc(t *testing.T) {
	u, err := sampleProc(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if u.rssKB <= 0 || u.threads < 1 || u.fds < 3 || u.ticks < 0 || u.switches < 0 {
		t.Errorf("implausible sample of this process: %+v", u)
	}
	if _, err := sampleProc(-1); err == nil || !strings.Contains(err.Error(), "pid -1") {
		t.Errorf("sampleProc(-1): got %v, want an error naming pid -1", err)
	}
}
