package testkit

import (
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// The helper programs. Each is a func(args []string) int for
// Helpers.Register, under the name the tests' configurations use. They
// read fd 0 and write fd 1, the connection, with raw system calls, so
// that a socket left non-blocking shows up as EAGAIN instead of being
// papered over by Go's poller. Their output is what tests assert on:
// change it only together with every test that reads it.

// say writes s to fd 1 with one blocking write(2).
func say(s string) error {
	_, err := unix.Write(1, []byte(s))
	return err
}

// nonblock reports whether fd has O_NONBLOCK set.
func nonblock(fd int) bool {
	fl, err := unix.FcntlInt(uintptr(fd), unix.F_GETFL, 0)
	return err == nil && fl&unix.O_NONBLOCK != 0
}

// inherited reports whether fd is open and could have come through the
// exec: one with FD_CLOEXEC cannot have, so it is this process's own
// (the Go runtime's cgroup files, the poller that a package's init
// started by opening a file).
func inherited(fd int) bool {
	fl, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0)
	return err == nil && fl&unix.FD_CLOEXEC == 0
}

// extraFDs lists the descriptors open above 2 that came through the
// exec, as "FD:TARGET".
func extraFDs() []string {
	var desc []string
	for fd := 3; fd < 1024; fd++ {
		if inherited(fd) {
			l, _ := os.Readlink(fmt.Sprintf("/proc/self/fd/%d", fd))
			desc = append(desc, fmt.Sprintf("%d:%s", fd, l))
		}
	}
	return desc
}

// Describe writes what a handler was given, one "key=value" per line:
// fd0-nonblock, fd0-peer, fd0-sotype, extra-fds (descriptors above 2,
// "[]" for none), fd2 (its target), uid, gid, groups, umask, nice,
// rlimit-{nofile,nproc,as,cpu,core,fsize} ("soft/hard"), session-leader,
// cwd, then the environment sorted, as "env:NAME=VALUE" lines.
func Describe([]string) int {
	// First, before anything this process does could open one.
	extra := "[]"
	if fds := extraFDs(); len(fds) > 0 {
		extra = fmt.Sprint(fds)
	}
	var lines []string
	add := func(k string, v any) { lines = append(lines, fmt.Sprintf("%s=%v", k, v)) }
	add("fd0-nonblock", nonblock(0))
	if sa, err := unix.Getpeername(0); err == nil {
		add("fd0-peer", sockaddrString(sa))
	} else {
		add("fd0-peer", "error:"+err.Error())
	}
	if st, err := unix.GetsockoptInt(0, unix.SOL_SOCKET, unix.SO_TYPE); err == nil {
		add("fd0-sotype", st)
	}
	add("extra-fds", extra)
	fd2, _ := os.Readlink("/proc/self/fd/2")
	add("fd2", fd2)
	add("uid", os.Getuid())
	add("gid", os.Getgid())
	groups, _ := unix.Getgroups()
	sort.Ints(groups)
	add("groups", fmt.Sprint(groups))
	add("umask", procStatus("Umask"))
	prio, _ := unix.Getpriority(unix.PRIO_PROCESS, 0)
	add("nice", 20-prio)
	for _, r := range []struct {
		name string
		res  int
	}{{"nofile", unix.RLIMIT_NOFILE}, {"nproc", unix.RLIMIT_NPROC}, {"as", unix.RLIMIT_AS}, {"cpu", unix.RLIMIT_CPU}, {"core", unix.RLIMIT_CORE}, {"fsize", unix.RLIMIT_FSIZE}} {
		var l unix.Rlimit
		unix.Getrlimit(r.res, &l)
		add("rlimit-"+r.name, fmt.Sprintf("%d/%d", l.Cur, l.Max))
	}
	sid, _ := unix.Getsid(0)
	add("session-leader", sid == os.Getpid())
	wd, _ := os.Getwd()
	add("cwd", wd)
	env := os.Environ()
	sort.Strings(env)
	for _, e := range env {
		lines = append(lines, "env:"+e)
	}
	if err := say(strings.Join(lines, "\n") + "\n"); err != nil {
		fmt.Fprintln(os.Stderr, "describe:", err)
		return 1
	}
	return 0
}

