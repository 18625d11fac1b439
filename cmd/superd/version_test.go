package main

import (
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"runtime/debug"
	"strings"
	"testing"
)

func TestBuildVersion(t *testing.T) {
	rev := "0123456789abcdef0123456789abcdef01234567"
	vcs := []debug.BuildSetting{{Key: "vcs", Value: "git"}, {Key: "vcs.revision", Value: rev}, {Key: "vcs.modified", Value: "false"}}
	dirty := []debug.BuildSetting{{Key: "vcs.revision", Value: rev}, {Key: "vcs.modified", Value: "true"}}
	info := func(v string, s []debug.BuildSetting) *debug.BuildInfo {
		bi := &debug.BuildInfo{Settings: s}
		bi.Main.Version = v
		return bi
	}
	tests := []struct {
		name                string
		ldVersion, ldCommit string
		info                *debug.BuildInfo
		wantVer, wantCommit string
	}{
		{"nothing known", "", "", nil, "unknown", "unknown"},
		{"devel, no vcs (-buildvcs=false)", "", "", info("(devel)", nil), "unknown", "unknown"},
		{"ldflags win", "0.2.0", "abc1234", info("v9.9.9", vcs), "0.2.0", "abc1234"},
		{"ldflags version only", "0.2.0", "", info("(devel)", vcs), "0.2.0", "0123456789ab"},
		{"ldflags commit only", "", "abc1234", info("v1.2.3", nil), "1.2.3", "abc1234"},
		{"go install @version", "", "", info("v1.2.3", nil), "1.2.3", "unknown"},
		{"vcs stamp", "", "", info("v0.0.0-20261201101010-0123456789ab", vcs), "0.0.0-20261201101010-0123456789ab", "0123456789ab"},
		{"modified work tree", "", "", info("(devel)", dirty), "unknown", "0123456789ab-dirty"},
		{"short revision kept whole", "", "", info("", []debug.BuildSetting{{Key: "vcs.revision", Value: "abc"}}), "unknown", "abc"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ver, commit := buildVersion(tt.ldVersion, tt.ldCommit, tt.info)
			if ver != tt.wantVer || commit != tt.wantCommit {
				t.Errorf("buildVersion(%q, %q, …) = %q, %q; want %q, %q", tt.ldVersion, tt.ldCommit, ver, commit, tt.wantVer, tt.wantCommit)
			}
		})
	}
}

// buildSuperd builds superd into a temporary folder with extra go build
// flags and returns `superd version`'s output.
func buildSuperd(t *testing.T, flags ...string) string {
	t.Helper()
	exe := filepath.Join(t.TempDir(), "superd")
	args := append(append([]string{"build"}, flags...), "-o", exe, ".")
	if out, err := exec.Command("go", args...).CombinedOutput(); err != nil {
		t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	out, err := exec.Command(exe, "version").Output()
	if err != nil {
		t.Fatalf("%s version: %v", exe, err)
	}
	return string(out)
}

// TestVersionLdflags checks the path make takes: -X main.version and
// main.commit, which must win over whatever the go command records.
func TestVersionLdflags(t *testing.T) {
	got := buildSuperd(t, "-buildvcs=false", "-ldflags", "-X main.version=0.1.0~git42.abc1234 -X main.commit=abc1234")
	want := "superd 0.1.0~git42.abc1234 (commit abc1234, " + runtime.Version() + ")\n"
	if got != want {
		t.Errorf("superd version printed %q, want %q", got, want)
	}
}

// TestVersionUnknown checks a build that knows nothing (no ldflags, no
// VCS data, as with GOFLAGS=-buildvcs=false) says so instead of claiming
// a release.
func TestVersionUnknown(t *testing.T) {
	got := buildSuperd(t, "-buildvcs=false")
	want := "superd unknown (commit unknown, " + runtime.Version() + ")\n"
	if got != want {
		t.Errorf("superd version printed %q, want %q", got, want)
	}
}

// TestVersionBuildInfo checks the fallback on the go command's VCS stamp
// when make's ldflags are absent; it needs a git checkout.
func TestVersionBuildInfo(t *testing.T) {
	head, err := exec.Command("git", "rev-parse", "HEAD").Output()
	if err != nil {
		t.Skipf("not a git checkout (%v): the go command records no revision", err)
	}
	got := buildSuperd(t, "-buildvcs=true")
	re := regexp.MustCompile(`^superd (\S+) \(commit ([0-9a-f]{12})(-dirty)?, ` + regexp.QuoteMeta(runtime.Version()) + `\)\n$`)
	m := re.FindStringSubmatch(got)
	if m == nil {
		t.Fatalf("superd version printed %q, want it to match %s", got, re)
	}
	if m[1] == unknown {
		t.Errorf("version %q: the go command stamps a (pseudo-)version from git", m[1])
	}
	if want := string(head[:12]); m[2] != want {
		t.Errorf("commit %q, want %q (git rev-parse HEAD)", m[2], want)
	}
}

// TestHelpGolden checks that run --help and check --help print a proper
// usage text (usage line, what the command does, flags with defaults, an
// example) and exit 0.
func TestHelpGolden(t *testing.T) {
	for _, cmd := range []string{"run", "check"} {
		t.Run(cmd, func(t *testing.T) {
			out, errOut, status := superdCmd(t, cmd, "--help")
			if status != 0 || out != "" {
				t.Fatalf("superd %s --help: exit %d, stdout %q; want 0 and the help on stderr", cmd, status, out)
			}
			golden(t, "help/"+cmd+".txt", errOut)
		})
	}
}

// TestHelpOnBadFlag checks that a wrong flag names itself, shows the
// usage and exits 2.
func TestHelpOnBadFlag(t *testing.T) {
	_, errOut, status := superdCmd(t, "check", "--colour")
	if status != 2 {
		t.Errorf("exit status %d, want 2", status)
	}
	for _, want := range []string{"flag provided but not defined: -colour", "Usage: superd check [--config file]"} {
		if !strings.Contains(errOut, want) {
			t.Errorf("stderr %q, want it to contain %q", errOut, want)
		}
	}
}
