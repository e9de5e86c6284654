package app

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/ztunnel-go/ztunnel/netutil"
)

// httpParkAfter is how long an admin, stats or readiness listener's accept loop waits for the
// next connection before it gives its goroutine up (netutil.IdleLoop). Prometheus scrapes and
// kubelet probes come seconds apart, so between them the four listeners hold no goroutine.
const httpParkAfter = time.Second

// errQuietPeriod ends one http.Server.Serve call when its listener was quiet for a period. It
// is not a net.Error: Serve retries an accept error that says it is temporary, as the
// deadline's own error does, and returns any other.
var errQuietPeriod = fmt.Errorf("listener quiet: %w", os.ErrDeadlineExceeded)

// httpServer is one HTTP listener served by srv, one Serve call per period of loop.
type httpServer struct {
	srv  *http.Server
	l    *net.TCPListener
	loop *netutil.IdleLoop
}

// startHTTP serves l with srv until close; the loop parks after quiet periods of parkAfter.
func startHTTP(srv *http.Server, l *net.TCPListener, parkAfter time.Duration) (*httpServer, error) {
	s := &httpServer{srv: srv, l: l}
	var err error
	s.loop, err = netutil.NewIdleLoop(l, l.SetDeadline, parkAfter, func() error {
		return srv.Serve(periodListener{s})
	})
	if err != nil {
		return nil, err
	}
	s.loop.Start()
	return s, nil
}

// close stops accepting, waits for the current Serve call to return, then closes the
// connections srv serves.
func (s *httpServer) close() {
	s.loop.Close(s.l.Close)
	s.srv.Close()
}

// periodListener is the listener of one Serve call. Its Close does nothing: Serve closes its
// listener when it returns, and the listener lives on to the next period; httpServer.close
// closes it for good.
type periodListener struct{ s *httpServer }

func (p periodListener) Accept() (net.Conn, error) {
	c, err := p.s.l.Accept()
	if err != nil {
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return nil, errQuietPeriod
		}
		return nil, err
	}
	p.s.loop.Active()
	return c, nil
}

func (p periodListener) Close() error   { return nil }
func (p periodListener) Addr() net.Addr { return p.s.l.Addr() }
