package services

import (
	"errors"
	"net/netip"
	"os"
	"os/exec"
	"reflect"
	"slices"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/superd/superd/config"
)

func TestPeerEnv(t *testing.T) {
	ap := netip.MustParseAddrPort
	tests := []struct {
		name   string
		p      peer
		want   []string
		remote string
	}{
		{
			name: "tcp4",
			p:    peer{proto: "TCP", local: ap("127.0.0.1:79"), remote: ap("127.0.0.2:5555")},
			want: []string{"PROTO=TCP", "TCPLOCALIP=127.0.0.1", "TCPLOCALPORT=79",
				"TCPREMOTEIP=127.0.0.2", "TCPREMOTEPORT=5555", "REMOTE_ADDR=127.0.0.2", "REMOTE_PORT=5555"},
			remote: "127.0.0.2:5555",
		},
		{
			name: "tcp6",
			p:    peer{proto: "TCP", local: ap("[::1]:8080"), remote: ap("[2001:db8::7]:40000")},
			want: []string{"PROTO=TCP", "TCPLOCALIP=::1", "TCPLOCALPORT=8080",
				"TCPREMOTEIP=2001:db8::7", "TCPREMOTEPORT=40000", "REMOTE_ADDR=2001:db8::7", "REMOTE_PORT=40000"},
			remote: "[2001:db8::7]:40000",
		},
		{
			name:   "unix with credentials",
			p:      peer{proto: "UNIX", cred: &unix.Ucred{Pid: 42, Uid: 1000, Gid: 100}},
			want:   []string{"PROTO=UNIX", "UNIXREMOTEEUID=1000", "UNIXREMOTEEGID=100", "UNIXREMOTEPID=42"},
			remote: "pid:42",
		},
		{
			name:   "unix without credentials",
			p:      peer{proto: "UNIX"},
			want:   []string{"PROTO=UNIX"},
			remote: "unix",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.p.env(); !slices.Equal(got, tt.want) {
				t.Errorf("env() = %q, want %q", got, tt.want)
			}
			if got := tt.p.String(); got != tt.remote {
				t.Errorf("String() = %q, want %q", got, tt.remote)
			}
		})
	}
}

func TestAddrPort(t *testing.T) {
	v6 := func(s string) [16]byte { return netip.MustParseAddr(s).As16() }
	tests := []struct {
		name string
		sa   syscall.Sockaddr
		want string
		ok   bool
	}{
		{"ipv4", &syscall.SockaddrInet4{Port: 79, Addr: [4]byte{192, 0, 2, 1}}, "192.0.2.1:79", true},
		{"ipv6", &syscall.SockaddrInet6{Port: 443, Addr: v6("2001:db8::1")}, "[2001:db8::1]:443", true},
		{"ipv6 loopback", &syscall.SockaddrInet6{Port: 1, Addr: v6("::1")}, "[::1]:1", true},
		{"ipv4-mapped becomes ipv4", &syscall.SockaddrInet6{Port: 22, Addr: v6("::ffff:192.0.2.1")}, "192.0.2.1:22", true},
		{"ipv4-mapped drops a zone", &syscall.SockaddrInet6{Port: 22, Addr: v6("::ffff:192.0.2.1"), ZoneId: 3}, "192.0.2.1:22", true},
		{"link-local keeps its zone", &syscall.SockaddrInet6{Port: 22, Addr: v6("fe80::1"), ZoneId: 2}, "[fe80::1%2]:22", true},
		{"unix", &syscall.SockaddrUnix{Name: "/run/x.sock"}, "invalid AddrPort", false},
		{"nil", nil, "invalid AddrPort", false},
	}
	for _, tt := range tests {
		got, ok := addrPort(tt.sa)
		if got.String() != tt.want || ok != tt.ok {
			t.Errorf("%s: addrPort = %s, %v; want %s, %v", tt.name, got, ok, tt.want, tt.ok)
		}
	}
}

