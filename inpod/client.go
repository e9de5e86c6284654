package inpod

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"time"
)

// Config configures a Client. Fields are read once by NewClient.
type Config struct {
	// Path is istio-cni's socket (INPOD_UDS); required.
	Path string
	// Factory starts pod proxies; required.
	Factory ProxyFactory
	// Ready, when set, is called from Run's goroutine each time readiness changes: true once a
	// complete snapshot is in and every pod of it is served, false on disconnect or while a pod
	// is pending. It starts false (and is not called for that initial state).
	Ready func(bool)
	// MinBackoff and MaxBackoff bound the reconnect delay; zero means 10 ms and 15 s.
	MinBackoff, MaxBackoff time.Duration
	// RetryInterval is how often pods that failed to start are retried; zero means 5 s.
	RetryInterval time.Duration
	// Metrics, when set, receives the workload manager's gauges and counters.
	Metrics *Metrics
	Logger  *slog.Logger
}

// Client is ztunnel's end of ZDS. It is used by one Run call.
type Client struct {
	cfg   Config // immutable after NewClient
	log   *slog.Logger
	state *state // owned by Run's goroutine
	ready bool   // last value reported through cfg.Ready; owned by Run's goroutine
}

// NewClient validates cfg; it opens nothing.
func NewClient(cfg Config) (*Client, error) {
	if cfg.Path == "" || cfg.Factory == nil {
		return nil, errors.New("inpod: Path and Factory are required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.MinBackoff == 0 {
		cfg.MinBackoff = 10 * time.Millisecond
	}
	if cfg.MaxBackoff == 0 {
		cfg.MaxBackoff = 15 * time.Second
	}
	if cfg.RetryInterval == 0 {
		cfg.RetryInterval = 5 * time.Second
	}
	return &Client{cfg: cfg, log: cfg.Logger, state: newState(cfg.Factory, cfg.Logger, cfg.Metrics)}, nil
}

// Pods returns the pods the client knows, by UID, for /config_dump, each running pod with the
// connections its proxy relays now. Safe for concurrent use.
func (c *Client) Pods() map[string]PodStatus {
	m := c.state.status.Load()
	if m == nil {
		return map[string]PodStatus{}
	}
	out := make(map[string]PodStatus, len(*m))
	for uid, st := range *m {
		if st.conns != nil {
			conns := st.conns()
			st.Connections = &conns
		}
		out[uid] = st
	}
	return out
}

// Run connects to the node agent and serves its requests, reconnecting with exponential
// backoff, until ctx ends. It then drains every pod proxy and returns once they are all gone.
// Pod proxies keep serving across reconnects.
func (c *Client) Run(ctx context.Context) error {
	defer c.state.shutdown()
	backoff := c.cfg.MinBackoff
	for {
		uc, err := dialZDS(ctx, c.cfg.Path)
		if err == nil {
			c.log.Info("connected to the node agent", "path", c.cfg.Path)
			var synced bool
			synced, err = c.serve(ctx, uc)
			uc.Close()
			c.setReady(false)
			if ctx.Err() != nil {
				return nil
			}
			if synced {
				backoff = c.cfg.MinBackoff
			}
			switch {
			case errors.Is(err, io.EOF):
				c.log.Info("the node agent closed the connection; reconnecting")
			default:
				c.log.Warn("connection to the node agent ended; reconnecting", "err", err, "retry_in", backoff)
			}
		} else {
			if ctx.Err() != nil {
				return nil
			}
			c.log.Warn("cannot connect to the node agent, is istio-cni healthy?", "path", c.cfg.Path, "err", err, "retry_in", backoff)
		}
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
		backoff = min(2*backoff, c.cfg.MaxBackoff)
	}
}

func (c *Client) setReady(v bool) {
	if v == c.ready {
		return
	}
	c.ready = v
	if c.cfg.Ready != nil {
		c.cfg.Ready(v)
	}
}

// decodeError is a datagram that could not be understood.
type decodeError struct{ err error }

func (e *decodeError) Error() string { return e.err.Error() }
func (e *decodeError) Unwrap() error { return e.err }

// serve runs one connection: hello, then requests until an error. synced reports whether a
// complete snapshot arrived on it.
func (c *Client) serve(ctx context.Context, uc *net.UnixConn) (synced bool, err error) {
	stop := context.AfterFunc(ctx, func() { uc.SetReadDeadline(time.Unix(1, 0)) })
	defer stop()
	c.state.resetSnapshot()
	if _, err := uc.Write(encodeHello()); err != nil {
		return false, fmt.Errorf("inpod: send hello: %w", err)
	}
	var buf [maxDatagram]byte
	oob := make([]byte, oobSize)
	var nextRetry time.Time // zero: no retry scheduled
	for {
		uc.SetReadDeadline(nextRetry)
		if ctx.Err() != nil {
			return c.state.snapshotDone, ctx.Err()
		}
		req, err := readRequest(uc, buf[:], oob)
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				if ctx.Err() != nil {
					return c.state.snapshotDone, ctx.Err()
				}
				c.state.retryPending(ctx)
				nextRetry = time.Time{}
				if len(c.state.pending) > 0 {
					nextRetry = time.Now().Add(c.cfg.RetryInterval)
				}
				c.setReady(c.state.ready())
				continue
			}
			var netErr net.Error
			if errors.Is(err, io.EOF) || errors.As(err, &netErr) || errors.Is(err, net.ErrClosed) {
				return c.state.snapshotDone, err
			}
			// A datagram we cannot understand: say why, then start over on a new connection.
			c.log.Error("malformed request from the node agent", "err", err)
			c.send(uc, err)
			return c.state.snapshotDone, &decodeError{err}
		}
		herr := c.state.handle(ctx, req)
		var pe *podError
		switch {
		case herr == nil:
			c.send(uc, nil)
		case errors.As(herr, &pe):
			c.log.Error("failed to start the pod proxy; will retry", "uid", pe.uid, "err", pe.err,
				"retry_in", c.cfg.RetryInterval)
			if nextRetry.IsZero() && len(c.state.pending) > 0 {
				nextRetry = time.Now().Add(c.cfg.RetryInterval)
			}
			c.send(uc, herr)
		default:
			c.log.Error("protocol error from the node agent", "err", herr)
			c.send(uc, herr)
			return c.state.snapshotDone, herr
		}
		c.setReady(c.state.ready())
	}
}

// send answers the last request: an ACK, or a NACK carrying err's text.
func (c *Client) send(uc *net.UnixConn, err error) {
	if _, werr := uc.Write(encodeAck(err)); werr != nil {
		c.log.Debug("cannot answer the node agent", "err", werr)
	}
}
