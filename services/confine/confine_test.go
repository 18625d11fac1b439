package confine

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"reflect"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/superd/superd/config"
)

// TestMain lets the test binary act as the trampoline (argv[1] ==
// Command), as superd's main does, so Run is tested in a process of its
// own: it closes and execs.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == Command {
		Run(os.Args[2:])
		os.Exit(111)
	}
	os.Exit(m.Run())
}

func TestNeeded(t *testing.T) {
	tests := []struct {
		name string
		e    config.Exec
		want bool
	}{
		{"nothing", config.Exec{Umask: -1}, false},
		{"user only", config.Exec{Umask: -1, Cred: config.Cred{Set: true, Uid: 1}}, false},
		{"nice without SetNice", config.Exec{Umask: -1, Nice: 5}, false},
		{"umask 0 is a umask", config.Exec{Umask: 0}, true},
		{"umask 022", config.Exec{Umask: 0o022}, true},
		{"nice 0", config.Exec{Umask: -1, SetNice: true}, true},
		{"rlimits", config.Exec{Umask: -1, Rlimits: []config.Rlimit{{Name: "core", Resource: unix.RLIMIT_CORE}}}, true},
	}
	for _, tt := range tests {
		if got := Needed(&tt.e); got != tt.want {
			t.Errorf("%s: Needed = %v, want %v", tt.name, got, tt.want)
		}
	}
}

// TestArgs encodes Exec values with Args and parses them back.
func TestArgs(t *testing.T) {
	nolimits := map[int]uint64{}
	tests := []struct {
		name     string
		e        config.Exec
		wantArgs []string
		want     settings
	}{
		{
			name:     "umask",
			e:        config.Exec{Path: "/bin/true", Argv: []string{"true"}, Umask: 0o027},
			wantArgs: []string{"superd", "__confine", "umask=23", "--", "/bin/true", "true"},
			want:     settings{umask: 0o027, setUmask: true, rlimits: nolimits, path: "/bin/true", argv: []string{"true"}},
		},
		{
			name:     "umask 0",
			e:        config.Exec{Path: "/bin/true", Argv: []string{"true"}, Umask: 0},
			wantArgs: []string{"superd", "__confine", "umask=0", "--", "/bin/true", "true"},
			want:     settings{setUmask: true, rlimits: nolimits, path: "/bin/true", argv: []string{"true"}},
		},
		{
			name:     "negative nice",
			e:        config.Exec{Path: "/bin/x", Argv: []string{"x", "-a", "--", "b c"}, Umask: -1, Nice: -5, SetNice: true},
			wantArgs: []string{"superd", "__confine", "nice=-5", "--", "/bin/x", "x", "-a", "--", "b c"},
			want:     settings{nice: -5, setNice: true, rlimits: nolimits, path: "/bin/x", argv: []string{"x", "-a", "--", "b c"}},
		},
		{
			name: "rlimits",
			e: config.Exec{Path: "/bin/x", Argv: []string{"x"}, Umask: -1, Rlimits: []config.Rlimit{
				{Name: "nofile", Resource: unix.RLIMIT_NOFILE, Value: 1024},
				{Name: "as", Resource: unix.RLIMIT_AS, Value: config.RlimInfinity},
			}},
			wantArgs: []string{"superd", "__confine", "rlimit=7:1024", "rlimit=9:18446744073709551615", "--", "/bin/x", "x"},
			want: settings{rlimits: map[int]uint64{unix.RLIMIT_NOFILE: 1024, unix.RLIMIT_AS: config.RlimInfinity},
				path: "/bin/x", argv: []string{"x"}},
		},
		{
			name: "user with groups",
			e: config.Exec{Path: "/bin/x", Argv: []string{"x"}, Umask: 0o022,
				Cred: config.Cred{Set: true, Uid: 65534, Gid: 65533, Groups: []uint32{65533, 100}}},
			wantArgs: []string{"superd", "__confine", "umask=18", "uid=65534", "gid=65533", "groups=65533,100", "--", "/bin/x", "x"},
			want: settings{umask: 0o022, setUmask: true, rlimits: nolimits, setCred: true,
				uid: 65534, gid: 65533, groups: []int{65533, 100}, path: "/bin/x", argv: []string{"x"}},
		},
		{
			name:     "user without supplementary groups",
			e:        config.Exec{Path: "/bin/x", Argv: []string{"x"}, Umask: -1, SetNice: true, Cred: config.Cred{Set: true, Uid: 1, Gid: 2}},
			wantArgs: []string{"superd", "__confine", "nice=0", "uid=1", "gid=2", "groups=", "--", "/bin/x", "x"},
			want: settings{setNice: true, rlimits: nolimits, setCred: true, uid: 1, gid: 2, groups: []int{},
				path: "/bin/x", argv: []string{"x"}},
		},
		{
			name:     "largest ids",
			e:        config.Exec{Path: "/bin/x", Argv: []string{"x"}, Umask: -1, Cred: config.Cred{Set: true, Uid: 1<<32 - 1, Gid: 1<<32 - 1, Groups: []uint32{0, 1<<32 - 1}}},
			wantArgs: []string{"superd", "__confine", "uid=4294967295", "gid=4294967295", "groups=0,4294967295", "--", "/bin/x", "x"},
			want: settings{rlimits: nolimits, setCred: true, uid: 1<<32 - 1, gid: 1<<32 - 1, groups: []int{0, 1<<32 - 1},
				path: "/bin/x", argv: []string{"x"}},
		},
		{
			name: "handler arguments that look like options",
			e: config.Exec{Path: "--", Argv: []string{"uid=0", "--", "=", "", "umask=0", "rlimit=7:0"}, Umask: -1,
				Cred: config.Cred{Set: true, Uid: 65534, Gid: 65534}},
			wantArgs: []string{"superd", "__confine", "uid=65534", "gid=65534", "groups=", "--", "--", "uid=0", "--", "=", "", "umask=0", "rlimit=7:0"},
			want: settings{rlimits: nolimits, setCred: true, uid: 65534, gid: 65534, groups: []int{},
				path: "--", argv: []string{"uid=0", "--", "=", "", "umask=0", "rlimit=7:0"}},
		},
		{
			name:     "empty path and argv0",
			e:        config.Exec{Path: "", Argv: []string{""}, Umask: 0o077},
			wantArgs: []string{"superd", "__confine", "umask=63", "--", "", ""},
			want:     settings{umask: 0o077, setUmask: true, rlimits: nolimits, path: "", argv: []string{""}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := Args("superd", &tt.e)
			if !slices.Equal(args, tt.wantArgs) {
				t.Fatalf("Args = %q, want %q", args, tt.wantArgs)
			}
			s, err := parse(args[2:])
			if err != nil {
				t.Fatalf("parse(%q): %v", args[2:], err)
			}
			if !reflect.DeepEqual(*s, tt.want) {
				t.Errorf("parse = %+v, want %+v", *s, tt.want)
			}
		})
	}
	// config never yields an Exec without argv0; the trampoline refuses
	// one rather than exec a handler with an empty argv.
	args := Args("superd", &config.Exec{Path: "/bin/x", Umask: 0})
	if s, err := parse(args[2:]); err == nil {
		t.Errorf("parse(Args of an Exec without Argv) = %+v, want an error", s)
	}
}

