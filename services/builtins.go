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
			s.slots.release()
			if s.acceptError(ctx, err, &delay) {
				return nil
			}
			continue
		}
		delay = 0
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
		go func() {
			defer wg.Done()
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
// is closed.
func (s *Service) serveBuiltinPacket(ctx context.Context) error {
	sp := s.spec.Load()
	replies := rate.NewLimiter(builtinReplyRate, builtinReplyRate)
	if r := sp.svc.Limits.Rate; r > 0 {
		replies = rate.NewLimiter(rate.Limit(r), int(max(1, r)))
	}
	p, err := builtin.NewPacket(sp.svc.Builtin, replies)
	if err != nil {
		return err
	}
	for {
		err := p.Serve(s.sock.pc)
		if err == nil || ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
			return nil
		}
		if errors.Is(err, os.ErrDeadlineExceeded) {
			s.sock.clearInterrupt()
			continue
		}
		s.log.Error("read failed", "err", err)
		if !sleep(ctx, time.Second) {
			return nil
		}
	}
}