func TestProtoOf(t *testing.T) {
	for network, want := range map[string]string{
		"tcp": "TCP", "tcp4": "TCP", "tcp6": "TCP",
		"udp": "UDP", "udp4": "UDP", "udp6": "UDP",
		"unix": "UNIX", "unixgram": "UNIX",
	} {
		if got := protoOf(network); got != want {
			t.Errorf("protoOf(%q) = %q, want %q", network, got, want)
		}
	}
}

func TestModeOf(t *testing.T) {
	tcp := config.ListenKey{Network: "tcp", Address: ":7"}
	udp := config.ListenKey{Network: "udp", Address: ":7"}
	tests := []struct {
		svc  config.Service
		want Mode
	}{
		{config.Service{Listen: tcp}, ModeNowait},
		{config.Service{Listen: tcp, Wait: true}, ModeWait},
		{config.Service{Listen: udp, Wait: true}, ModeWait},
		{config.Service{Listen: tcp, Builtin: "echo"}, ModeBuiltinStream},
		{config.Service{Listen: config.ListenKey{Network: "unix", Address: "/x"}, Builtin: "echo"}, ModeBuiltinStream},
		{config.Service{Listen: udp, Builtin: "echo"}, ModeBuiltinPacket},
	}
	for _, tt := range tests {
		if got := ModeOf(&tt.svc); got != tt.want {
			t.Errorf("ModeOf(%s wait=%v builtin=%q) = %d, want %d", tt.svc.Listen, tt.svc.Wait, tt.svc.Builtin, got, tt.want)
		}
	}
}

func TestNeedsConfine(t *testing.T) {
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
		if got := needsConfine(&tt.e); got != tt.want {
			t.Errorf("%s: needsConfine = %v, want %v", tt.name, got, tt.want)
		}
	}
}