func TestParseErrors(t *testing.T) {
	tail := []string{"--", "/bin/true", "true"}
	tests := []struct {
		args []string
		want string
	}{
		{nil, "missing --"},
		{[]string{"umask=18", "/bin/true", "true"}, "unknown option"},
		{[]string{"umask=18"}, "missing --"},
		{[]string{"--"}, "missing handler path or argv0"},
		{[]string{"umask=18", "--", "/bin/true"}, "missing handler path or argv0"},
		{append([]string{"bogus=1"}, tail...), `bad argument "bogus=1": unknown option`},
		{append([]string{""}, tail...), `bad argument "": unknown option`},
		{append([]string{"umask"}, tail...), `bad argument "umask"`},
		{append([]string{"umask=0o22"}, tail...), `bad argument "umask=0o22"`},
		{append([]string{"nice=ten"}, tail...), `bad argument "nice=ten"`},
		{append([]string{"rlimit=7"}, tail...), `bad argument "rlimit=7"`},
		{append([]string{"rlimit=x:1"}, tail...), `bad argument "rlimit=x:1"`},
		{append([]string{"rlimit=7:-1"}, tail...), `bad argument "rlimit=7:-1"`},
		{append([]string{"uid=root"}, tail...), `bad argument "uid=root"`},
		{append([]string{"uid=-1"}, tail...), `bad argument "uid=-1"`},
		{append([]string{"uid=4294967296"}, tail...), `bad argument "uid=4294967296"`},
		{append([]string{"uid=0", "gid=x"}, tail...), `bad argument "gid=x"`},
		{append([]string{"uid=0", "gid=-1"}, tail...), `bad argument "gid=-1"`},
		{append([]string{"uid=0", "gid=0", "groups=1,,2"}, tail...), `bad argument "groups=1,,2"`},
		{append([]string{"uid=0", "gid=0", "groups=1,-2"}, tail...), `bad argument "groups=1,-2"`},
	}
	for _, tt := range tests {
		s, err := parse(tt.args)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("parse(%q) = %+v, %v; want an error containing %q", tt.args, s, err, tt.want)
		}
	}
}

