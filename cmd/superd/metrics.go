package main

import (
	"context"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/superd/superd/services/socket"
)

// The metrics server's limits. A scrape is a short GET: a client that
// takes longer than this to send its headers, or to read the answer, is
// not a Prometheus server.
const (
	metricsReadHeaderTimeout = 5 * time.Second
	metricsReadTimeout       = 10 * time.Second
	metricsWriteTimeout      = 30 * time.Second
	metricsIdleTimeout       = 2 * time.Minute
	metricsMaxHeaderBytes    = 16 << 10
	// metricsShutdown is how long a scrape under way at exit may take to
	// finish before its connection is cut.
	metricsShutdown = 2 * time.Second
)

// metricsServer serves the Prometheus metrics at /metrics on the
// address of [superd] metrics, and 404 on every other path. It owns its
// listening socket and the goroutine that serves it; Close ends both.
type metricsServer struct {
	srv  *http.Server
	ln   net.Listener
	addr net.Addr
	done chan struct{} // closed when the serving goroutine has returned
}

// serveMetrics serves h at /metrics on addr until Close: on inherited,
// the socket the old process of an upgrade passed, when it is bound to
// addr, else on a socket it binds. It closes inherited. The bind happens
// before it returns, so that a superd whose metrics address is taken
// fails at start, naming it.
func serveMetrics(addr string, inherited *os.File, h http.Handler, logger *slog.Logger) (*metricsServer, error) {
	ln := adoptMetrics(addr, inherited)
	if ln == nil {
		var err error
		if ln, err = net.Listen("tcp", addr); err != nil {
			return nil, fmt.Errorf("cannot serve the metrics on %s ([superd] metrics): %w", addr, err)
		}
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", h)
	m := &metricsServer{
		srv: &http.Server{
			Handler:           mux,
			ReadHeaderTimeout: metricsReadHeaderTimeout,
			ReadTimeout:       metricsReadTimeout,
			WriteTimeout:      metricsWriteTimeout,
			IdleTimeout:       metricsIdleTimeout,
			MaxHeaderBytes:    metricsMaxHeaderBytes,
			ErrorLog:          log.New(httpErrors{logger}, "", 0),
		},
		ln:   ln,
		addr: ln.Addr(),
		done: make(chan struct{}),
	}
	go func() {
		defer close(m.done)
		// Serve closes ln when it returns.
		if err := m.srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			logger.Error("metrics_failed", "addr", m.addr.String(), "err", err)
		}
	}()
	logger.Info("metrics_listening", "addr", m.addr.String(), "path", "/metrics")
	return m, nil
}

// adoptMetrics returns a listener on f when f is a TCP socket bound to
// addr (port 0 in addr: any port), nil otherwise. It closes f.
func adoptMetrics(addr string, f *os.File) net.Listener {
	if f == nil {
		return nil
	}
	defer f.Close()
	ln, err := net.FileListener(f)
	if err != nil {
		return nil
	}
	want, err := net.ResolveTCPAddr("tcp", addr)
	got, ok := ln.Addr().(*net.TCPAddr)
	if err != nil || !ok || !got.IP.Equal(want.IP) && !(got.IP.IsUnspecified() && want.IP == nil) || want.Port != 0 && want.Port != got.Port {
		ln.Close()
		return nil
	}
	return ln
}

// File returns a close-on-exec duplicate of the metrics socket, named
// metricsFDName, for the new process of an upgrade; the caller closes
// it.
func (m *metricsServer) File() (*os.File, error) {
	sc, ok := m.ln.(syscall.Conn)
	if !ok {
		return nil, errors.New("the metrics socket cannot be duplicated")
	}
	return socket.DupConn(sc, metricsFDName)
}

// Close stops serving: it lets a scrape under way finish for a moment,
// closes the socket and every connection, and waits for the serving
// goroutine.
func (m *metricsServer) Close() {
	ctx, cancel := context.WithTimeout(context.Background(), metricsShutdown)
	defer cancel()
	if err := m.srv.Shutdown(ctx); err != nil {
		m.srv.Close()
	}
	<-m.done
}

// httpErrors turns net/http's error lines (a client that sent garbage,
// say) into log events of their own.
type httpErrors struct{ log *slog.Logger }

func (h httpErrors) Write(p []byte) (int, error) {
	h.log.Warn("metrics_http_error", "err", strings.TrimSpace(string(p)))
	return len(p), nil
}