// TestConfineRoundTrip encodes Exec values with confineArgs and parses
// them back with parseConfine.
func TestConfineRoundTrip(t *testing.T) {
	nolimits := map[int]uint64{}
	tests := []struct {
		name     string
		e        config.Exec
		wantArgs []string
		want     confinement
	}{
		{
			name:     "umask",
			e:        config.Exec{Path: "/bin/true", Argv: []string{"true"}, Umask: 0o027},
			wantArgs: []string{"superd", "__confine", "umask=23", "--", "/bin/true", "true"},
			want:     confinement{umask: 0o027, setUmask: true, rlimits: nolimits, path: "/bin/true", argv: []string{"true"}},
		},
		{
			name:     "umask 0",
			e:        config.Exec{Path: "/bin/true", Argv: []string{"true"}, Umask: 0},
			wantArgs: []string{"superd", "__confine", "umask=0", "--", "/bin/true", "true"},
			want:     confinement{setUmask: true, rlimits: nolimits, path: "/bin/true", argv: []string{"true"}},
		},
		{
			name:     "negative nice",
			e:        config.Exec{Path: "/bin/x", Argv: []string{"x", "-a", "--", "b c"}, Umask: -1, Nice: -5, SetNice: true},
			wantArgs: []string{"superd", "__confine", "nice=-5", "--", "/bin/x", "x", "-a", "--", "b c"},
			want:     confinement{nice: -5, setNice: true, rlimits: nolimits, path: "/bin/x", argv: []string{"x", "-a", "--", "b c"}},
		},
		{
			name: "rlimits",
			e: config.Exec{Path: "/bin/x", Argv: []string{"x"}, Umask: -1, Rlimits: []config.Rlimit{
				{Name: "nofile", Resource: unix.RLIMIT_NOFILE, Value: 1024},
				{Name: "as", Resource: unix.RLIMIT_AS, Value: config.RlimInfinity},
			}},
			wantArgs: []string{"superd", "__confine", "rlimit=7:1024", "rlimit=9:18446744073709551615", "--", "/bin/x", "x"},
			want: confinement{rlimits: map[int]uint64{unix.RLIMIT_NOFILE: 1024, unix.RLIMIT_AS: config.RlimInfinity},
				path: "/bin/x", argv: []string{"x"}},
		},
		{
			name: "user with groups",
			e: config.Exec{Path: "/bin/x", Argv: []string{"x"}, Umask: 0o022,
				Cred: config.Cred{Set: true, Uid: 65534, Gid: 65533, Groups: []uint32{65533, 100}}},
			wantArgs: []string{"superd", "__confine", "umask=18", "uid=65534", "gid=65533", "groups=65533,100", "--", "/bin/x", "x"},
			want: confinement{umask: 0o022, setUmask: true, rlimits: nolimits, setCred: true,
				uid: 65534, gid: 65533, groups: []int{65533, 100}, path: "/bin/x", argv: []string{"x"}},
		},
		{
			name:     "user without supplementary groups",
			e:        config.Exec{Path: "/bin/x", Argv: []string{"x"}, Umask: -1, SetNice: true, Cred: config.Cred{Set: true, Uid: 1, Gid: 2}},
			wantArgs: []string{"superd", "__confine", "nice=0", "uid=1", "gid=2", "groups=", "--", "/bin/x", "x"},
			want: confinement{setNice: true, rlimits: nolimits, setCred: true, uid: 1, gid: 2, groups: []int{},
				path: "/bin/x", argv: []string{"x"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := confineArgs("superd", &tt.e)
			if !slices.Equal(args, tt.wantArgs) {
				t.Fatalf("confineArgs = %q, want %q", args, tt.wantArgs)
			}
			c, err := parseConfine(args[2:])
			if err != nil {
				t.Fatalf("parseConfine(%q): %v", args[2:], err)
			}
			if !reflect.DeepEqual(*c, tt.want) {
				t.Errorf("parseConfine = %+v, want %+v", *c, tt.want)
			}
		})
	}
}

func TestParseConfineErrors(t *testing.T) {
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
		{append([]string{"umask"}, tail...), `bad argument "umask"`},
		{append([]string{"umask=0o22"}, tail...), `bad argument "umask=0o22"`},
		{append([]string{"nice=ten"}, tail...), `bad argument "nice=ten"`},
		{append([]string{"rlimit=7"}, tail...), `bad argument "rlimit=7"`},
		{append([]string{"rlimit=x:1"}, tail...), `bad argument "rlimit=x:1"`},
		{append([]string{"rlimit=7:-1"}, tail...), `bad argument "rlimit=7:-1"`},
		{append([]string{"uid=root"}, tail...), `bad argument "uid=root"`},
		{append([]string{"uid=0", "gid=x"}, tail...), `bad argument "gid=x"`},
		{append([]string{"uid=0", "gid=0", "groups=1,,2"}, tail...), `bad argument "groups=1,,2"`},
	}
	for _, tt := range tests {
		c, err := parseConfine(tt.args)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("parseConfine(%q) = %+v, %v; want an error containing %q", tt.args, c, err, tt.want)
		}
	}
	if err := Confine([]string{"--"}); err == nil || !strings.HasPrefix(err.Error(), "superd confine: ") {
		t.Errorf("Confine with bad arguments = %v, want an error starting with %q", err, "superd confine: ")
	}
}