// wantSettings is what parse must give back for Args(argv0, e).
func wantSettings(e *config.Exec) settings {
	w := settings{rlimits: map[int]uint64{}, path: e.Path, argv: e.Argv}
	if e.Umask >= 0 {
		w.setUmask, w.umask = true, e.Umask
	}
	if e.SetNice {
		w.setNice, w.nice = true, e.Nice
	}
	for _, r := range e.Rlimits {
		w.rlimits[r.Resource] = r.Value // the last of a resource wins
	}
	if e.Cred.Set {
		w.setCred, w.uid, w.gid, w.groups = true, int(e.Cred.Uid), int(e.Cred.Gid), []int{}
		for _, g := range e.Cred.Groups {
			w.groups = append(w.groups, int(g))
		}
	}
	return w
}

// FuzzArgs checks the round trip: whatever Exec superd encodes, the
// trampoline decodes exactly its settings, and the handler's path and
// argv reach it untouched, however much they look like options or "--".
// rlimits holds 9 bytes per limit (a signed resource byte, then the
// value); groups 4 bytes per group; argv is split at NUL bytes.
func FuzzArgs(f *testing.F) {
	f.Add("superd", 0o022, 0, false, []byte{}, false, uint32(0), uint32(0), []byte{}, "/bin/true", "true")
	f.Add("", -1, -20, true, []byte{7, 0, 4, 0, 0, 0, 0, 0, 0, 9, 255, 255, 255, 255, 255, 255, 255, 255},
		true, uint32(65534), uint32(65533), []byte{0xfd, 0xff, 0, 0, 100, 0, 0, 0}, "--", "uid=0\x00--\x00=\x00\x00umask=0")
	f.Add("--", 0, 19, true, []byte{0xff, 1, 2, 3, 4, 5, 6, 7, 8}, true, uint32(0), uint32(1<<32-1), []byte{}, "", "")
	f.Add("uid=0", 1<<62, -(1 << 62), true, []byte{7, 1}, true, uint32(1), uint32(2), []byte{1, 2, 3}, "=", "--\x00--")
	f.Fuzz(func(t *testing.T, argv0 string, umask, nice int, setNice bool, rlimits []byte,
		setCred bool, uid, gid uint32, groups []byte, path, argv string) {
		e := &config.Exec{Path: path, Argv: strings.Split(argv, "\x00"), Umask: umask, Nice: nice, SetNice: setNice}
		for ; len(rlimits) >= 9; rlimits = rlimits[9:] {
			e.Rlimits = append(e.Rlimits, config.Rlimit{Resource: int(int8(rlimits[0])), Value: binary.LittleEndian.Uint64(rlimits[1:9])})
		}
		if setCred {
			e.Cred = config.Cred{Set: true, Uid: uid, Gid: gid}
			for ; len(groups) >= 4; groups = groups[4:] {
				e.Cred.Groups = append(e.Cred.Groups, binary.LittleEndian.Uint32(groups))
			}
		}
		args := Args(argv0, e)
		if len(args) < 2 || args[0] != argv0 || args[1] != Command {
			t.Fatalf("Args = %q, want %q and %q first", args, argv0, Command)
		}
		s, err := parse(args[2:])
		if err != nil {
			t.Fatalf("parse(Args(%+v) = %q): %v", e, args, err)
		}
		if want := wantSettings(e); !reflect.DeepEqual(*s, want) {
			t.Fatalf("parse(Args(%+v) = %q)\n = %+v\nwant %+v", e, args, *s, want)
		}
	})
}

// FuzzParse checks that parse never panics on any argument vector and
// that, when it accepts one, the handler is exactly what follows the
// first "--".
func FuzzParse(f *testing.F) {
	f.Add("umask=18\x00uid=65534\x00gid=1\x00groups=1,2\x00--\x00/bin/x\x00x")
	f.Add("rlimit=7:1024\x00nice=-5\x00--\x00--\x00--")
	f.Add("rlimit=:\x00--\x00a\x00b")
	f.Add("groups=,\x00=\x00\x00--")
	f.Add("uid=0\x00uid=-1\x00--\x00/bin/x\x00x")
	f.Fuzz(func(t *testing.T, joined string) {
		args := strings.Split(joined, "\x00")
		s, err := parse(args)
		if err != nil {
			if s != nil {
				t.Fatalf("parse(%q) = %+v with error %v, want nil", args, s, err)
			}
			return
		}
		i := slices.Index(args, "--")
		if i < 0 || s.path != args[i+1] || !slices.Equal(s.argv, args[i+2:]) || len(s.argv) == 0 {
			t.Fatalf("parse(%q) = path %q argv %q, want what follows the first --", args, s.path, s.argv)
		}
		if s.setCred && (s.uid < 0 || s.gid < 0 || s.groups == nil) {
			t.Fatalf("parse(%q) = %+v: bad credentials accepted", args, s)
		}
	})
}

