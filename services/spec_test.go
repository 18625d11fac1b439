package services

import (
	"os"
	"reflect"
	"slices"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/superd/superd/config"
	"github.com/superd/superd/services/confine"
)

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
	fixed := []string{"PATH=" + config.DefaultPath, "SUPERD_SERVICE=svc"}
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
			path: confine.TrampolinePath,
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
			path: confine.TrampolinePath,
			argv: []string{"superd", "__confine", "nice=3", "rlimit=4:0", "--", "/usr/bin/env", "env", "-0"},
			env:  append(slices.Clone(fixed), credEnv...),
		},
		{
			name: "pass_env then env", euid: 0,
			exec: func(e *config.Exec) {
				e.PassEnv = []string{"SUPERD_TEST_UNSET", "SUPERD_TEST_PASSED"}
				e.Env = []string{"PATH=/opt/bin", "Z=last"}
			},
			// PATH leaves the fixed part: the handler gets the user's only.
			path: "/usr/bin/env", argv: []string{"env", "-0"}, env: []string{"SUPERD_SERVICE=svc"},
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

// TestSpecCommand checks one start's command: fixed env, then the
// connection's, then the user's, each key once (the user's replaces
// superd's, wherever it was), the socket as stdin and stdout, and stderr
// per the stderr key.
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
				Env: []string{"PATH=/opt/bin", "TCPLOCALHOST=here"},
			}}
			sp := newSpec(svc, &Runtime{})
			cmd := sp.command(f, []string{"PROTO=TCP", "TCPLOCALHOST=x", "TCPREMOTEIP=127.0.0.1"})
			wantEnv := []string{"SUPERD_SERVICE=svc", "PROTO=TCP", "TCPREMOTEIP=127.0.0.1", "PATH=/opt/bin", "TCPLOCALHOST=here"}
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
			if cmd.Sys != sp.attr {
				t.Errorf("Sys = %p, want the spec's %p", cmd.Sys, sp.attr)
			}
			if got, want := sp.request(f, nil, nil, "", nil).LogStderr, stderr == "log" || stderr == ""; got != want {
				t.Errorf("logStderr = %v, want %v", got, want)
			}
			// Two commands do not share an Env backing array.
			cmd2 := sp.command(f, []string{"PROTO=UNIX"})
			if cmd.Env[1] != "PROTO=TCP" || cmd2.Env[1] != "PROTO=UNIX" {
				t.Errorf("Env of two commands: %q and %q", cmd.Env, cmd2.Env)
			}
		})
	}
}
