// Command inproc is the Go in-process floor for superd's built-in
// services, for bench/bench.sh: accept, echo one line, close, one
// goroutine per connection, with the net package and nothing else.
//
//	inproc 127.x.y.z:PORT
//
// It binds loopback addresses only and runs until a signal (SIGTERM) ends
// the process.
package main

import (
	"bytes"
	"fmt"
	"net"
	"net/netip"
	"os"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: inproc 127.x.y.z:PORT")
		os.Exit(2)
	}
	ap, err := netip.ParseAddrPort(os.Args[1])
	if err != nil || !ap.Addr().Unmap().IsLoopback() || ap.Port() == 0 {
		fmt.Fprintf(os.Stderr, "inproc: %s: want a loopback address and a port\n", os.Args[1])
		os.Exit(2)
	}
	ln, err := net.ListenTCP("tcp", net.TCPAddrFromAddrPort(ap))
	if err != nil {
		fmt.Fprintln(os.Stderr, "inproc:", err)
		os.Exit(1)
	}
	for {
		c, err := ln.AcceptTCP()
		if err != nil {
			// A floor has no back-off: it stops, and bench.sh reports
			// the target gone rather than measuring a spinning loop.
			fmt.Fprintln(os.Stderr, "inproc: accept:", err)
			os.Exit(1)
		}
		// Each connection's goroutine ends when its client has its line
		// back; the process's end stops the rest.
		go echoLine(c)
	}
}

// echoLine reads until the first newline (or EOF, or 4 KiB), writes that
// back and closes the connection.
func echoLine(c *net.TCPConn) {
	defer c.Close()
	var buf [4096]byte
	got := 0
	for got < len(buf) {
		n, err := c.Read(buf[got:])
		got += n
		if bytes.IndexByte(buf[got-n:got], '\n') >= 0 || err != nil {
			break
		}
	}
	c.Write(buf[:got])
}
