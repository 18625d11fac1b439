package socket

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/pires/go-proxyproto"
	"golang.org/x/sys/unix"
)

// streamPair is a connected pair of stream sockets, closed at cleanup:
// r for ReadProxyHeader, w for the proxy's side.
func streamPair(t testing.TB) (r, w int) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fds[0]); unix.Close(fds[1]) })
	return fds[0], fds[1]
}

// rest reads what is left in fd once its peer has shut down writing.
func rest(t testing.TB, fd int) []byte {
	t.Helper()
	var out []byte
	buf := make([]byte, 4096)
	for {
		n, err := unix.Read(fd, buf)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			t.Fatalf("reading the rest: %v", err)
		}
		if n == 0 {
			return out
		}
		out = append(out, buf[:n]...)
	}
}

func header(t testing.TB, version byte, cmd proxyproto.ProtocolVersionAndCommand, src, dst string, tlvs ...proxyproto.TLV) []byte {
	t.Helper()
	s, d := net.TCPAddrFromAddrPort(netip.MustParseAddrPort(src)), net.TCPAddrFromAddrPort(netip.MustParseAddrPort(dst))
	h := proxyproto.HeaderProxyFromAddrs(version, s, d)
	h.Command = cmd
	if len(tlvs) > 0 {
		if err := h.SetTLVs(tlvs); err != nil {
			t.Fatal(err)
		}
	}
	b, err := h.Format()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestReadProxyHeader sends each header with the client's first bytes in
// the same write, and checks that exactly the header was consumed.
func TestReadProxyHeader(t *testing.T) {
	const src, dst = "192.0.2.7:5000", "198.51.100.1:443"
	tests := []struct {
		name  string
		hdr   []byte
		local bool
		src   string
	}{
		{"v1 tcp4", header(t, 1, proxyproto.PROXY, src, dst), false, src},
		{"v1 tcp6", header(t, 1, proxyproto.PROXY, "[2001:db8::7]:5000", "[2001:db8::1]:443"), false, "[2001:db8::7]:5000"},
		{"v1 unknown", []byte("PROXY UNKNOWN\r\n"), true, ""},
		{"v2 tcp4", header(t, 2, proxyproto.PROXY, src, dst), false, src},
		{"v2 tcp6", header(t, 2, proxyproto.PROXY, "[2001:db8::7]:5000", "[2001:db8::1]:443"), false, "[2001:db8::7]:5000"},
		{"v2 tlv", header(t, 2, proxyproto.PROXY, src, dst, proxyproto.TLV{Type: proxyproto.PP2_TYPE_UNIQUE_ID, Value: bytes.Repeat([]byte("u"), 300)}), false, src},
		{"v2 local", header(t, 2, proxyproto.LOCAL, src, dst), true, ""},
	}
	for _, tt := range tests {
		for _, first := range []string{"", "hello\r\n", "PROXY TCP4 1.2.3.4 1.2.3.4 1 1\r\n", "\r\n\r\n\x00\r\nQUIT\n!!"} {
			r, w := streamPair(t)
			if _, err := unix.Write(w, append(append([]byte{}, tt.hdr...), first...)); err != nil {
				t.Fatal(err)
			}
			unix.Shutdown(w, unix.SHUT_WR)
			h, err := ReadProxyHeader(context.Background(), r, time.Now().Add(time.Minute))
			if err != nil {
				t.Fatalf("%s, then %q: %v", tt.name, first, err)
			}
			if h.Size != len(tt.hdr) || h.Local != tt.local {
				t.Errorf("%s: Size %d Local %v, want %d %v", tt.name, h.Size, h.Local, len(tt.hdr), tt.local)
			}
			if !tt.local && h.Source != netip.MustParseAddrPort(tt.src) {
				t.Errorf("%s: Source %v, want %v", tt.name, h.Source, tt.src)
			}
			if got := string(rest(t, r)); got != first {
				t.Errorf("%s: the handler would read %q, want %q (the client's first bytes)", tt.name, got, first)
			}
		}
	}
}

// TestReadProxyHeaderPieces delivers a header one byte at a time: the
// reader waits for each, and still leaves the client's bytes.
func TestReadProxyHeaderPieces(t *testing.T) {
	for _, hdr := range [][]byte{
		header(t, 1, proxyproto.PROXY, "192.0.2.7:5000", "198.51.100.1:443"),
		header(t, 2, proxyproto.PROXY, "192.0.2.7:5000", "198.51.100.1:443"),
	} {
		r, w := streamPair(t)
		msg := append(append([]byte{}, hdr...), "data"...)
		done := make(chan error, 1)
		go func() {
			for i := range msg {
				if _, err := unix.Write(w, msg[i:i+1]); err != nil {
					done <- err
					return
				}
			}
			done <- unix.Shutdown(w, unix.SHUT_WR)
		}()
		h, err := ReadProxyHeader(context.Background(), r, time.Now().Add(time.Minute))
		if werr := <-done; werr != nil {
			t.Fatal(werr)
		}
		if err != nil {
			t.Fatalf("header %q: %v", hdr, err)
		}
		if h.Source.String() != "192.0.2.7:5000" {
			t.Errorf("Source %v", h.Source)
		}
		if got := string(rest(t, r)); got != "data" {
			t.Errorf("left %q, want data", got)
		}
	}
}

// TestReadProxyHeaderRefused covers the headers that must be refused.
func TestReadProxyHeaderRefused(t *testing.T) {
	v2 := header(t, 2, proxyproto.PROXY, "192.0.2.7:5000", "198.51.100.1:443")
	tests := []struct {
		name string
		send []byte
		want error
	}{
		{"no header", []byte("GET / HTTP/1.0\r\n\r\n"), ErrProxyHeader},
		{"v1 without CR", []byte("PROXY TCP4 192.0.2.7 198.51.100.1 5000 443\n"), ErrProxyHeader},
		{"v1 too long", append([]byte("PROXY "), bytes.Repeat([]byte("1"), 200)...), ErrProxyHeader},
		{"v1 garbage", []byte("PROXY TCP4 nothing here\r\n"), ErrProxyHeader},
		{"v1 truncated", []byte("PROXY TCP4 192.0.2.7"), ErrProxyHeader},
		{"v2 truncated", v2[:20], ErrProxyHeader},
		{"v2 bad version", append(append([]byte{}, v2[:12]...), 0x31, 0x11, 0, 12), ErrProxyHeader},
		{"empty", nil, ErrProxyHeader},
	}
	for _, tt := range tests {
		r, w := streamPair(t)
		unix.Write(w, tt.send)
		unix.Shutdown(w, unix.SHUT_WR)
		_, err := ReadProxyHeader(context.Background(), r, time.Now().Add(time.Minute))
		if !errors.Is(err, tt.want) {
			t.Errorf("%s: error %v, want %v", tt.name, err, tt.want)
		}
	}
	// Late: nothing comes before the deadline.
	r, w := streamPair(t)
	unix.Write(w, []byte("PROXY "))
	if _, err := ReadProxyHeader(context.Background(), r, time.Now().Add(20*time.Millisecond)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("late header: error %v, want a deadline error", err)
	}
	// A context that ends stops the wait.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := ReadProxyHeader(ctx, r, time.Now().Add(time.Hour)); !errors.Is(err, context.Canceled) {
		t.Errorf("ended context: error %v, want context.Canceled", err)
	}
}

