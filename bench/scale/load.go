package main

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// ioTimeout bounds every connection and datagram exchange.
const ioTimeout = 5 * time.Second

// sources hands out client source addresses from 127.1.0.1 on, so that
// each connection's 4-tuple differs and ephemeral ports (and TIME_WAIT
// entries) never run out however many connections a step makes.
type sources struct{ n atomic.Uint32 }

// next returns the next source address: 127.1-127.254 . 0-255 . 1-254.
func (s *sources) next() netip.Addr {
	i := s.n.Add(1) - 1
	i %= 254 * 256 * 254
	return netip.AddrFrom4([4]byte{127, byte(1 + i/(256*254)), byte(i / 254 % 256), byte(1 + i%254)})
}

// dialer returns a dialer bound to src. IP_BIND_ADDRESS_NO_PORT lets the
// kernel pick the source port at connect time, by the whole 4-tuple,
// instead of at bind time among the ports free on src alone.
func dialer(src netip.Addr) *net.Dialer {
	return &net.Dialer{
		Timeout:   ioTimeout,
		LocalAddr: &net.TCPAddr{IP: src.AsSlice()},
		Control: func(_, _ string, c syscall.RawConn) error {
			var serr error
			err := c.Control(func(fd uintptr) {
				serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_BIND_ADDRESS_NO_PORT, 1)
			})
			if err != nil {
				return err
			}
			return serr
		},
	}
}

// payload is what every echoing exchange sends and expects back.
const payload = "superd scale ping\n"

// exchange makes one connection to addr from src: sends payload, closes
// its write side, reads to EOF and checks that the reply is payload.
func exchange(src netip.Addr, addr string) error {
	c, err := dialer(src).Dial("tcp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(ioTimeout))
	if _, err := c.Write([]byte(payload)); err != nil {
		return fmt.Errorf("write: %w", err)
	}
	if err := c.(*net.TCPConn).CloseWrite(); err != nil {
		return fmt.Errorf("close write: %w", err)
	}
	// The reply is short: EOF ends it well before the buffer is full.
	var buf [256]byte
	n, err := io.ReadFull(c, buf[:])
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return fmt.Errorf("read: %w", err)
	}
	if string(buf[:n]) != payload {
		return fmt.Errorf("reply %q, want %q", buf[:n], payload)
	}
	return nil
}

// probe connects to addr and closes at once: it proves that something
// listens there.
func probe(src netip.Addr, addr string) error {
	c, err := dialer(src).Dial("tcp", addr)
	if err != nil {
		return err
	}
	return c.Close()
}

// probeUDP sends one datagram to a UDP echo at addr and waits for it to
// come back.
func probeUDP(src netip.Addr, addr string) error {
	c, err := net.DialUDP("udp", &net.UDPAddr{IP: src.AsSlice()}, net.UDPAddrFromAddrPort(netip.MustParseAddrPort(addr)))
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(ioTimeout))
	if _, err := c.Write([]byte(payload)); err != nil {
		return err
	}
	var buf [256]byte
	n, err := c.Read(buf[:])
	if err != nil {
		return err
	}
	if string(buf[:n]) != payload {
		return fmt.Errorf("reply %q, want %q", buf[:n], payload)
	}
	return nil
}

// loadResult is what a bounded client loop counted.
type loadResult struct {
	ok, failed, refused int
	elapsed             time.Duration
	firstErr            error
}

// rate is ok per second.
func (r loadResult) rate() float64 {
	if r.elapsed <= 0 {
		return 0
	}
	return float64(r.ok) / r.elapsed.Seconds()
}

// runLoad runs workers loops calling fn(worker) until max calls were
// made in all, dur is over, or stop is closed (nil: never), and counts
// the results; ECONNREFUSED is counted apart from other failures.
func runLoad(workers, max int, dur time.Duration, stop <-chan struct{}, fn func(worker int) error) loadResult {
	deadline := time.Now().Add(dur)
	var (
		next     atomic.Int64
		mu       sync.Mutex
		res      loadResult
		wg       sync.WaitGroup
		start    = time.Now()
		stopping = func() bool {
			select {
			case <-stop:
				return true
			default:
				return false
			}
		}
	)
	for w := range workers {
		wg.Go(func() {
			var ok, failed, refused int
			var first error
			for next.Add(1) <= int64(max) && time.Now().Before(deadline) && !stopping() {
				err := fn(w)
				switch {
				case err == nil:
					ok++
				case errors.Is(err, syscall.ECONNREFUSED):
					refused++
				default:
					failed++
				}
				if err != nil && first == nil {
					first = err
				}
			}
			mu.Lock()
			res.ok += ok
			res.failed += failed
			res.refused += refused
			if res.firstErr == nil {
				res.firstErr = first
			}
			mu.Unlock()
		})
	}
	wg.Wait()
	res.elapsed = time.Since(start)
	return res
}

// udpLoad runs workers ping-pong loops against a UDP echo at addr, each
// on its own socket: send a datagram, wait (at most timeout) for it to
// come back. It stops after max exchanges in all or after dur. A reply
// that does not come in time counts as failed (a datagram dropped on a
// full socket buffer, or by a reply limit).
func udpLoad(src *sources, workers, max int, dur, timeout time.Duration, addr string) (loadResult, error) {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		return loadResult{}, fmt.Errorf("udp address %q: %w", addr, err)
	}
	conns := make([]*net.UDPConn, workers)
	for i := range conns {
		c, err := net.DialUDP("udp", &net.UDPAddr{IP: src.next().AsSlice()}, net.UDPAddrFromAddrPort(ap))
		if err != nil {
			for _, c := range conns[:i] {
				c.Close()
			}
			return loadResult{}, fmt.Errorf("udp client socket: %w", err)
		}
		conns[i] = c
	}
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	seq := make([]uint64, workers) // each worker's own counter
	return runLoad(workers, max, dur, nil, func(w int) error {
		c := conns[w]
		seq[w]++
		var out, in [64]byte
		msg := binary.BigEndian.AppendUint64(out[:0], seq[w])
		msg = append(msg, "superd scale udp"...)
		c.SetDeadline(time.Now().Add(timeout))
		if _, err := c.Write(msg); err != nil {
			return err
		}
		for {
			n, err := c.Read(in[:])
			if err != nil {
				return err
			}
			// A late reply to an earlier datagram that timed out
			// carries an older number: skip it.
			if bytes.Equal(in[:n], msg) {
				return nil
			}
		}
	}), nil
}

// forEach calls fn(i) for i from 0 to n-1 on workers goroutines and
// counts the failures, keeping the first error.
func forEach(n, workers int, fn func(i int) error) (failed int, first error) {
	var (
		next atomic.Int64
		mu   sync.Mutex
		wg   sync.WaitGroup
	)
	for range min(workers, n) {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				if err := fn(i); err != nil {
					mu.Lock()
					failed++
					if first == nil {
						first = err
					}
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	return failed, first
}
