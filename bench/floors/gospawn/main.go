//go:build linux

// Command gospawn is the Go floor of a process-per-connection superserver,
// for bench/bench.sh: what Go itself costs per connection, with nothing of
// superd's (no checks, logging, limits, environment building, stderr pipe).
//
//	gospawn 127.x.y.z:PORT /path/to/handler [args...]
//
// The main goroutine, locked to its OS thread, accepts with a blocking
// accept4 and starts the handler with syscall.ForkExec, the connection as
// fds 0 and 1 and gospawn's stderr as fd 2, then closes its copy. One
// goroutine reaps: on every SIGCHLD it calls wait4(-1, WNOHANG) until no
// exited child is left. It binds IPv4 loopback addresses only and runs
// until a signal (SIGTERM) ends the process; no cgo.
package main

import (
	"fmt"
	"net/netip"
	"os"
	"os/signal"
	"runtime"
	"syscall"
)

func main() {
	if len(os.Args) < 3 {
		fmt.Fprintln(os.Stderr, "usage: gospawn 127.x.y.z:PORT HANDLER [ARGS...]")
		os.Exit(2)
	}
	ap, err := netip.ParseAddrPort(os.Args[1])
	if err != nil || !ap.Addr().Is4() || !ap.Addr().IsLoopback() || ap.Port() == 0 {
		fmt.Fprintf(os.Stderr, "gospawn: %s: want an IPv4 loopback address and a port\n", os.Args[1])
		os.Exit(2)
	}
	lfd, err := listen(ap)
	if err != nil {
		fmt.Fprintf(os.Stderr, "gospawn: listen on %s: %v\n", ap, err)
		os.Exit(1)
	}
	chld := make(chan os.Signal, 1)
	signal.Notify(chld, syscall.SIGCHLD)
	// The reaper lives as long as the process: nothing stops a floor but
	// the signal that ends it.
	go reap(chld)

	// A blocking accept4 on one locked thread: no poller round trip.
	runtime.LockOSThread()
	attr := &syscall.ProcAttr{Env: os.Environ(), Files: []uintptr{0, 0, 2}}
	for {
		c, _, err := syscall.Accept4(lfd, syscall.SOCK_CLOEXEC)
		if err == syscall.EINTR || err == syscall.ECONNABORTED {
			continue
		}
		if err != nil {
			// No back-off in a floor: stop, so bench.sh sees it gone.
			fmt.Fprintln(os.Stderr, "gospawn: accept4:", err)
			os.Exit(1)
		}
		attr.Files[0], attr.Files[1] = uintptr(c), uintptr(c)
		if _, err := syscall.ForkExec(os.Args[2], os.Args[2:], attr); err != nil {
			fmt.Fprintf(os.Stderr, "gospawn: start %s: %v\n", os.Args[2], err)
		}
		syscall.Close(c)
	}
}

// listen returns a blocking, close-on-exec listening socket on ap.
func listen(ap netip.AddrPort) (int, error) {
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	if err := syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_REUSEADDR, 1); err != nil {
		return -1, err
	}
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().As4()}); err != nil {
		return -1, err
	}
	return fd, syscall.Listen(fd, 4096)
}

// reap collects every exited child after each SIGCHLD (signals coalesce,
// so one wake-up may stand for several exits).
func reap(chld <-chan os.Signal) {
	for range chld {
		for {
			pid, err := syscall.Wait4(-1, nil, syscall.WNOHANG, nil)
			if err == syscall.EINTR {
				continue
			}
			if pid <= 0 || err != nil {
				break
			}
		}
	}
}
