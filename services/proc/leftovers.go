package proc

import (
	"bytes"
	"os"
	"strconv"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Processes a handler leaves behind in its process group (a child it did
// not wait for) must still get the timeout's SIGKILL and shutdown's
// signals. But once the leader is reaped, the group's number alone is no
// safe address: when the group empties, any new process that starts a
// session can take the number, and kill(-pgid) would reach a stranger.
// So the Table records the leftover members themselves, by pidfd, which
// always names the very process it was opened for.

// leftovers holds the members of one exited handler's process group.
// Only the Table, under its lock, uses it.
type leftovers struct {
	pgid    int
	members []member
}

// member is a leftover process: its pidfd, and its pid for /proc.
type member struct{ pid, fd int }

// findLeftovers returns the processes still in process group pgid, or nil
// when it is empty. It reads /proc, so it runs only when kill(-pgid, 0)
// says the group has members.
func findLeftovers(pgid int) *leftovers {
	if syscall.Kill(-pgid, 0) != nil {
		return nil
	}
	// The handler pgid has been reaped. While a process it left is in
	// its group, the kernel hands that number to no new process; so a
	// live process with that pid, leading a group of that number, is a
	// stranger that got the pid once the group was empty (a new session:
	// a handler Start just made, say), and the group is none of the
	// handler's.
	if processGroup(pgid) == pgid {
		return nil
	}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var fds []member
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || processGroup(pid) != pgid {
			continue
		}
		fd, err := unix.PidfdOpen(pid, 0)
		if err != nil {
			continue
		}
		// The pid may have been reused between the read and the open.
		if processGroup(pid) != pgid {
			unix.Close(fd)
			continue
		}
		fds = append(fds, member{pid: pid, fd: fd})
	}
	if len(fds) == 0 {
		return nil
	}
	return &leftovers{pgid: pgid, members: fds}
}

// processGroup reads a process's group from /proc/PID/stat; -1 if it is
// gone or a zombie (dead, waiting for a parent that may never reap it).
func processGroup(pid int) int {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return -1
	}
	// pid (comm) state ppid pgrp ...: comm may hold spaces and ")".
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return -1
	}
	f := bytes.Fields(b[i+1:])
	if len(f) < 3 || string(f[0]) == "Z" {
		return -1
	}
	g, err := strconv.Atoi(string(f[2]))
	if err != nil {
		return -1
	}
	return g
}

// signal sends sig (0 to only look) to every member still in the group,
// and forgets the others. It reports whether any is left.
func (l *leftovers) signal(sig syscall.Signal) bool {
	alive := l.members[:0]
	for _, m := range l.members {
		// A member that died (a zombie counts) or left the group (a
		// session of its own) is no longer the handler's.
		if processGroup(m.pid) != l.pgid || unix.PidfdSendSignal(m.fd, sig, nil, 0) != nil {
			unix.Close(m.fd)
			continue
		}
		alive = append(alive, m)
	}
	l.members = alive
	return len(alive) > 0
}

// leftoverCheck is how often watchLeftovers looks for leftovers that
// are gone. They are not superd's children: no wait tells.
const leftoverCheck = 250 * time.Millisecond

// watchLeftovers forgets leftover processes once they are gone, closing
// their pidfds, and ends when none is left. The reaper that records the
// first leftover starts it; Wait waits for it.
func (t *Table) watchLeftovers() {
	tick := time.NewTicker(leftoverCheck)
	defer tick.Stop()
	for range tick.C {
		t.mu.Lock()
		t.pruneLocked()
		if len(t.groups) == 0 {
			t.watching = false
			t.mu.Unlock()
			return
		}
		t.mu.Unlock()
	}
}

func (t *Table) pruneLocked() {
	for g, l := range t.groups {
		if !l.signal(0) {
			delete(t.groups, g)
		}
	}
}

// ReapOrphans waits for the zombie children of superd that are not
// handlers: processes that handlers left behind and that the kernel gave
// to superd because it runs as PID 1 (of a container, say), where nobody
// else would reap them. Handlers are left to their own reapers.
func (t *Table) ReapOrphans() {
	t.startMu.Lock()
	defer t.startMu.Unlock()
	self := os.Getpid()
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return
	}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || !zombieChildOf(pid, self) {
			continue
		}
		t.mu.Lock()
		_, handler := t.procs[pid]
		t.mu.Unlock()
		if !handler {
			var ws syscall.WaitStatus
			syscall.Wait4(pid, &ws, syscall.WNOHANG, nil)
		}
	}
}

// zombieChildOf reports whether pid is a zombie whose parent is ppid.
func zombieChildOf(pid, ppid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return false
	}
	f := bytes.Fields(b[i+1:])
	return len(f) > 1 && string(f[0]) == "Z" && string(f[1]) == strconv.Itoa(ppid)
}
