package proc

import (
	"errors"
	"fmt"
	"math"
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// DescriptorsExhausted reports whether err means that superd is out of
// file descriptors: its own limit (EMFILE) or the system's (ENFILE). A
// Start that fails so is worth trying again once descriptors free up
// (see Released).
func DescriptorsExhausted(err error) bool {
	return errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE)
}

// forkNearLimit turns the EBADF of a start whose descriptors sit just
// below superd's RLIMIT_NOFILE into the shortage of descriptors it is:
// before it puts the files in place, Go's child moves its own error pipe
// and some of the files above the highest of them
// (syscall.forkAndExecInChild), and a dup3 beyond the limit fails with
// EBADF. Any other error is returned as it is.
func forkNearLimit(cmd *Command, null *os.File, stderrFD int, err error) error {
	if !errors.Is(err, syscall.EBADF) {
		return err
	}
	files := append([]*os.File{null}, cmd.ExtraFiles...)
	files = append(files, cmd.Stdin, cmd.Stdout, cmd.Stderr)
	highest := stderrFD
	for _, f := range files {
		if f != nil {
			// Start called Fd already: no mode changes here.
			highest = max(highest, int(f.Fd()))
		}
	}
	var lim unix.Rlimit
	if unix.Getrlimit(unix.RLIMIT_NOFILE, &lim) != nil {
		return err
	}
	// The child numbers descriptors up to highest + 1, plus one for its
	// pipe and one for each file it moves.
	if uint64(highest+2+len(files)) < lim.Cur {
		return err
	}
	return fmt.Errorf("%w (superd is at its descriptor limit: %w)", err, syscall.EMFILE)
}

// addDurations returns a+b, saturated at the largest (or smallest)
// Duration instead of wrapping around: a timeout of hundreds of years
// plus killDelay must stay hundreds of years, not turn negative.
func addDurations(a, b time.Duration) time.Duration {
	sum := a + b
	switch {
	case a > 0 && b > 0 && sum < 0:
		return math.MaxInt64
	case a < 0 && b < 0 && sum >= 0:
		return math.MinInt64
	}
	return sum
}
