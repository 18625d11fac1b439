package upgrade

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/superd/superd/internal/testkit"
)

// TestChildEnv: the new process gets the old one's environment without
// any socket-passing variables of its own, plus LISTEN_FDS and
// LISTEN_FDNAMES for the sockets and the handshake's descriptor right
// after them.
func TestChildEnv(t *testing.T) {
	named := func(name string) *os.File {
		fd, err := syscall.Open("/dev/null", syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		f := os.NewFile(uintptr(fd), name)
		t.Cleanup(func() { f.Close() })
		return f
	}
	a, b := named("cat"), named("superd/metrics")
	tests := []struct {
		name  string
		env   []string
		files []*os.File
		want  []string
	}{
		{"no sockets", []string{"PATH=/bin", "LISTEN_FDS=3", "LISTEN_PID=1"}, nil,
			[]string{"PATH=/bin", envFD + "=3", envPID + "=" + strconv.Itoa(os.Getpid())}},
		{"two sockets", []string{"NOTIFY_SOCKET=/run/n", "LISTEN_FDNAMES=x", envFD + "=9", envPID + "=1"}, []*os.File{a, b},
			[]string{"NOTIFY_SOCKET=/run/n", "LISTEN_FDS=2", "LISTEN_FDNAMES=cat:superd/metrics", envFD + "=5", envPID + "=" + strconv.Itoa(os.Getpid())}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := childEnv(Spec{Env: tt.env, Files: tt.files})
			if !slices.Equal(got, tt.want) {
				t.Errorf("childEnv = %q\nwant        %q", got, tt.want)
			}
		})
	}
}

// TestFromEnvNotAnUpgrade: without the variables FromEnv finds nothing;
// with variables that name another parent it refuses them and unsets
// them either way.
func TestFromEnvNotAnUpgrade(t *testing.T) {
	t.Setenv(envFD, "")
	t.Setenv(envPID, "")
	if p, err := FromEnv(); p != nil || err != nil {
		t.Fatalf("FromEnv without variables = %v, %v", p, err)
	}
	t.Setenv(envFD, "3")
	t.Setenv(envPID, strconv.Itoa(os.Getppid()+1))
	if p, err := FromEnv(); p != nil || err == nil {
		t.Fatalf("FromEnv with another parent's pid = %v, %v; want an error", p, err)
	}
	if _, ok := os.LookupEnv(envFD); ok {
		t.Error("FromEnv left " + envFD + " set")
	}
}

// TestFDNamesTooLong: names that would pass the kernel's limit on one
// environment string are replaced by "/", except superd's own.
func TestFDNamesTooLong(t *testing.T) {
	var names []string
	for i := range 3000 {
		names = append(names, fmt.Sprintf("service-with-a-rather-long-name-number-%06d", i))
	}
	names = append(names, "superd/metrics")
	got := strings.Split(joinFDNames(slices.Clone(names)), ":")
	if len(got) != len(names) || got[0] != "/" || got[2999] != "/" || got[3000] != "superd/metrics" {
		t.Errorf("names of 3000 long names: %d names, first %q, last %q", len(got), got[0], got[len(got)-1])
	}
	if got := joinFDNames(slices.Clone(names[:2])); got != names[0]+":"+names[1] {
		t.Errorf("names of two = %q", got)
	}
}

// TestInterruptSurvivesNext: an Interrupt (a stop) that comes before
// Next, even one that asks for no deadline, still ends it: Next must
// not set its own deadline over it. A Next that blocked would hang.
func TestInterruptSurvivesNext(t *testing.T) {
	mine, theirs := net.Pipe()
	defer mine.Close()
	defer theirs.Close()
	p := &Predecessor{conn: mine, r: bufio.NewReader(mine), pidfd: -1}
	p.Interrupt()
	done := make(chan error, 1)
	go func() {
		_, _, err := p.Next(time.Time{})
		done <- err
	}()
	select {
	case err := <-done:
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Errorf("Next after Interrupt = %v, want a deadline error", err)
		}
	case <-time.After(testkit.Timeout):
		t.Fatal("Next after Interrupt is still waiting")
	}
}
