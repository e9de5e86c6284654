package app

import (
	"context"
	"fmt"
	"log/slog"
	"sync"

	"google.golang.org/grpc"

	"github.com/ztunnel-go/ztunnel/config"
	"github.com/ztunnel-go/ztunnel/tls/caclient"
	"github.com/ztunnel-go/ztunnel/tls/identity"
	"github.com/ztunnel-go/ztunnel/workload"
	"github.com/ztunnel-go/ztunnel/xds"
)

// readyXDS is the readiness task pending until both xDS types are acknowledged.
const readyXDS = "xds"

// controlPlane holds the istiod clients. Set by New, then owned by Run.
type controlPlane struct {
	xdsConn *grpc.ClientConn // nil without XDS_ADDRESS
	xds     *xds.Client      // nil without XDS_ADDRESS
	ca      *caclient.Client // nil unless CA_ADDRESS is the signer
}

// controlPlaneMark is the SO_MARK of the sockets to istiod: PACKET_MARK in
// dedicated mode, where ztunnel runs inside the pod's network namespace and must
// not be captured by the pod's own redirection; none in shared mode.
func controlPlaneMark(cfg *config.Config) uint32 {
	if cfg.Mode == config.ModeDedicated {
		return cfg.PacketMark
	}
	return 0
}

// newCASigner is the istiod CA client (CA_ADDRESS). In shared mode it asks for
// the pods' identities by impersonation.
func newCASigner(cfg *config.Config, log *slog.Logger) (*caclient.Client, error) {
	c, err := caclient.New(caclient.DialConfig{
		Address:     cfg.CA.Address,
		RootCert:    cfg.CA.RootCert,
		AltHostname: cfg.CA.AltHostname,
		Auth:        cfg.Auth,
		Headers:     cfg.CA.Headers,
		Mark:        controlPlaneMark(cfg),
		Log:         log,
	}, cfg.Mode == config.ModeShared)
	if err != nil {
		return nil, fmt.Errorf("CA_ADDRESS: %w", err)
	}
	return c, nil
}

// newXDS prepares the delta xDS client of XDS_ADDRESS; it registers the "xds"
// readiness task, done once both types are acknowledged. Nothing connects
// until startControlPlane.
func (a *App) newXDS() error {
	cfg := a.cfg
	conn, err := (&caclient.DialConfig{
		Address:     cfg.XDS.Address,
		RootCert:    cfg.XDS.RootCert,
		AltHostname: cfg.XDS.AltHostname,
		Auth:        cfg.Auth,
		Mark:        controlPlaneMark(cfg),
		Log:         a.out.Logger("ztunnel::tls::control"),
		MinBackoff:  xds.DefaultInitialBackoff,
		MaxBackoff:  xds.DefaultMaxBackoff,
	}).Dial()
	if err != nil {
		return fmt.Errorf("XDS_ADDRESS: %w", err)
	}
	node, err := xds.NodeFromConfig(cfg)
	if err != nil {
		conn.Close()
		return err
	}
	client, err := xds.NewClient(xds.ClientConfig{
		Conn:     conn,
		Node:     node,
		Store:    a.store,
		OnDemand: cfg.XDS.OnDemand,
		Headers:  cfg.XDS.Headers,
		Ready:    withRelease(a.ready.Register(readyXDS), a.log),
		Logger:   a.out.Logger("ztunnel::xds"),
		Metrics:  a.metrics.Registerer(),
	})
	if err != nil {
		conn.Close()
		return err
	}
	a.cp.xdsConn, a.cp.xds = conn, client
	return nil
}

// startControlPlane starts the xDS client and the prefetching of local
// workloads' certificates. Everything it starts stops when ctx ends; wg waits
// for it. The connections are closed on the way out.
func (a *App) startControlPlane(ctx context.Context, wg *sync.WaitGroup) {
	if a.cp.xds != nil {
		wg.Go(func() {
			if err := a.cp.xds.Run(ctx); err != nil {
				a.log.Error("xds client stopped", "err", err)
			}
			a.cp.xdsConn.Close()
		})
	}
	if a.cp.ca != nil {
		wg.Go(func() {
			<-ctx.Done()
			a.cp.ca.Close()
		})
	}
	if a.cfg.NodeName != "" {
		wg.Go(func() { prefetchLocal(ctx, a.store, a.certs, a.cfg.NodeName) })
	}
}

// certPrefetcher is what prefetchLocal needs of the certificate manager.
type certPrefetcher interface {
	Prefetch(identity.ID) error
	Forget(identity.ID)
}

// prefetchLocal keeps the certificates of this node's HBONE workloads warm, as
// ztunnel does: a certificate is prefetched when the first such workload with
// its identity appears, and forgotten when the last one leaves. It returns
// when ctx ends.
func prefetchLocal(ctx context.Context, store *workload.Store, m certPrefetcher, node string) {
	updates, cancel := store.Subscribe()
	defer cancel()
	held := map[identity.ID]bool{}
	for {
		want := map[identity.ID]bool{}
		for _, w := range store.Snapshot().Workloads() {
			if w.Node == node && w.Protocol == workload.ProtocolHBONE {
				want[w.Identity()] = true
			}
		}
		for id := range want {
			if !held[id] {
				if err := m.Prefetch(id); err == nil {
					held[id] = true
				}
			}
		}
		for id := range held {
			if !want[id] {
				m.Forget(id)
				delete(held, id)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-updates:
		}
	}
}
