package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"syscall"

	"github.com/ztunnel-go/ztunnel/dns"
	"github.com/ztunnel-go/ztunnel/inpod"
	"github.com/ztunnel-go/ztunnel/netutil"
)

// dnsConfig is the DNS proxy configuration every server of this process shares. netns and
// clientNamespace are per pod in shared mode; nil in dedicated mode.
func (a *App) dnsConfig(socket netutil.SocketOptions, netns func(fn func() error) error, clientNamespace func(netip.Addr) string) dns.Config {
	return dns.Config{
		Store:              a.store,
		Network:            a.cfg.Network,
		Domain:             a.cfg.ClusterDomain,
		ClientNamespace:    clientNamespace,
		PreferredNamespace: a.cfg.PreferredServiceNamespace,
		DisableIPv6:        !a.cfg.IPv6Enabled,
		// Forwarding sockets carry the mark; listeners share their ports with a second
		// ztunnel during a rolling upgrade, as the proxy's listeners do.
		Socket:     netutil.SocketOptions{Mark: socket.Mark, ReusePort: socket.ReusePort},
		Netns:      netns,
		Registerer: a.metrics.Registerer(),
		Logger:     a.out.Logger("ztunnel::dns"),
	}
}

// startDNS starts a DNS proxy with cfg on the DNS address of the configuration (15053 on
// 127.0.0.1, and ::1 when IPv6 is enabled). An IPv6 loopback that does not exist in that network
// namespace is skipped with a log line; any other failure is an error.
func (a *App) startDNS(cfg dns.Config) (*dns.Server, error) {
	srv, err := dns.NewServer(cfg)
	if err != nil {
		return nil, err
	}
	for _, ep := range a.cfg.DNS.Addr.Endpoints(a.cfg.IPv6Enabled) {
		err := srv.Listen(ep)
		if err == nil {
			continue
		}
		if ep.Addr().Is6() && (errors.Is(err, syscall.EADDRNOTAVAIL) || errors.Is(err, syscall.EAFNOSUPPORT)) {
			a.log.Warn("dns proxy: no IPv6 loopback here, serving IPv4 only", "err", err)
			continue
		}
		srv.Close()
		return nil, fmt.Errorf("dns proxy: %w", err)
	}
	return srv, nil
}

// podDNS is the shared-mode hook that gives each pod its DNS proxy inside the pod's netns;
// short names expand from the pod's namespace.
func (a *App) podDNS(socket netutil.SocketOptions) func(ctx context.Context, pod *inpod.Pod, netns func(fn func() error) error) (io.Closer, error) {
	if !a.cfg.DNS.Enabled {
		return nil
	}
	return func(_ context.Context, pod *inpod.Pod, netns func(fn func() error) error) (io.Closer, error) {
		ns := pod.Info.Namespace
		return a.startDNS(a.dnsConfig(socket, netns, func(netip.Addr) string { return ns }))
	}
}