// TestNewSpec checks what newSpec works out once per configuration: the
// command, the fixed environment (PATH first), the user's env after it,
// and who switches users.
func TestNewSpec(t *testing.T) {
	t.Setenv("SUPERD_TEST_PASSED", "passed value")
	os.Unsetenv("SUPERD_TEST_UNSET")
	const selfPath = "/usr/sbin/superd"
	cred := config.Cred{Set: true, User: "nobody", Uid: 65534, Gid: 65534, Groups: []uint32{65534}, Home: "/nonexistent", Shell: "/usr/sbin/nologin"}
	base := func() config.Exec {
		return config.Exec{Path: "/usr/bin/env", Argv: []string{"env", "-0"}, Dir: "/tmp", Stderr: "log", Umask: -1}
	}
	credEnv := []string{"HOME=/nonexistent", "USER=nobody", "LOGNAME=nobody", "SHELL=/usr/sbin/nologin"}
	fixed := []string{"PATH=" + defaultPath, "SUPERD_SERVICE=svc"}
	tests := []struct {
		name     string
		euid     int
		exec     func(e *config.Exec)
		path     string
		argv     []string
		env      []string
		userEnv  []string
		wantCred *syscall.Credential
	}{
		{
			name: "plain", euid: 0, exec: func(*config.Exec) {},
			path: "/usr/bin/env", argv: []string{"env", "-0"}, env: fixed,
		},
		{
			name: "user switch as root", euid: 0, exec: func(e *config.Exec) { e.Cred = cred },
			path: "/usr/bin/env", argv: []string{"env", "-0"}, env: append(slices.Clone(fixed), credEnv...),
			wantCred: &syscall.Credential{Uid: 65534, Gid: 65534, Groups: []uint32{65534}},
		},
		{
			name: "no user switch when not root", euid: 1000, exec: func(e *config.Exec) { e.Cred = cred },
			path: "/usr/bin/env", argv: []string{"env", "-0"}, env: append(slices.Clone(fixed), credEnv...),
		},
		{
			name: "trampoline switches users itself", euid: 0, exec: func(e *config.Exec) { e.Cred = cred; e.Umask = 0o022 },
			path: trampolinePath,
			argv: []string{"superd", "__confine", "umask=18", "uid=65534", "gid=65534", "groups=65534", "--", "/usr/bin/env", "env", "-0"},
			env:  append(slices.Clone(fixed), credEnv...),
		},
		{
			name: "trampoline without user switch when not root", euid: 1000,
			exec: func(e *config.Exec) {
				e.Cred = cred
				e.SetNice, e.Nice = true, 3
				e.Rlimits = []config.Rlimit{{Name: "core", Resource: unix.RLIMIT_CORE, Value: 0}}
			},
			path: trampolinePath,
			argv: []string{"superd", "__confine", "nice=3", "rlimit=4:0", "--", "/usr/bin/env", "env", "-0"},
			env:  append(slices.Clone(fixed), credEnv...),
		},
		{
			name: "pass_env then env", euid: 0,
			exec: func(e *config.Exec) {
				e.PassEnv = []string{"SUPERD_TEST_UNSET", "SUPERD_TEST_PASSED"}
				e.Env = []string{"PATH=/opt/bin", "Z=last"}
			},
			path: "/usr/bin/env", argv: []string{"env", "-0"}, env: fixed,
			userEnv: []string{"SUPERD_TEST_PASSED=passed value", "PATH=/opt/bin", "Z=last"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			svc := &config.Service{Name: "svc", Exec: base()}
			tt.exec(&svc.Exec)
			before := svc.Exec.Cred
			sp := newSpec(svc, &Runtime{Self: selfPath, Euid: tt.euid})
			if sp.svc != svc {
				t.Errorf("spec.svc = %p, want the config %p", sp.svc, svc)
			}
			if sp.path != tt.path || !slices.Equal(sp.argv, tt.argv) {
				t.Errorf("command = %s %q, want %s %q", sp.path, sp.argv, tt.path, tt.argv)
			}
			if !slices.Equal(sp.env, tt.env) {
				t.Errorf("env = %q, want %q", sp.env, tt.env)
			}
			if !slices.Equal(sp.userEnv, tt.userEnv) {
				t.Errorf("userEnv = %q, want %q", sp.userEnv, tt.userEnv)
			}
			if sp.attr == nil || !sp.attr.Setsid {
				t.Fatalf("SysProcAttr = %+v, want Setsid", sp.attr)
			}
			if !reflect.DeepEqual(sp.attr.Credential, tt.wantCred) {
				t.Errorf("Credential = %+v, want %+v", sp.attr.Credential, tt.wantCred)
			}
			if !reflect.DeepEqual(svc.Exec.Cred, before) {
				t.Errorf("newSpec changed the config's Cred to %+v, want %+v", svc.Exec.Cred, before)
			}
		})
	}

	t.Run("builtin", func(t *testing.T) {
		svc := &config.Service{Name: "echo", Builtin: "echo"}
		sp := newSpec(svc, &Runtime{Self: selfPath})
		if sp.svc != svc || sp.path != "" || sp.env != nil || sp.attr != nil {
			t.Errorf("builtin spec = %+v, want only svc set", sp)
		}
	})
}

