package inpod

import (
	"context"
	"fmt"
	"io"
	"log/slog"

	"github.com/ztunnel-go/ztunnel/netutil"
	"github.com/ztunnel-go/ztunnel/proxy"
	"github.com/ztunnel-go/ztunnel/tls/identity"
)

// PodProxies is the ProxyFactory of shared mode: one proxy.Proxy per pod, every socket of it
// made inside the pod's netns. Fields are set before the first Start and not changed after.
type PodProxies struct {
	// Base holds what every pod proxy shares (store, certificates, metrics, socket options,
	// HBONE settings, ports, loggers). Start sets Self and Netns per pod.
	Base proxy.Config
	// TrustDomain completes a pod's identity when the store does not know its workload yet.
	TrustDomain string
	// DNS, when set, starts the pod's DNS proxy (15053 on 127.0.0.1 and ::1) with netns as the
	// hook that runs socket-creating code inside the pod's namespace. The returned Closer is
	// closed when the pod's proxy drains. Nil means no DNS proxy (the dns package plugs in here).
	DNS func(ctx context.Context, pod *Pod, netns func(fn func() error) error) (io.Closer, error)
}

// Identity returns the identity pod's proxy serves as: the store's workload with the pod's
// UID, else the one with its namespace and name, else one made from the ZDS WorkloadInfo.
func (f *PodProxies) Identity(pod *Pod) identity.ID {
	if f.Base.Store != nil {
		snap := f.Base.Store.Snapshot()
		w := snap.WorkloadByUID(pod.UID)
		if w == nil {
			w = snap.WorkloadByName(pod.Info.Namespace, pod.Info.Name)
		}
		if w != nil {
			return w.Identity()
		}
	}
	return identity.ID{TrustDomain: f.TrustDomain, Namespace: pod.Info.Namespace, ServiceAccount: pod.Info.ServiceAccount}
}

// Start builds the pod's proxy and binds its listeners inside the pod's netns.
func (f *PodProxies) Start(ctx context.Context, pod *Pod) (PodProxy, error) {
	fd := int(pod.Netns.Fd())
	netns := func(fn func() error) error { return netutil.InNetns(fd, fn) }
	cfg := f.Base
	cfg.Self = f.Identity(pod)
	cfg.Netns = netns
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cfg.Logger = log.With("pod", pod.Info.Namespace+"/"+pod.Info.Name)
	p, err := proxy.New(cfg)
	if err != nil {
		return nil, err
	}
	if err := p.Listen(ctx); err != nil {
		return nil, fmt.Errorf("pod %s/%s: %w", pod.Info.Namespace, pod.Info.Name, err)
	}
	pp := &podProxy{p: p}
	if f.DNS != nil {
		d, err := f.DNS(ctx, pod, netns)
		if err != nil {
			p.Drain(context.Background())
			return nil, fmt.Errorf("pod %s/%s: dns proxy: %w", pod.Info.Namespace, pod.Info.Name, err)
		}
		pp.dns = d
	}
	pp.stopWatch = p.WatchPolicies()
	return pp, nil
}

// podProxy is one pod's proxy, its policy watcher and its DNS proxy.
type podProxy struct {
	p         *proxy.Proxy
	dns       io.Closer // nil without DNS
	stopWatch func()    // ends the policy watch (Proxy.WatchPolicies)
}

// Connections lists the connections the pod's proxy relays.
func (pp *podProxy) Connections() proxy.Connections { return pp.p.Connections() }

// Drain closes the listeners, lets connections finish until ctx ends or the grace period
// passes, closes the rest and waits for every goroutine of the pod's proxy.
func (pp *podProxy) Drain(ctx context.Context) error {
	var derr error
	if pp.dns != nil {
		derr = pp.dns.Close()
	}
	err := pp.p.Drain(ctx)
	pp.stopWatch()
	if err == nil {
		err = derr
	}
	return err
}
