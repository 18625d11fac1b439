package services

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/superd/superd/config"
	"github.com/superd/superd/services/builtin"
)

// builtinReplyRate bounds the answers a datagram built-in sends per
// second when the service sets no rate, so that superd cannot be used to
// amplify a spoofed flood.
const builtinReplyRate = 100

// serveBuiltinStream accepts connections and serves each with the
// built-in in a goroutine of its own. When Serve ends it closes the
// connections still open and waits for their goroutines.
func (s *Service) serveBuiltinStream(ctx context.Context) error {
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		conns = make(map[net.Conn]struct{})
		delay time.Duration
	)
	defer func() {
		mu.Lock()
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	}()
	for s.admit(ctx) {
		c, err := s.sock.ln.Accept()
		if err != nil {
			s.adm.slots.release()
			if s.acceptError(ctx, err, &delay) {
				return nil
			}
			continue
		}
		delay = 0
		s.short.over()
		sp := s.spec.Load()
		release, ok := s.checkConn(sp, c)
		if !ok {
			c.Close()
			continue
		}
		if t := sp.svc.Limits.Timeout; t > 0 {
			// No process to signal: the deadline ends the connection.
			c.SetDeadline(time.Now().Add(t))
		}
		mu.Lock()
		conns[c] = struct{}{}
		mu.Unlock()
		wg.Add(1)
		s.adm.active.Add(1)
		go func() {
			defer wg.Done()
			defer s.adm.active.Add(-1)
			builtin.ServeStream(sp.svc.Builtin, c)
			mu.Lock()
			delete(conns, c)
			mu.Unlock()
			c.Close()
			release()
		}()
	}
	return nil
}

// checkConn applies check to a connection accepted by package net.
func (s *Service) checkConn(sp *spec, c net.Conn) (func(), bool) {
	p := &peer{proto: "UNIX"}
	if a, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		ap := a.AddrPort()
		p = &peer{proto: "TCP", remote: netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())}
	}
	return s.check(sp, p)
}

// serveBuiltinPacket answers datagrams until ctx is done or the socket
// is closed. Update interrupts it, so that a reload's settings (another
// built-in, rate, access lists) take effect at once.
func (s *Service) serveBuiltinPacket(ctx context.Context) error {
	for {
		sp := s.spec.Load()
		p, err := builtin.NewPacket(sp.svc.Builtin, replyLimiter(sp.svc.Limits.Rate))
		if err != nil {
			return err
		}
		var pc net.PacketConn = s.sock.pc
		if !sp.svc.Access.Empty() {
			pc = &accessPacketConn{PacketConn: pc, s: s, access: sp.svc.Access}
		}
		err = p.Serve(pc)
		if err == nil || ctx.Err() != nil || s.sock.closed.Load() {
			return nil
		}
		if errors.Is(err, os.ErrDeadlineExceeded) {
			s.sock.clearInterrupt()
			if ctx.Err() != nil {
				return nil
			}
			continue
		}
		s.log.Error("read_failed", "err", err)
		if !sleep(ctx, time.Second) {
			return nil
		}
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

// accessPacketConn drops datagrams from senders the access lists refuse,
// before a built-in sees them.
type accessPacketConn struct {
	net.PacketConn
	s      *Service
	access config.Access
}

func (c *accessPacketConn) ReadFrom(b []byte) (int, net.Addr, error) {
	for {
		n, addr, err := c.PacketConn.ReadFrom(b)
		if err != nil {
			return n, addr, err
		}
		ua, ok := addr.(*net.UDPAddr)
		if !ok || c.access.Allowed(ua.AddrPort().Addr().Unmap()) {
			return n, addr, nil
		}
		c.s.adm.denials.log(c.s.log, "access", addr.String())
	}
}
