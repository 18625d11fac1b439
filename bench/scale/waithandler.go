package main

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"time"
)

// serveWaitArg, as the only argument, makes this program the wait-mode
// TCP handler that the wait step configures: superd runs it with the
// listening socket on fd 0.
const serveWaitArg = "-serve-wait"

const (
	// waitIdleExit ends the handler when no connection came for this
	// long; superd starts it again on the next one.
	waitIdleExit = 10 * time.Second
	// waitMaxAccepts bounds one handler's accept loop in count.
	waitMaxAccepts = 10_000_000
	// waitMaxConns bounds the connections served at once.
	waitMaxConns = 256
)

// serveWait accepts connections on fd 0 and echoes each one's input
// back until EOF, as /bin/cat would in nowait mode; it returns the exit
// status.
func serveWait() int {
	f := os.NewFile(0, "superd wait-mode socket")
	ln, err := net.FileListener(f)
	f.Close() // FileListener holds its own dup
	if err != nil {
		fmt.Fprintln(os.Stderr, "scale wait handler: fd 0 is not a listening socket:", err)
		return 1
	}
	defer ln.Close()
	tl, ok := ln.(*net.TCPListener)
	if !ok {
		fmt.Fprintf(os.Stderr, "scale wait handler: fd 0 is a %T, want a TCP listener\n", ln)
		return 1
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	slots := make(chan struct{}, waitMaxConns)
	for range waitMaxAccepts {
		tl.SetDeadline(time.Now().Add(waitIdleExit))
		c, err := tl.AcceptTCP()
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return 0 // idle: superd watches the socket again
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "scale wait handler: accept:", err)
			return 1
		}
		slots <- struct{}{}
		wg.Go(func() {
			defer func() { <-slots }()
			defer c.Close()
			c.SetDeadline(time.Now().Add(ioTimeout))
			b, err := io.ReadAll(io.LimitReader(c, 64<<10))
			if err != nil {
				return
			}
			c.Write(b)
		})
	}
	return 0
}
