package main

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// usage is one look at a process in /proc: its CPU time over all of its
// threads (including threads that have exited), its memory and its
// descriptors.
type usage struct {
	ticks   int64 // utime+stime in clock ticks (USER_HZ, 100 a second on Linux)
	rssKB   int64 // VmRSS
	anonKB  int64 // RssAnon: heap, stacks, runtime metadata
	fileKB  int64 // RssFile: the binary's pages in memory
	threads int
	fds     int
	// switches is the sum of voluntary and involuntary context switches
	// of the threads alive now: every wake-up of an idle thread (a timer,
	// a poll timeout) counts one, even when it takes less than a tick.
	switches int64
	// runDelay is the time its threads alive now spent runnable but
	// waiting for a CPU (/proc/PID/task/TID/schedstat): on a shared
	// machine, the part of a wall-clock figure that other programs took.
	runDelay time.Duration
}

// sampleProc reads /proc/PID/stat, /proc/PID/status and /proc/PID/fd.
func sampleProc(pid int) (usage, error) {
	var u usage
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return u, fmt.Errorf("reading the CPU time of pid %d: %w", pid, err)
	}
	// The command sits in parentheses and may contain blanks: the fields
	// are counted from the last ')'. After it come state (field 3), ...,
	// utime (14) and stime (15).
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return u, fmt.Errorf("/proc/%d/stat: no ')' in %q", pid, stat)
	}
	f := strings.Fields(string(stat[i+1:]))
	if len(f) < 13 {
		return u, fmt.Errorf("/proc/%d/stat: only %d fields after the command", pid, len(f))
	}
	for _, s := range f[11:13] {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return u, fmt.Errorf("/proc/%d/stat: utime/stime %q: %w", pid, s, err)
		}
		u.ticks += n
	}
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return u, fmt.Errorf("reading the memory of pid %d: %w", pid, err)
	}
	for line := range strings.SplitSeq(string(status), "\n") {
		key, val, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		fields := strings.Fields(val)
		if len(fields) == 0 {
			continue
		}
		n, err := strconv.ParseInt(fields[0], 10, 64)
		if err != nil {
			continue
		}
		switch key {
		case "VmRSS":
			u.rssKB = n
		case "RssAnon":
			u.anonKB = n
		case "RssFile":
			u.fileKB = n
		case "Threads":
			u.threads = int(n)
		}
	}
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return u, fmt.Errorf("counting the descriptors of pid %d: %w", pid, err)
	}
	u.fds = len(fds)
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		return u, fmt.Errorf("listing the threads of pid %d: %w", pid, err)
	}
	for _, t := range tasks {
		if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/schedstat", pid, t.Name())); err == nil {
			// "on-CPU ns, waiting ns, time slices"
			if f := strings.Fields(string(b)); len(f) == 3 {
				if n, err := strconv.ParseInt(f[1], 10, 64); err == nil {
					u.runDelay += time.Duration(n)
				}
			}
		}
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/status", pid, t.Name()))
		if err != nil {
			continue // the thread exited meanwhile
		}
		for line := range strings.SplitSeq(string(b), "\n") {
			key, val, ok := strings.Cut(line, ":")
			if !ok || (key != "voluntary_ctxt_switches" && key != "nonvoluntary_ctxt_switches") {
				continue
			}
			if n, err := strconv.ParseInt(strings.TrimSpace(val), 10, 64); err == nil {
				u.switches += n
			}
		}
	}
	return u, nil
}

// mib formats KiB as MiB with one decimal.
func mib(kb int64) string { return fmt.Sprintf("%.1f", float64(kb)/1024) }
