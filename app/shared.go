package app

import (
	"context"
	"net/netip"

	"github.com/ztunnel-go/ztunnel/inpod"
	"github.com/ztunnel-go/ztunnel/proxy"
	"github.com/ztunnel-go/ztunnel/tls/identity"
)

// readyInpod is the readiness task of shared mode: pending until the node agent's snapshot is
// complete and every pod of it is served, and again after each reconnect until the next one.
const readyInpod = "inpod snapshot"

// sharedMode is PROXY_MODE=shared: one ZDS client and one proxy per pod of the node.
type sharedMode struct {
	client *inpod.Client
	// notReady marks readyInpod done; nil while ready. Owned by the client's Run goroutine
	// (the Ready callback), set first by newShared before that goroutine exists.
	notReady func()
	// released is set once the first complete snapshot has been served and start-up memory
	// released (footprint.go). Owned like notReady.
	released bool
}

// newShared prepares shared mode from the proxy settings every pod proxy shares.
func (a *App) newShared(base proxy.Config) error {
	base.Self = identity.ID{} // per pod, set by PodProxies
	if !a.cfg.IPv6Enabled {
		base.ListenIP = netip.IPv4Unspecified()
	} else if !base.ListenIP.IsValid() {
		base.ListenIP = netip.IPv6Unspecified()
	}
	base.Socket.ReusePort = a.cfg.InPod.PortReuse
	// Pod sockets need CAP_NET_ADMIN anyway (setns); transparent inbound connections too.
	base.Socket.Transparent = true
	m, err := inpod.NewMetrics(a.metrics.Registerer())
	if err != nil {
		return err
	}
	s := &sharedMode{notReady: a.ready.Register(readyInpod)}
	c, err := inpod.NewClient(inpod.Config{
		Path:    a.cfg.InPod.UDS,
		Factory: &inpod.PodProxies{Base: base, TrustDomain: a.cfg.TrustDomain, DNS: a.podDNS(base.Socket)},
		Ready: func(ok bool) {
			switch {
			case ok && s.notReady != nil:
				s.notReady()
				s.notReady = nil
				if !s.released {
					s.released = true
					releaseStartupMemory(a.log) // footprint.go
				}
			case !ok && s.notReady == nil:
				s.notReady = a.ready.Register(readyInpod)
			}
		},
		Metrics: m,
		Logger:  a.out.Logger("ztunnel::inpod"),
	})
	if err != nil {
		return err
	}
	s.client = c
	a.shared = s
	return nil
}

// runShared runs the ZDS client until ctx ends or /quitquitquit, then drains every pod proxy
// and stops Run's background work (cancelRun) so that Run can return.
func (a *App) runShared(ctx context.Context, cancelRun context.CancelFunc) error {
	defer cancelRun()
	cctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.shared.client.Run(cctx) }() // waited for below
	a.log.Info("ztunnel started", "mode", a.cfg.Mode.String(), "inpod_uds", a.cfg.InPod.UDS)
	select {
	case <-ctx.Done():
		a.log.Info("received termination signal, draining")
	case <-a.quit:
		a.log.Info("received /quitquitquit, draining")
	case err := <-done:
		stop()
		return err
	}
	stop()
	err := <-done
	a.log.Info("shutdown complete")
	return err
}