// FuzzProxyHeader: whatever a peer sends, ReadProxyHeader does not panic,
// and a header it accepts is exactly the bytes it consumed: the rest of
// the input is still in the socket.
func FuzzProxyHeader(f *testing.F) {
	f.Add(header(f, 1, proxyproto.PROXY, "192.0.2.7:5000", "198.51.100.1:443"))
	f.Add(append(header(f, 2, proxyproto.PROXY, "192.0.2.7:5000", "198.51.100.1:443"), "hi"...))
	f.Add(header(f, 2, proxyproto.LOCAL, "192.0.2.7:5000", "198.51.100.1:443"))
	f.Add([]byte("PROXY UNKNOWN\r\nPROXY UNKNOWN\r\n"))
	f.Add([]byte("\r\n\r\n\x00\r\nQUIT\n\x21\x11\x00\x00"))
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 8192 {
			return // more than the socket pair holds without a reader
		}
		r, w := streamPair(t)
		if len(data) > 0 {
			if _, err := unix.Write(w, data); err != nil {
				t.Fatal(err)
			}
		}
		unix.Shutdown(w, unix.SHUT_WR)
		h, err := ReadProxyHeader(context.Background(), r, time.Now().Add(time.Minute))
		if err != nil {
			return
		}
		if h.Size <= 0 || h.Size > len(data) {
			t.Fatalf("Size %d of %d bytes", h.Size, len(data))
		}
		if got := rest(t, r); !bytes.Equal(got, data[h.Size:]) {
			t.Fatalf("consumed %d bytes, header %d: left %q, want %q", len(data)-len(got), h.Size, got, data[h.Size:])
		}
	})
}
