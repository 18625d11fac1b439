package services

import (
	"io"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestServeDefersStartWithoutDescriptors leaves superd exactly one free
// descriptor: accept4 takes it, and the handler's stderr pipe cannot be
// made. The client accepted must not be dropped (before the fix: a
// start_failed and an empty reply): its start waits, logged once as
// descriptors_exhausted, and succeeds when descriptors are back.
func TestServeDefersStartWithoutDescriptors(t *testing.T) {
	e := newEnv(t)
	ln := e.listen(t, execService("short", tcpKey, "/bin/echo", "served"))
	// A first client, so that whatever serving opens once is open.
	if got := readAll(t, dial(t, "tcp", ln.Addr().String())); got != "served\n" {
		t.Fatalf("first client got %q, want served", got)
	}
	e.rec.Wait(t, match("exit", "status", "0"))

	// The client's socket exists before the limit; its connect needs no
	// descriptor of this process.
	cfd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	client := os.NewFile(uintptr(cfd), "client")
	defer client.Close()
	var orig unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &orig); err != nil {
		t.Fatal(err)
	}
	free, err := unix.Dup(0)
	if err != nil {
		t.Fatal(err)
	}
	unix.Close(free)
	restore := func() {
		if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &orig); err != nil {
			t.Fatalf("restore RLIMIT_NOFILE: %v", err)
		}
	}
	// Descriptor number free is the last one allowed: the accept's.
	if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &unix.Rlimit{Cur: uint64(free) + 1, Max: orig.Max}); err != nil {
		t.Fatal(err)
	}
	defer restore()
	addr := ln.Addr().(*net.TCPAddr).AddrPort()
	if err := unix.Connect(cfd, &unix.SockaddrInet4{Addr: addr.Addr().As4(), Port: int(addr.Port())}); err != nil {
		restore()
		t.Fatalf("connect: %v", err)
	}
	l := e.rec.Wait(t, match("descriptors_exhausted", "service", "short"))
	restore()
	// Which comes first is a race: the start's stderr pipe, or the
	// loop's next accept4, which takes a descriptor before it looks for
	// a client.
	if !strings.Contains(l.Attrs["err"], "too many open files") {
		t.Errorf("shortage line %v, want EMFILE", l)
	}
	unix.SetsockoptTimeval(cfd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Sec: int64(testTimeout / time.Second)})
	got, err := io.ReadAll(client)
	if string(got) != "served\n" {
		t.Errorf("client accepted while out of descriptors got %q, %v; want served", got, err)
	}
	e.rec.WaitN(t, 2, match("exit", "status", "0"))
	if n := e.rec.Count(match("start_failed")); n != 0 {
		t.Errorf("%d start_failed lines, want 0: the client must wait, not be dropped", n)
	}
	if n := e.rec.Count(match("descriptors_exhausted")); n != 1 {
		t.Errorf("%d descriptors_exhausted lines for one shortage, want 1", n)
	}
}