func procStatus(key string) string {
	b, _ := os.ReadFile("/proc/self/status")
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, key+":"); ok {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

func sockaddrString(sa unix.Sockaddr) string {
	switch a := sa.(type) {
	case *unix.SockaddrInet4:
		return fmt.Sprintf("%d.%d.%d.%d:%d", a.Addr[0], a.Addr[1], a.Addr[2], a.Addr[3], a.Port)
	case *unix.SockaddrInet6:
		return fmt.Sprintf("[%x]:%d", a.Addr, a.Port)
	case *unix.SockaddrUnix:
		return "unix:" + a.Name
	}
	return fmt.Sprintf("%T", sa)
}

// FDs writes "nonblock=BOOL fds=[...]": fd 0's mode and every
// descriptor from 0 up that came through the exec (see inherited).
func FDs([]string) int {
	var fds []int
	for fd := 0; fd < 256; fd++ {
		if inherited(fd) {
			fds = append(fds, fd)
		}
	}
	say(fmt.Sprintf("nonblock=%v fds=%v\n", nonblock(0), fds))
	return 0
}

// Readline reads one line from fd 0 with blocking one-byte read(2)
// calls and answers "got:LINE\n". A non-blocking socket fails it with
// "error:...EAGAIN...".
func Readline([]string) int {
	var line []byte
	buf := make([]byte, 1)
	for {
		n, err := unix.Read(0, buf)
		if err != nil {
			say("error:" + err.Error() + "\n")
			return 1
		}
		if n == 0 || buf[0] == '\n' {
			break
		}
		line = append(line, buf[0])
	}
	say("got:" + string(line) + "\n")
	return 0
}

// UDPReply takes one datagram from the bound socket (wait mode) with a
// blocking recvfrom and answers "reply:DATA" to its sender.
func UDPReply([]string) int {
	buf := make([]byte, 2048)
	n, from, err := unix.Recvfrom(0, buf, 0)
	if err != nil {
		fmt.Fprintln(os.Stderr, "recvfrom:", err)
		return 1
	}
	if err := unix.Sendto(1, []byte("reply:"+string(buf[:n])), 0, from); err != nil {
		fmt.Fprintln(os.Stderr, "sendto:", err)
		return 1
	}
	return 0
}

// UDPReplyMode is UDPReply that also says fd 0's mode at start:
// "reply:DATA nonblock=BOOL". With the argument "set-nonblock" it then
// leaves the socket non-blocking, as tftpd does.
func UDPReplyMode(args []string) int {
	nb := nonblock(0)
	buf := make([]byte, 2048)
	n, from, err := unix.Recvfrom(0, buf, 0)
	if err != nil {
		fmt.Fprintln(os.Stderr, "recvfrom:", err)
		return 1
	}
	msg := fmt.Sprintf("reply:%s nonblock=%v", buf[:n], nb)
	if err := unix.Sendto(1, []byte(msg), 0, from); err != nil {
		fmt.Fprintln(os.Stderr, "sendto:", err)
		return 1
	}
	if len(args) > 0 && args[0] == "set-nonblock" {
		unix.SetNonblock(0, true)
	}
	return 0
}

// TCPAcceptPID accepts one connection on the listening socket (wait
// mode) with a blocking accept, as a self-accepting server does, and
// writes "accepted by PID\n" to it.
func TCPAcceptPID([]string) int {
	nfd, _, err := unix.Accept(0)
	if err != nil {
		fmt.Fprintln(os.Stderr, "accept:", err)
		return 1
	}
	unix.Write(nfd, []byte("accepted by "+strconv.Itoa(os.Getpid())+"\n"))
	unix.Close(nfd)
	return 0
}

// TCPAcceptLoop is a self-accepting server in wait mode that blocks in
// accept, as many do: it writes "accepted by PID\n" to each connection
// and exits 0 after the one that sends "quit"; a failed accept (EAGAIN:
// the socket was made non-blocking under it) exits 1.
func TCPAcceptLoop([]string) int {
	for {
		nfd, _, err := unix.Accept(0)
		if err != nil {
			fmt.Fprintln(os.Stderr, "accept:", err)
			return 1
		}
		buf := make([]byte, 64)
		n, _ := unix.Read(nfd, buf)
		unix.Write(nfd, []byte("accepted by "+strconv.Itoa(os.Getpid())+"\n"))
		unix.Close(nfd)
		if strings.TrimSpace(string(buf[:max(n, 0)])) == "quit" {
			return 0
		}
	}
}

// TCPAccept is TCPAcceptPID that writes just "accepted\n".
func TCPAccept([]string) int {
	nfd, _, err := unix.Accept(0)
	if err != nil {
		fmt.Fprintln(os.Stderr, "accept:", err)
		return 1
	}
	unix.Write(nfd, []byte("accepted\n"))
	unix.Close(nfd)
	return 0
}

// WaitFile holds its descriptors until the file args[0] exists (at most
// 20s) and exits without touching them: 0 when the file came, 1 if not.
func WaitFile(args []string) int {
	for range 2000 {
		if _, err := os.Stat(args[0]); err == nil {
			return 0
		}
		time.Sleep(10 * time.Millisecond)
	}
	return 1
}

// Sleep sleeps for the duration args[0] and writes "slept\n".
func Sleep(args []string) int {
	d, _ := time.ParseDuration(args[0])
	time.Sleep(d)
	say("slept\n")
	return 0
}

// IgnoreTerm ignores SIGTERM, writes "ready\n" and sleeps an hour, so
// only SIGKILL ends it.
func IgnoreTerm([]string) int {
	signal.Ignore(syscall.SIGTERM)
	say("ready\n")
	time.Sleep(time.Hour)
	return 0
}

// Exit exits at once with the status args[0].
func Exit(args []string) int {
	code, _ := strconv.Atoi(args[0])
	return code
}

// Stderr writes each argument as a line to stderr, then "done\n" to
// the connection.
func Stderr(args []string) int {
	for _, a := range args {
		fmt.Fprintln(os.Stderr, a)
	}
	say("done\n")
	return 0
}

// Grandchild starts a child, in its process group, that outlives it (the
// helper "sleep" for args[0], which must be registered as "sleep"), and
// writes "forked PID\n".
func Grandchild(args []string) int {
	cmd := exec.Command("/proc/self/exe", "sleep", args[0])
	cmd.Args[0] = Argv0
	if err := cmd.Start(); err != nil {
		return 1
	}
	say("forked " + strconv.Itoa(cmd.Process.Pid) + "\n")
	return 0
}

// CloseHang closes the connection (fds 0 and 1) and keeps running for
// the duration args[0].
func CloseHang(args []string) int {
	unix.Close(0)
	unix.Close(1)
	d, _ := time.ParseDuration(args[0])
	time.Sleep(d)
	return 0
}

// Crash dies of SIGSEGV at once.
func Crash([]string) int {
	unix.Kill(os.Getpid(), unix.SIGSEGV)
	time.Sleep(time.Second)
	return 1
}

// ForkHang starts a child (the helper "sleep" for args[0], which must be
// registered as "sleep"), writes "pids LEADER CHILD\n", and sleeps as
// long itself: only killing the whole process group ends both.
func ForkHang(args []string) int {
	cmd := exec.Command("/proc/self/exe", "sleep", args[0])
	cmd.Args[0] = Argv0
	if err := cmd.Start(); err != nil {
		return 1
	}
	say(fmt.Sprintf("pids %d %d\n", os.Getpid(), cmd.Process.Pid))
	d, _ := time.ParseDuration(args[0])
	time.Sleep(d)
	return 0
}

// Stream writes 4 KiB chunks of "x" to the connection without end,
// until it is killed or the client goes away.
func Stream([]string) int {
	chunk := []byte(strings.Repeat("x", 4096))
	for {
		if _, err := unix.Write(1, chunk); err != nil {
			return 0
		}
	}
}
