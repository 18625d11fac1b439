package main

import (
	"log/slog"
	"net"
	"sync/atomic"
	"time"
)

// notifyTimeout bounds one sd_notify send. A datagram socket whose
// reader stopped reading fills up, and a send then waits for room; a
// service manager that is stuck must not wedge superd's reloads or its
// shutdown (go-systemd's daemon.SdNotify waits for ever).
const notifyTimeout = time.Second

// sdNotifier returns the function that sends one sd_notify state to
// socket (NOTIFY_SOCKET: a path, or @name for an abstract socket), or
// nil when socket is empty (not under a service manager). The first
// failed send is logged; later ones are not, so that a missing manager
// cannot fill the log.
func sdNotifier(socket string, log *slog.Logger) func(state string) {
	if socket == "" {
		return nil
	}
	addr := &net.UnixAddr{Name: socket, Net: "unixgram"}
	var warned atomic.Bool
	return func(state string) {
		err := sendNotify(addr, state)
		if err != nil && warned.CompareAndSwap(false, true) {
			log.Warn("notify_failed", "socket", socket, "err", err, "note", "later failures are not logged")
		}
	}
}

// sendNotify sends state as one datagram to addr, waiting at most
// notifyTimeout for room.
func sendNotify(addr *net.UnixAddr, state string) error {
	c, err := net.DialUnix("unixgram", nil, addr)
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.SetWriteDeadline(time.Now().Add(notifyTimeout)); err != nil {
		return err
	}
	_, err = c.Write([]byte(state))
	return err
}
