package main

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

// helpers are the handler programs the integration tests configure, as
// `path = "%HELPER%"`, `args = ["NAME", ...]`. Each writes to fd 1, the
// connection, with raw system calls, so that a socket left non-blocking
// shows up as EAGAIN instead of being papered over by Go's poller.
var helpers = map[string]func(args []string) int{
	"describe":    helperDescribe,
	"readline":    helperReadline,
	"udp-reply":   helperUDPReply,
	"tcp-accept":  helperTCPAccept,
	"sleep":       helperSleep,
	"ignore-term": helperIgnoreTerm,
	"exit":        helperExit,
	"stderr":      helperStderr,
	"grandchild":  helperGrandchild,
	"close-hang":  helperCloseHang,
	"crash":       helperCrash,
	"fork-hang":   helperForkHang,
	"stream":      helperStream,
}

// openFDs lists the descriptors open at start, above 2, except the Go
// runtime's own (it reads the cgroup CPU quota at start).
func openFDs() []int {
	var fds []int
	for fd := 3; fd < 1024; fd++ {
		if _, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0); err != nil {
			continue
		}
		if l, _ := os.Readlink(fmt.Sprintf("/proc/self/fd/%d", fd)); !strings.HasPrefix(l, "/sys/fs/cgroup/") {
			fds = append(fds, fd)
		}
	}
	return fds
}

func runHelper(name string, args []string) int {
	extra := openFDs()
	if len(extra) > 0 && name == "describe" {
		var desc []string
		for _, fd := range extra {
			l, _ := os.Readlink(fmt.Sprintf("/proc/self/fd/%d", fd))
			desc = append(desc, fmt.Sprintf("%d:%s", fd, l))
		}
		args = append(args, "extra-fds="+fmt.Sprint(desc))
	}
	h, ok := helpers[name]
	if !ok {
		fmt.Fprintf(os.Stderr, "no helper %q\n", name)
		return 2
	}
	return h(args)
}

// say writes s to fd 1 with one blocking write(2).
func say(s string) error {
	_, err := unix.Write(1, []byte(s))
	return err
}

func helperDescribe(args []string) int {
	var lines []string
	add := func(k string, v any) { lines = append(lines, fmt.Sprintf("%s=%v", k, v)) }
	fdFlags, err := unix.FcntlInt(0, unix.F_GETFL, 0)
	add("fd0-nonblock", err == nil && fdFlags&unix.O_NONBLOCK != 0)
	if sa, err := unix.Getpeername(0); err == nil {
		add("fd0-peer", sockaddrString(sa))
	} else {
		add("fd0-peer", "error:"+err.Error())
	}
	if st, err := unix.GetsockoptInt(0, unix.SOL_SOCKET, unix.SO_TYPE); err == nil {
		add("fd0-sotype", st)
	}
	extra := "[]"
	for _, a := range args {
		if v, ok := strings.CutPrefix(a, "extra-fds="); ok {
			extra = v
		}
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

// helperReadline reads one line with blocking read(2) calls on fd 0 and
// answers "got:LINE". A non-blocking socket fails with EAGAIN.
func helperReadline(args []string) int {
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

// helperUDPReply takes one datagram from the bound socket (wait mode)
// with a blocking recvfrom and answers "reply:DATA" to its sender.
func helperUDPReply(args []string) int {
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

// helperTCPAccept accepts one connection on the listening socket (wait
// mode) with a blocking accept, as a self-accepting server does.
func helperTCPAccept(args []string) int {
	nfd, _, err := unix.Accept(0)
	if err != nil {
		fmt.Fprintln(os.Stderr, "accept:", err)
		return 1
	}
	unix.Write(nfd, []byte("accepted by "+strconv.Itoa(os.Getpid())+"\n"))
	unix.Close(nfd)
	return 0
}

func helperSleep(args []string) int {
	d, _ := time.ParseDuration(args[0])
	time.Sleep(d)
	say("slept\n")
	return 0
}

// helperIgnoreTerm ignores SIGTERM and its stdin, so only SIGKILL ends it.
func helperIgnoreTerm(args []string) int {
	signal.Ignore(syscall.SIGTERM)
	say("ready\n")
	time.Sleep(time.Hour)
	return 0
}

func helperExit(args []string) int {
	code, _ := strconv.Atoi(args[0])
	return code
}

func helperStderr(args []string) int {
	for _, a := range args {
		fmt.Fprintln(os.Stderr, a)
	}
	say("done\n")
	return 0
}

// helperGrandchild starts a child that outlives it, in its process group.
func helperGrandchild(args []string) int {
	cmd := exec.Command("/proc/self/exe", "sleep", args[0])
	cmd.Args[0] = "helper"
	if err := cmd.Start(); err != nil {
		return 1
	}
	say("forked " + strconv.Itoa(cmd.Process.Pid) + "\n")
	return 0
}

// helperCloseHang closes the connection and keeps running.
func helperCloseHang(args []string) int {
	unix.Close(0)
	unix.Close(1)
	d, _ := time.ParseDuration(args[0])
	time.Sleep(d)
	return 0
}

// helperCrash dies of SIGSEGV at once.
func helperCrash(args []string) int {
	unix.Kill(os.Getpid(), unix.SIGSEGV)
	time.Sleep(time.Second)
	return 1
}

// helperForkHang starts a child in its own process group that sleeps
// for args[0], says both pids, and sleeps as long itself: only killing
// the whole group ends both.
func helperForkHang(args []string) int {
	cmd := exec.Command("/proc/self/exe", "sleep", args[0])
	cmd.Args[0] = "helper"
	if err := cmd.Start(); err != nil {
		return 1
	}
	say(fmt.Sprintf("pids %d %d\n", os.Getpid(), cmd.Process.Pid))
	d, _ := time.ParseDuration(args[0])
	time.Sleep(d)
	return 0
}

// helperStream writes to the connection without end, until it is
// killed or the client goes away.
func helperStream(args []string) int {
	chunk := []byte(strings.Repeat("x", 4096))
	for {
		if _, err := unix.Write(1, chunk); err != nil {
			return 0
		}
	}
}
