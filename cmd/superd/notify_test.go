package main

import (
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// TestSdNotifierNeverWedges checks that sd_notify to a socket nobody
// reads gives up instead of waiting for ever, and says so once: a full
// notify socket used to block superd's shutdown after a few reloads.
func TestSdNotifierNeverWedges(t *testing.T) {
	path := filepath.Join(t.TempDir(), "notify.sock")
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var mu sync.Mutex
	var logs strings.Builder
	log := slog.New(slog.NewTextHandler(lockedWriter{&mu, &logs}, nil))
	notify := sdNotifier(path, log)
	// The kernel queues a bounded number of datagrams for a reader that
	// does not read (net.unix.max_dgram_qlen, and the buffer's size):
	// once they are full, sends must give up, not wait for ever.
	failed := func() bool {
		mu.Lock()
		defer mu.Unlock()
		return strings.Contains(logs.String(), "notify_failed")
	}
	sent := 0
	for ; !failed(); sent++ {
		if sent == 100000 {
			t.Fatal("100000 sends to a socket nobody reads, and none failed")
		}
		notify("STATUS=" + strings.Repeat("x", 200))
	}
	for range 2 {
		notify("STATUS=more") // each waits notifyTimeout, then gives up
	}
	t.Logf("first failure after %d sends", sent)
	mu.Lock()
	defer mu.Unlock()
	if n := strings.Count(logs.String(), "notify_failed"); n != 1 {
		t.Errorf("%d notify_failed lines, want exactly 1:\n%s", n, logs.String())
	}
	if sdNotifier("", log) != nil {
		t.Error("sdNotifier without NOTIFY_SOCKET is not nil")
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	b  *strings.Builder
}

func (w lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}
