package socket

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"time"

	"github.com/pires/go-proxyproto"
	"golang.org/x/sys/unix"
)

// The PROXY protocol's limits: a v1 header is one line of at most 107
// bytes with its CRLF; a v2 header is a 16-byte prefix whose last two
// bytes are the length of what follows.
const (
	proxyV1Max    = 107
	proxyV2Prefix = 16
	proxyV2Max    = proxyV2Prefix + 0xffff
)

// proxyV2Sig is the 12 bytes a v2 header starts with.
var proxyV2Sig = []byte("\r\n\r\n\x00\r\nQUIT\n")

// ErrProxyHeader is the error of a connection whose PROXY header is
// missing, malformed or truncated; ReadProxyHeader wraps it.
var ErrProxyHeader = errors.New("socket: bad PROXY protocol header")

// ProxyHeader is what a load balancer's PROXY header says.
type ProxyHeader struct {
	// Local is true for a v2 LOCAL command (or a v1 UNKNOWN line): the
	// connection is the proxy's own, a health check, and the proxy is
	// the client. Source and Dest are then invalid.
	Local bool
	// Source is the real client; Dest is the address the client
	// connected to (the proxy's frontend).
	Source, Dest netip.AddrPort
	// Size is how many bytes the header took, all consumed.
	Size int
}

// proxyHeaderSize reports, from the first bytes b of a connection, how
// long its PROXY header is:
//
//	b a prefix of a header, its end not in b  → 0, nil (read more)
//	b holds the header's end                  → its length (≤ len(b) for v1), nil
//	b holds a v2 prefix                       → 16 + the length it states
//	b cannot start a header, or v1 too long   → 0, ErrProxyHeader
//
// It never asks for a byte past the header: the bytes that follow are
// the client's, read by the handler.
func proxyHeaderSize(b []byte) (int, error) {
	v1 := []byte("PROXY ")
	switch {
	case bytes.HasPrefix(b, v1) || (len(b) < len(v1) && bytes.HasPrefix(v1, b) && len(b) > 0):
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			if i+1 > proxyV1Max || i == 0 || b[i-1] != '\r' {
				return 0, fmt.Errorf("%w: v1 line does not end with CRLF within %d bytes", ErrProxyHeader, proxyV1Max)
			}
			return i + 1, nil
		}
		if len(b) >= proxyV1Max {
			return 0, fmt.Errorf("%w: v1 line longer than %d bytes", ErrProxyHeader, proxyV1Max)
		}
		return 0, nil
	case len(b) >= len(proxyV2Sig) && bytes.HasPrefix(b, proxyV2Sig) ||
		len(b) < len(proxyV2Sig) && bytes.HasPrefix(proxyV2Sig, b) && len(b) > 0:
		if len(b) < proxyV2Prefix {
			return 0, nil
		}
		return proxyV2Prefix + int(binary.BigEndian.Uint16(b[14:16])), nil
	case len(b) == 0:
		return 0, nil
	}
	return 0, fmt.Errorf("%w: the connection does not start with one", ErrProxyHeader)
}

