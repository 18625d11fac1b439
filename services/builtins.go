package services

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"sync"
	"syscall"
	"time"

	"golang.org/x/time/rate"

	"github.com/superd/superd/internal/metrics"
	"github.com/superd/superd/services/admit"
	"github.com/superd/superd/services/builtin"
	"github.com/superd/superd/services/socket"
)

// serveBuiltinStream accepts connections and serves each with the
// built-in in force at its accept, in a goroutine of its own. When ep
// ends (a mode change, or Close) it closes the connections still open
// and waits for their goroutines: built-in connections end with their
// mode. When only its loop ends (Drain) it waits for them to end by
// themselves, or until ep ends after all.
func (l *Listener) serveBuiltinStream(ep *epoch) {
	ctx := ep.ctx
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		conns = make(map[net.Conn]struct{})
		delay time.Duration
	)
	closeAll := func() {
		mu.Lock()
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
	}
	// A Close after Drain, while this waits for the connections.
	stopClosing := context.AfterFunc(ep.conns, closeAll)
	defer func() {
		if ep.conns.Err() != nil {
			closeAll() // also those added after the AfterFunc ran
		}
		wg.Wait()
		stopClosing()
	}()
	for l.adm.Acquire(ctx, ep.cur.Load().metrics) {
		c, err := l.sock.Listener().Accept()
		if err != nil {
			l.adm.Return()
			if l.acceptError(ep, err, &delay) {
				return
			}
			continue
		}
		delay = 0
		l.short.over()
		st := ep.cur.Load()
		m := st.metrics
		m.Accepted()
		client := connClient(c)
		if px := st.svc.Proxy; px.Enabled {
			if !px.Trusted(client.Addr) {
				c.Close()
				l.adm.Refuse("proxy", client.Remote, metrics.RefusedProxy, st.log, m)
				continue
			}
		}
		mu.Lock()
		conns[c] = struct{}{}
		mu.Unlock()
		wg.Add(1)
		go func() {
			defer wg.Done()
			l.serveBuiltinConn(ep, st, c, client)
			mu.Lock()
			delete(conns, c)
			mu.Unlock()
			c.Close()
		}()
	}
}

// serveBuiltinConn reads the PROXY header of c when st's service wants
// one, runs the checks on the client and serves c with st's built-in.
// It holds the slot Acquire took and gives it back; the caller closes c.
func (l *Listener) serveBuiltinConn(ep *epoch, st *settings, c net.Conn, client admit.Client) {
	m := st.metrics
	if px := st.svc.Proxy; px.Enabled {
		real, err := readConnProxy(ep.conns, c, px.Timeout)
		if err != nil {
			l.adm.Refuse("proxy", client.Remote, metrics.RefusedProxy, st.log, m)
			st.log.Debug("proxy_refused", "remote", client.Remote, "err", err)
			return
		}
		client = real
	}
	release, ok := l.adm.Check(st.svc, client, st.log, m)
	if !ok {
		return
	}
	m.Opened()
	if t := st.svc.Limits.Timeout; t > 0 {
		// No process to signal: the deadline ends the connection.
		c.SetDeadline(time.Now().Add(t))
	}
	buf := l.bufs.Get().(*[builtin.StreamBufferSize]byte)
	builtin.ServeStreamBuffer(st.svc.Builtin, c, buf[:])
	l.bufs.Put(buf)
	release()
	m.Closed()
}

// readConnProxy reads the PROXY header at the start of c, within
// timeout, and returns the client it names (the proxy itself for a
// LOCAL header), as logged "client via proxy".
func readConnProxy(ctx context.Context, c net.Conn, timeout time.Duration) (admit.Client, error) {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return admit.Client{}, errors.New("not a socket")
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return admit.Client{}, err
	}
	var h *socket.ProxyHeader
	var herr error
	// Control keeps the descriptor open meanwhile; ReadProxyHeader
	// waits with poll, not with Go's poller.
	if err := rc.Control(func(fd uintptr) {
		h, herr = socket.ReadProxyHeader(ctx, int(fd), time.Now().Add(timeout))
	}); err != nil {
		return admit.Client{}, err
	}
	if herr != nil {
		return admit.Client{}, herr
	}
	proxy := connClient(c)
	p := (&socket.Peer{Proto: "TCP", Remote: netip.AddrPortFrom(proxy.Addr, connPort(c))}).Behind(h)
	return admit.Client{Addr: p.Remote.Addr(), Remote: p.String()}, nil
}

// connPort is the remote port of c, a TCP connection.
func connPort(c net.Conn) uint16 {
	if a, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		return uint16(a.Port)
	}
	return 0
}

// connClient is the client of a connection accepted by package net.
func connClient(c net.Conn) admit.Client {
	a, ok := c.RemoteAddr().(*net.TCPAddr)
	if !ok {
		return admit.Client{Unix: true, Remote: "unix"}
	}
	ap := a.AddrPort()
	ap = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	return admit.Client{Addr: ap.Addr(), Remote: ap.String()}
}

// serveBuiltinPacket answers datagrams until ep ends (a mode change, or
// Close). Each datagram is judged and answered by the latest settings of
// ep once it has arrived: an Update (another built-in, rate, access
// lists) applies to the next datagram, even while a read is under way.
func (l *Listener) serveBuiltinPacket(ep *epoch) {
	ctx := ep.ctx
	line := 0 // chargen's position, see builtin.Packet.Answer
	for {
		// The datagram buffer is taken only once a datagram is there, so
		// that an idle datagram built-in holds no 64 KiB of its own.
		err := l.sock.WaitReadable()
		var n int
		var addr net.Addr
		var buf *[builtin.PacketBufSize]byte
		if err == nil {
			buf = l.packetBufs.Get().(*[builtin.PacketBufSize]byte)
			n, addr, err = l.sock.PacketConn().ReadFrom(buf[:])
		}
		if err != nil {
			if buf != nil {
				l.packetBufs.Put(buf)
			}
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) || errors.Is(err, os.ErrDeadlineExceeded) || l.sock.Closed() {
				return
			}
			ep.cur.Load().log.Error("read_failed", "err", err)
			if !sleep(ctx, time.Second) {
				return
			}
			continue
		}
		st := ep.cur.Load()
		st.metrics.Datagram()
		if ua, ok := addr.(*net.UDPAddr); !ok || st.svc.Access.Empty() ||
			l.adm.AllowDatagram(st.svc.Access, ua.AddrPort().Addr().Unmap(), addr.String(), st.log, st.metrics) {
			st.packet.Answer(l.sock.PacketConn(), buf[:n], addr, &line)
		}
		l.packetBufs.Put(buf)
	}
}

// replyLimiter bounds a datagram built-in's answers: the service's rate,
// or builtinReplyRate.
func replyLimiter(r float64) *rate.Limiter {
	if r > 0 {
		return rate.NewLimiter(rate.Limit(r), int(max(1, r)))
	}
	return rate.NewLimiter(builtinReplyRate, builtinReplyRate)
}