func TestExtraFiles(t *testing.T) {
	report, exe := os.NewFile(^uintptr(0), "report"), os.NewFile(^uintptr(0), "exe")
	got := ExtraFiles(report, exe)
	// os/exec gives ExtraFiles[i] descriptor 3+i.
	if len(got) != 2 || got[ReportFD-3] != report || got[ExeFD-3] != exe {
		t.Errorf("ExtraFiles = %v, want report at fd %d and exe at fd %d", got, ReportFD, ExeFD)
	}
	if TrampolinePath != fmt.Sprintf("/proc/self/fd/%d", ExeFD) {
		t.Errorf("TrampolinePath = %q, want ExeFD's /proc/self/fd entry", TrampolinePath)
	}
}

// trampoline starts the test binary as the trampoline the way superd
// does: TrampolinePath with ExtraFiles, the report pipe's read end kept.
// It returns what the handler printed, the report, and Wait's error.
func trampoline(t *testing.T, args []string, withReport bool) (stdout, stderr, report string, err error) {
	t.Helper()
	exe, err := OpenExecutable()
	if err != nil {
		t.Fatal(err)
	}
	defer exe.Close()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var out, errOut bytes.Buffer
	cmd := &exec.Cmd{Path: TrampolinePath, Args: args, Stdout: &out, Stderr: &errOut}
	if withReport {
		cmd.ExtraFiles = ExtraFiles(w, exe)
	} else {
		cmd.ExtraFiles = []*os.File{nil, exe}
	}
	if err := cmd.Start(); err != nil {
		w.Close()
		t.Fatal(err)
	}
	w.Close()
	msg, rerr := io.ReadAll(r)
	if rerr != nil {
		t.Fatal(rerr)
	}
	err = cmd.Wait()
	return out.String(), errOut.String(), string(msg), err
}

// TestRunConfines runs a shell through the real trampoline and reads its
// umask, niceness and limit back; the report pipe ends with the exec,
// empty.
func TestRunConfines(t *testing.T) {
	e := &config.Exec{Path: "/bin/sh", Argv: []string{"sh", "-c", `umask; cut -d' ' -f19 /proc/self/stat; ulimit -n; id -u`},
		Umask: 0o027, Nice: 7, SetNice: true, Rlimits: []config.Rlimit{{Name: "nofile", Resource: unix.RLIMIT_NOFILE, Value: 100}}}
	wantUID := os.Geteuid()
	if wantUID == 0 {
		e.Cred = config.Cred{Set: true, Uid: 65534, Gid: 65534}
		wantUID = 65534
	}
	out, stderr, report, err := trampoline(t, Args("superd", e), true)
	if err != nil || report != "" {
		t.Fatalf("trampoline: %v, report %q, stderr %q", err, report, stderr)
	}
	if want := fmt.Sprintf("0027\n7\n100\n%d\n", wantUID); out != want {
		t.Errorf("confined handler said %q, want %q", out, want)
	}
}

// TestRunReportsFailure checks that a trampoline that cannot exec the
// handler reports why on ReportFD, or on stderr when superd gave it no
// report pipe, and exits.
func TestRunReportsFailure(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"bad arguments", []string{"superd", Command, "--"}, "superd confine: missing handler path or argv0"},
		{"no handler", []string{"superd", Command, "umask=18", "--", "/nonexistent/handler", "handler"}, "exec /nonexistent/handler: no such file or directory"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, stderr, report, err := trampoline(t, tt.args, true)
			if ee := (*exec.ExitError)(nil); !errors.As(err, &ee) || ee.ExitCode() != 111 {
				t.Errorf("trampoline exit = %v, want status 111", err)
			}
			if report != tt.want || stderr != "" {
				t.Errorf("report %q, stderr %q; want report %q and no stderr", report, stderr, tt.want)
			}
			_, stderr, report, _ = trampoline(t, tt.args, false)
			if report != "" || stderr != tt.want+"\n" {
				t.Errorf("without a report pipe: report %q, stderr %q; want stderr %q", report, stderr, tt.want+"\n")
			}
		})
	}
}
