package services

import (
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/superd/superd/config"
	"github.com/superd/superd/internal/metrics"
	"github.com/superd/superd/services/confine"
	"github.com/superd/superd/services/proc"
)

// Runtime is what every Listener shares: main builds it once.
type Runtime struct {
	// Procs is the process table that starts, reaps and logs every
	// handler; required. It outlives every Listener: the supervisor shuts
	// it down after it closed them all.
	Procs *proc.Table
	// Self is the path superd was started from. Its base name is the
	// confinement trampoline's argv[0] ("superd" when empty); it is never
	// executed, see Exe.
	Self string
	// Exe is the running superd binary, from confine.OpenExecutable, run
	// as the confinement trampoline for services with umask, nice or
	// limits. When nil, such services fail to start. Its opener closes it.
	Exe *os.File
	// Euid is superd's effective uid; handlers switch users only when it
	// is 0.
	Euid int
	// Metrics receives every service's counts; nil when metrics are off.
	Metrics *metrics.Registry
	// Gate, when not nil, holds every Listener's serve loop until it is
	// closed: the new process of an upgrade binds its sockets while the
	// old one still serves them, and takes clients only once it counts
	// the old one's. nil: serve at once.
	Gate <-chan struct{}
}

// spec is everything about a service that is worked out once per
// configuration rather than once per connection.
type spec struct {
	svc *config.Service

	path string
	argv []string
	// env is the part of the environment that is the same for every
	// connection, less the keys userEnv sets. Per-connection variables
	// go after it and userEnv last. The handler gets each key once, so a
	// key of userEnv (config's env and pass_env) replaces superd's own:
	// a C program's getenv would find the first of two.
	env      []string
	userEnv  []string
	userKey  map[string]bool // the keys of userEnv
	attr     *syscall.SysProcAttr
	confined bool     // path is the confinement trampoline
	exe      *os.File // the trampoline's binary; nil unless confined
}

func newSpec(svc *config.Service, rt *Runtime) *spec {
	sp := &spec{svc: svc}
	if svc.Builtin != "" {
		return sp
	}
	e := &svc.Exec
	switchUser := e.Cred.Set && rt.Euid == 0
	sp.attr = &syscall.SysProcAttr{Setsid: true}
	if confine.Needed(e) {
		// The trampoline switches users itself, after the limits.
		sp.path, sp.confined, sp.exe = confine.TrampolinePath, true, rt.Exe
		c := *e
		c.Cred.Set = switchUser
		argv0 := "superd"
		if rt.Self != "" {
			argv0 = filepath.Base(rt.Self)
		}
		sp.argv = confine.Args(argv0, &c)
	} else {
		sp.path, sp.argv = e.Path, e.Argv
		if switchUser {
			sp.attr.Credential = &syscall.Credential{Uid: e.Cred.Uid, Gid: e.Cred.Gid, Groups: e.Cred.Groups}
		}
	}
	sp.env = []string{"PATH=" + config.DefaultPath, "SUPERD_SERVICE=" + svc.Name}
	if e.Cred.User != "" {
		sp.env = append(sp.env, "HOME="+e.Cred.Home, "USER="+e.Cred.User,
			"LOGNAME="+e.Cred.User, "SHELL="+e.Cred.Shell)
	}
	for _, k := range e.PassEnv {
		if v, ok := os.LookupEnv(k); ok {
			sp.userEnv = append(sp.userEnv, k+"="+v)
		}
	}
	sp.userEnv = append(sp.userEnv, e.Env...)
	sp.userKey = make(map[string]bool, len(sp.userEnv))
	for _, kv := range sp.userEnv {
		sp.userKey[envKey(kv)] = true
	}
	sp.env = sp.withoutUserKeys(sp.env, sp.env[:0])
	return sp
}

// envKey is the name of a KEY=value entry.
func envKey(kv string) string {
	k, _, _ := strings.Cut(kv, "=")
	return k
}

// withoutUserKeys appends to dst the entries of env whose keys userEnv
// does not set, and returns it.
func (sp *spec) withoutUserKeys(env, dst []string) []string {
	for _, kv := range env {
		if len(sp.userKey) == 0 || !sp.userKey[envKey(kv)] {
			dst = append(dst, kv)
		}
	}
	return dst
}

// command builds the handler command for one start. stdio becomes fds 0
// and 1 (and 2 with stderr = "socket"); connEnv holds the per-connection
// variables.
func (sp *spec) command(stdio *os.File, connEnv []string) *proc.Command {
	env := make([]string, 0, len(sp.env)+len(connEnv)+len(sp.userEnv))
	env = append(sp.withoutUserKeys(connEnv, append(env, sp.env...)), sp.userEnv...)
	cmd := &proc.Command{
		Path:   sp.path,
		Args:   sp.argv,
		Env:    env,
		Dir:    sp.svc.Exec.Dir,
		Stdin:  stdio,
		Stdout: stdio,
		Sys:    sp.attr,
	}
	if sp.svc.Exec.Stderr == "socket" {
		cmd.Stderr = stdio
	}
	return cmd
}

// request builds the start of one handler; see command for stdio and
// connEnv. exited is the caller's: the process table calls it once the
// handler has been reaped (see proc.Request).
func (sp *spec) request(stdio *os.File, connEnv []string, log *slog.Logger, remote string, exited func(proc.Exit)) proc.Request {
	return proc.Request{
		Cmd:       sp.command(stdio, connEnv),
		Log:       log,
		Remote:    remote,
		LogStderr: sp.svc.Exec.Stderr == "log" || sp.svc.Exec.Stderr == "",
		Timeout:   sp.svc.Limits.Timeout,
		Confined:  sp.confined,
		Exe:       sp.exe,
		Exited:    exited,
	}
}

// outcomeOf is how the metrics file a handler's exit.
//
//	timeout struck                   → timeout (whatever the status)
//	killed by a signal               → signal
//	exit status 0                    → success
//	other exit status, wait failed   → failure
func outcomeOf(e proc.Exit) metrics.Outcome {
	switch {
	case e.TimedOut:
		return metrics.OutcomeTimeout
	case e.Err != nil:
		return metrics.OutcomeFailure
	case e.Status.Signaled():
		return metrics.OutcomeSignal
	case e.Status.Exited() && e.Status.ExitStatus() == 0:
		return metrics.OutcomeSuccess
	}
	return metrics.OutcomeFailure
}

// countExit records a handler's exit in m: as an exit, or, when the
// trampoline never ran the handler, only as a handler no longer
// running (the start failure is counted where Start reported it).
func countExit(m *metrics.Service, e proc.Exit) {
	if e.StartFailed {
		m.Abandoned()
		return
	}
	m.Exited(outcomeOf(e), e.Duration)
}