// ReadProxyHeader reads the PROXY header (v1 or v2) at the start of fd, a
// blocking or non-blocking connected stream socket, and consumes exactly
// its bytes: what follows is left in the socket for the handler. It
// peeks before it reads, so an over-read cannot happen even when the
// client's first bytes came in the same segment. It gives up at
// deadline (an error wrapping os.ErrDeadlineExceeded), when ctx ends
// (its error, within proxyPollSlice), at end of stream
// or on a malformed header (wrapping ErrProxyHeader). It blocks the
// calling goroutine until then; the caller closes fd on error.
func ReadProxyHeader(ctx context.Context, fd int, deadline time.Time) (*ProxyHeader, error) {
	buf := make([]byte, 0, 256)
	peek := make([]byte, 256)
	for {
		size, err := proxyHeaderSize(buf)
		if err != nil {
			return nil, err
		}
		if size > 0 && len(buf) >= size {
			return parseProxyHeader(buf[:size])
		}
		if err := waitReadable(ctx, fd, deadline); err != nil {
			return nil, err
		}
		if size > 0 {
			// The length is known: reading exactly the rest is safe.
			buf = growTo(buf, size)
			n, err := recv(fd, buf[len(buf):size], 0)
			if err != nil {
				return nil, err
			}
			buf = buf[:len(buf)+n]
			continue
		}
		// Not known yet: peek, and read only what is surely header.
		n, err := recv(fd, peek, unix.MSG_PEEK)
		if err != nil {
			return nil, err
		}
		want := n // no end in sight: every byte peeked is header
		size, err = proxyHeaderSize(append(buf[:len(buf):len(buf)], peek[:n]...))
		switch {
		case err != nil:
			return nil, err
		case size > 0:
			want = min(n, size-len(buf))
		}
		buf = growTo(buf, len(buf)+want)
		got, err := recv(fd, buf[len(buf):len(buf)+want], 0)
		if err != nil {
			return nil, err
		}
		buf = buf[:len(buf)+got]
	}
}

// growTo makes sure b can hold n bytes.
func growTo(b []byte, n int) []byte {
	if cap(b) < n {
		nb := make([]byte, len(b), n)
		copy(nb, b)
		return nb
	}
	return b
}

// recv is one recvfrom that does not block; zero bytes is the end of the
// stream, a truncated header.
func recv(fd int, p []byte, flags int) (int, error) {
	for {
		n, _, err := unix.Recvfrom(fd, p, flags|unix.MSG_DONTWAIT)
		switch {
		case err == unix.EINTR:
			continue
		case err == unix.EAGAIN:
			return 0, nil // waitReadable raced with nothing: try again
		case err != nil:
			return 0, fmt.Errorf("reading the PROXY header: %w", os.NewSyscallError("recvfrom", err))
		case n == 0 && len(p) > 0:
			return 0, fmt.Errorf("%w: the connection ended within the header", ErrProxyHeader)
		}
		return n, nil
	}
}

// proxyPollSlice is how often a wait for a header looks at its context:
// a poll cannot wait for a channel, and a shutdown should not wait for
// every slow header's proxy_timeout.
const proxyPollSlice = 100 * time.Millisecond

// waitReadable waits until fd has bytes (or its end) to read, until
// deadline or until ctx ends.
func waitReadable(ctx context.Context, fd int, deadline time.Time) error {
	for {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("reading the PROXY header: %w", err)
		}
		left := time.Until(deadline)
		if left <= 0 {
			return fmt.Errorf("the PROXY header did not arrive in time: %w", os.ErrDeadlineExceeded)
		}
		ms := int(min(left, proxyPollSlice).Milliseconds() + 1)
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		n, err := unix.Poll(fds, ms)
		switch {
		case err == unix.EINTR:
			continue
		case err != nil:
			return os.NewSyscallError("poll", err)
		case n > 0:
			return nil
		}
	}
}

// parseProxyHeader decodes b, exactly one whole header.
func parseProxyHeader(b []byte) (*ProxyHeader, error) {
	h, err := proxyproto.Read(bufio.NewReaderSize(bytes.NewReader(b), max(16, len(b))))
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrProxyHeader, err)
	}
	ph := &ProxyHeader{Size: len(b), Local: h.Command.IsLocal()}
	if ph.Local {
		return ph, nil
	}
	src, dst, ok := h.TCPAddrs()
	if !ok {
		return nil, fmt.Errorf("%w: not a TCP connection (%v)", ErrProxyHeader, h.TransportProtocol)
	}
	s, d := src.AddrPort(), dst.AddrPort()
	ph.Source = netip.AddrPortFrom(s.Addr().Unmap(), s.Port())
	ph.Dest = netip.AddrPortFrom(d.Addr().Unmap(), d.Port())
	return ph, nil
}
