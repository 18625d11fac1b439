// Package upgrade is the handshake between the two superd processes of
// a binary upgrade: the old one, which was sent SIGUSR2, and the new one
// it starts from the binary now on disk.
//
// The old process starts the new one with every socket it serves passed
// by the systemd convention (LISTEN_FDS, LISTEN_FDNAMES: the new process
// adopts them as it adopts systemd's), and one end of a socket pair on
// the descriptor after them, named by SUPERD_UPGRADE_FD. The new process
// loads its configuration, adopts or binds its sockets without taking a
// client yet, and says it is ready. The old one then stops taking
// clients and tells the new one what its running clients hold of each
// socket's instances and per_source limits, then "synced", then every
// change to that as its clients end; it closes the pair when its last
// client has ended, and exits. The new process takes clients from
// "synced" on, counting the old one's until they end.
//
// The messages are JSON lines. The package knows nothing of services or
// listeners: the supervisor says which sockets to pass and what the
// counts are, and applies them.
package upgrade

import (
	"net/netip"
	"strings"
)

// The variables the old process sets for the new one. LISTEN_PID (which
// the old process cannot know before the new one runs) is set by
// FromEnv in the new process itself, once it has checked that its
// parent is the process named by envPID.
const (
	envFD    = "SUPERD_UPGRADE_FD"
	envPID   = "SUPERD_UPGRADE_PID"
	envOwned = "SUPERD_UPGRADE_OWNED" // descriptors whose unix socket file superd owns, comma-separated
)

// message is one line of the handshake.
type message struct {
	// Ready (new to old) says the new process has its sockets.
	Ready bool `json:"ready,omitempty"`
	// Pid is the new process's, with Ready.
	Pid int `json:"pid,omitempty"`
	// FD names the socket a message is of: the descriptor it was passed
	// on to the new process (3, 4, …), which identifies it in both
	// processes whatever their configurations call it.
	FD int `json:"fd,omitempty"`
	// Slots is a change to the instance slots the old process's clients
	// hold on FD.
	Slots int `json:"slots,omitempty"`
	// Source and Sources are a change to the per_source places they hold.
	Source  string `json:"source,omitempty"`
	Sources int    `json:"sources,omitempty"`
	// Held (old to new) says a wait-mode handler of the old process
	// holds the socket FD, Released that it has exited: the new
	// process adopts that socket only then.
	Held     bool `json:"held,omitempty"`
	Released bool `json:"released,omitempty"`
	// Synced (old to new) ends the counts as they were when the old
	// process stopped taking clients: the new one may take clients now.
	Synced bool `json:"synced,omitempty"`
}

// Change is a change to the counts the old process's clients hold on one
// socket, as the new process applies it.
type Change struct {
	// FD is the socket: the descriptor it was passed on (see message).
	FD int
	// Slots is the change to the instance slots.
	Slots int
	// Source, when valid, is the source whose per_source places change
	// by Sources.
	Source  netip.Prefix
	Sources int
	// Held and Released: a wait-mode handler of the old process holds
	// the socket FD, or has exited (see message).
	Held, Released bool
}

// filterEnv returns env without the variables of socket passing and of
// this package, which the new process must get afresh.
func filterEnv(env []string) []string {
	out := make([]string, 0, len(env)+4)
	for _, kv := range env {
		k, _, _ := strings.Cut(kv, "=")
		switch k {
		case "LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES", envFD, envPID, envOwned:
			continue
		}
		out = append(out, kv)
	}
	return out
}