// TestSpecCommand checks one start's exec.Cmd: fixed env, then the
// connection's, then the user's (so that the user's wins in os/exec),
// the socket as stdin and stdout, and stderr per the stderr key.
func TestSpecCommand(t *testing.T) {
	f, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, stderr := range []string{"log", "", "socket", "null"} {
		t.Run("stderr="+stderr, func(t *testing.T) {
			svc := &config.Service{Name: "svc", Exec: config.Exec{
				Path: "/bin/cat", Argv: []string{"cat"}, Dir: "/tmp", Stderr: stderr, Umask: -1,
				Env: []string{"PATH=/opt/bin"},
			}}
			sp := newSpec(svc, &Runtime{})
			cmd := sp.command(f, []string{"PROTO=TCP", "TCPREMOTEIP=127.0.0.1"})
			wantEnv := []string{"PATH=" + defaultPath, "SUPERD_SERVICE=svc", "PROTO=TCP", "TCPREMOTEIP=127.0.0.1", "PATH=/opt/bin"}
			if !slices.Equal(cmd.Env, wantEnv) {
				t.Errorf("Env = %q, want %q", cmd.Env, wantEnv)
			}
			if cmd.Path != "/bin/cat" || !slices.Equal(cmd.Args, []string{"cat"}) || cmd.Dir != "/tmp" {
				t.Errorf("Path, Args, Dir = %s %q %s, want /bin/cat [cat] /tmp", cmd.Path, cmd.Args, cmd.Dir)
			}
			if cmd.Stdin != f || cmd.Stdout != f {
				t.Errorf("Stdin, Stdout = %v, %v; want the connection file for both", cmd.Stdin, cmd.Stdout)
			}
			if wantSocket := stderr == "socket"; (cmd.Stderr == f) != wantSocket || (!wantSocket && cmd.Stderr != nil) {
				t.Errorf("Stderr = %v with stderr=%q", cmd.Stderr, stderr)
			}
			if cmd.SysProcAttr != sp.attr {
				t.Errorf("SysProcAttr = %p, want the spec's %p", cmd.SysProcAttr, sp.attr)
			}
			if got, want := sp.request(f, nil, nil, "", nil).logStderr, stderr == "log" || stderr == ""; got != want {
				t.Errorf("logStderr = %v, want %v", got, want)
			}
			// Two commands do not share an Env backing array.
			cmd2 := sp.command(f, []string{"PROTO=UNIX"})
			if cmd.Env[2] != "PROTO=TCP" || cmd2.Env[2] != "PROTO=UNIX" {
				t.Errorf("Env of two commands: %q and %q", cmd.Env, cmd2.Env)
			}
		})
	}
}

// TestExitStatus runs real processes: an exit code, a signal, and a
// process that never started.
func TestExitStatus(t *testing.T) {
	run := func(script string) (*os.ProcessState, error) {
		cmd := exec.Command("/bin/sh", "-c", script)
		err := cmd.Run()
		return cmd.ProcessState, err
	}
	tests := []struct{ script, want string }{
		{"exit 0", "0"},
		{"exit 3", "3"},
		{"kill -TERM $$", "signal:SIGTERM"},
		{"kill -KILL $$", "signal:SIGKILL"},
	}
	for _, tt := range tests {
		ps, err := run(tt.script)
		if got := exitStatus(ps, err); got != tt.want {
			t.Errorf("exitStatus after %q = %q, want %q", tt.script, got, tt.want)
		}
	}
	err := errors.New("exec: not started")
	if got := exitStatus(nil, err); got != err.Error() {
		t.Errorf("exitStatus(nil, %v) = %q, want the error text", err, got)
	}
}
