// Package app assembles a ztunnel process from its configuration: logging, the workload store
// and its configuration source, the certificate manager, the proxy of the mode, and the admin,
// stats and readiness servers. It owns all of them and shuts them down in order.
package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ztunnel-go/ztunnel/admin"
	"github.com/ztunnel-go/ztunnel/config"
	"github.com/ztunnel-go/ztunnel/dns"
	"github.com/ztunnel-go/ztunnel/hbone"
	"github.com/ztunnel-go/ztunnel/logging"
	"github.com/ztunnel-go/ztunnel/metrics"
	"github.com/ztunnel-go/ztunnel/netutil"
	"github.com/ztunnel-go/ztunnel/proxy"
	"github.com/ztunnel-go/ztunnel/tls/caclient"
	"github.com/ztunnel-go/ztunnel/tls/certs"
	"github.com/ztunnel-go/ztunnel/tls/identity"
	"github.com/ztunnel-go/ztunnel/version"
	"github.com/ztunnel-go/ztunnel/workload"
	"github.com/ztunnel-go/ztunnel/xds"
)

// App is one ztunnel process. Fields are set by New and owned by Run.
type App struct {
	cfg     *config.Config
	out     *logging.Output
	log     *slog.Logger
	store   *workload.Store
	certs   *certs.Manager
	metrics *metrics.Registry
	ready   *admin.Readiness
	proxy   *proxy.Proxy
	crl     *certs.CRLSet // CRL_PATH's revocation lists; nil without
	lookups *dns.Resolver // on-demand DNS; nil when resolv.conf could not be read
	local   *xds.LocalSource
	shared  *sharedMode           // shared (in-pod) mode: ZDS client and pod proxies; nil in dedicated mode
	self    identity.ID           // dedicated mode: the workload's identity
	socket  netutil.SocketOptions // dedicated mode: options of the proxy's sockets

	quit     chan struct{} // closed by /quitquitquit
	quitOnce sync.Once

	cp controlPlane // istiod clients (controlplane.go)
}

// New builds the process from cfg, writing logs to w. It opens no socket.
func New(cfg *config.Config, w io.Writer) (*App, error) {
	format := logging.Text
	if cfg.Log.Format == config.LogJSON {
		format = logging.JSON
	}
	out := logging.NewOutput(w, format, cfg.Log.Level)
	a := &App{
		cfg:     cfg,
		out:     out,
		log:     out.Logger("ztunnel::app"),
		store:   workload.NewStore(),
		metrics: metrics.New("ztunnel", cfg.IstioVersion), // istio_build's tag: the Istio version, as ztunnel's
		ready:   admin.NewReadiness(),
		quit:    make(chan struct{}),
	}

	signer, err := newSigner(cfg, out.Logger("ztunnel::tls::control"))
	if err != nil {
		return nil, err
	}
	a.cp.ca, _ = signer.(*caclient.Client)
	if cfg.CRLPath != "" {
		if a.crl, err = certs.NewCRLSet(cfg.CRLPath, out.Logger("ztunnel::tls::crl")); err != nil {
			return nil, fmt.Errorf("CRL_PATH: %w", err)
		}
	}
	a.certs = certs.NewManager(signer, certs.ManagerOptions{
		TTL:              cfg.CA.SecretTTL,
		Logger:           out.Logger("ztunnel::identity"),
		TLS12:            cfg.TLS12Enabled,
		CompliancePolicy: string(cfg.CompliancePolicy),
		CRL:              a.crl,
	})

	switch {
	case cfg.XDS.LocalPath != "" || cfg.XDS.LocalInline != "":
		if cfg.XDS.Address != "" {
			a.log.Warn("a local config is set, so XDS_ADDRESS is ignored", "xds_address", cfg.XDS.Address)
		}
		a.local = &xds.LocalSource{Path: cfg.XDS.LocalPath, Inline: cfg.XDS.LocalInline, Store: a.store, Logger: out.Logger("ztunnel::xds")}
	case cfg.XDS.Address != "":
		if err := a.newXDS(); err != nil { // controlplane.go
			return nil, err
		}
	default:
		a.log.Warn("no configuration source: no workloads are known, all traffic is passed through")
	}

	var self identity.ID
	if cfg.ProxyWorkload != nil {
		self = identity.ID{TrustDomain: cfg.TrustDomain, Namespace: cfg.ProxyWorkload.Namespace, ServiceAccount: cfg.ProxyWorkload.ServiceAccount}
	}
	socket := netutil.SocketOptions{
		Mark:      cfg.PacketMark,
		NoDelay:   true,
		ReusePort: cfg.InPod.PortReuse,
		// Transparent sockets need CAP_NET_ADMIN; without it the proxy still works, but
		// inbound connections reach the app from the pod's own address.
		Transparent: os.Geteuid() == 0,
	}
	if cfg.Keepalive.Enabled {
		socket.Keepalive = net.KeepAliveConfig{Enable: true, Idle: cfg.Keepalive.Time, Interval: cfg.Keepalive.Interval, Count: int(cfg.Keepalive.Retries)}
	}
	listenIP := cfg.Listen.Outbound.IP
	pcfg := proxy.Config{
		Store:   a.store,
		Certs:   a.certs,
		Metrics: a.metrics,
		Self:    self,
		Network: cfg.Network,
		// The capture listeners share one wildcard address; ztunnel binds them all alike.
		ListenIP: listenIP,
		SOCKS5:   cfg.Listen.SOCKS5 != nil,
		Socket:   socket,
		OrigSrc:  cfg.RequireOriginalSource == nil || *cfg.RequireOriginalSource,
		// ztunnel's LOCALHOST_APP_TUNNEL.
		LocalhostAppTunnel: cfg.LocalhostAppTunnel,
		EarlyData:          cfg.HBONEEarlyData,
		Baggage:            cfg.EnableResponseBaggage,
		HBONE: hbone.Config{
			StreamWindow: cfg.HTTP2.StreamWindowSize,
			ConnWindow:   cfg.HTTP2.ConnectionWindowSize,
			MaxFrameSize: cfg.HTTP2.FrameSize,
			// ztunnel's HTTP/2 connections log under its proxy::h2 module, so a level set
			// for ztunnel::proxy or ztunnel::proxy::h2 covers them here too.
			Logger: out.Logger("ztunnel::proxy::h2"),
		},
		PoolMaxStreams:   int(cfg.Pool.MaxStreamsPerConnection),
		PoolIdleTimeout:  cfg.Pool.UnusedReleaseTimeout,
		TerminationGrace: cfg.TerminationDeadline,
		Limit:            proxy.NewConnLimit(cfg.MaxConnections), // one for the process: every pod proxy shares it
		ClusterID:        cfg.ClusterID,
		Logger:           out.Logger("ztunnel::proxy"),
		AccessLog:        out.Logger("access"),
	}
	if a.cp.xds != nil && cfg.XDS.OnDemand {
		pcfg.OnDemand = a.cp.xds.Demand
	}
	// Workloads known by hostname only are looked up as ztunnel does: over DNS with
	// resolv.conf's servers and search list, answers cached for their TTLs, IPv4 only when
	// IPv6 is off.
	if res, err := dns.NewResolver(dns.ResolverConfig{IPv4Only: !cfg.IPv6Enabled}); err == nil {
		a.lookups = res
		pcfg.LookupHost = res.LookupHost
	} else {
		a.log.Warn("on-demand DNS uses the Go resolver, uncached", "err", err)
		if !cfg.IPv6Enabled {
			pcfg.LookupHost = func(ctx context.Context, host string) ([]netip.Addr, error) {
				return net.DefaultResolver.LookupNetIP(ctx, "ip4", host)
			}
		}
	}
	if limit := pcfg.Limit; limit != nil {
		err := a.metrics.Registerer().Register(prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "ztunnel_connections_refused_total",
			Help: "Connections reset at accept because ZTUNNEL_MAX_CONNECTIONS were open (a ztunnel-go addition).",
		}, func() float64 { return float64(limit.Refused()) }))
		if err != nil {
			return nil, fmt.Errorf("ZTUNNEL_MAX_CONNECTIONS: %w", err)
		}
	}
	if cfg.Mode == config.ModeShared {
		return a, a.newShared(pcfg) // shared.go
	}
	p, err := proxy.New(pcfg)
	if err != nil {
		return nil, err
	}
	a.proxy = p
	a.self = self
	a.socket = socket
	return a, nil
}

// newSigner picks the certificate source: FAKE_CA, LOCAL_CA_DIR, or istiod (logging the
// control-plane TLS's root file changes to log).
func newSigner(cfg *config.Config, log *slog.Logger) (certs.Signer, error) {
	switch {
	case cfg.CA.LocalDir != "":
		ca, err := certs.LoadLocalCA(cfg.CA.LocalDir)
		if err != nil {
			return nil, fmt.Errorf("LOCAL_CA_DIR: %w", err)
		}
		return ca, nil
	case cfg.CA.FakeCA:
		return certs.NewFakeCA(cfg.TrustDomain)
	case cfg.CA.Address != "":
		return newCASigner(cfg, log) // controlplane.go
	default:
		return nil, errors.New("CA_ADDRESS: no certificate source; set FAKE_CA=true or LOCAL_CA_DIR")
	}
}

// adminServer is what the admin, stats and readiness ports serve.
func (a *App) adminServer() *admin.Server {
	adm := &admin.Server{
		Store: a.store, Certs: a.certs, Config: a.cfg.Redacted(), Log: a.out, Metrics: a.metrics, Ready: a.ready,
		InitialLevel: a.cfg.Log.Level,
		Version:      version.Info(a.cfg.IstioVersion),
		Shutdown:     func() { a.quitOnce.Do(func() { close(a.quit) }) },
	}
	if a.shared != nil {
		client := a.shared.client
		adm.ExtraDump = func(dump map[string]any) { dump["workloadState"] = client.Pods() }
	}
	return adm
}

// Run starts everything and blocks until ctx ends or /quitquitquit, then drains.
func (a *App) Run(ctx context.Context) error {
	// While the process runs, log lines (an access log line per connection) are written by a
	// goroutine of their own, so that a slow stdout does not hold up connections; the last
	// deferred call to run writes what is still queued.
	defer a.out.Queue()()
	defer a.certs.Close()
	if a.lookups != nil {
		defer a.lookups.Close() // after the drain: no connection looks up any more
	}
	runCtx, cancelRun := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	// Cancel, then wait: the goroutines below end on runCtx (deferred calls run last first, so
	// one call keeps the order on every return, an early error included).
	defer func() {
		cancelRun()
		wg.Wait()
	}()

	// Configuration first: a broken local config stops start-up.
	if a.local != nil {
		done := a.ready.Register("local config")
		loaded := make(chan error, 1)
		wg.Go(func() {
			err := a.local.Run(runCtx, func() { done(); loaded <- nil })
			if err != nil && runCtx.Err() == nil {
				select {
				case loaded <- err:
				default:
					a.log.Error("local config source stopped", "err", err)
				}
			}
		})
		select {
		case err := <-loaded:
			if err != nil {
				return fmt.Errorf("local config: %w", err)
			}
		case <-ctx.Done():
			return nil
		}
	}
	a.startControlPlane(runCtx, &wg) // controlplane.go: istiod xDS, CA connection, prefetching
	if a.crl != nil {
		wg.Go(func() { a.crl.Watch(runCtx, crlPoll) })
	}

	adm := a.adminServer()
	var servers []*httpServer
	serve := func(name string, addr config.Address, h http.Handler) error {
		for _, ep := range addr.Endpoints(a.cfg.IPv6Enabled) {
			l, err := net.Listen("tcp", ep.String())
			if err != nil {
				if ep.Addr().Is6() && addr.Localhost {
					a.log.Warn("cannot listen on IPv6 loopback, continuing with IPv4", "server", name, "err", err)
					continue
				}
				return fmt.Errorf("%s server: %w", name, err)
			}
			s, err := startHTTP(&http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}, l.(*net.TCPListener), httpParkAfter)
			if err != nil {
				l.Close()
				return fmt.Errorf("%s server: %w", name, err)
			}
			servers = append(servers, s)
		}
		return nil
	}
	shutdownServers := func() {
		for _, s := range servers {
			s.close()
		}
	}
	// Registered before the readiness server starts, so that it never answers ready while the
	// proxy's listeners are still closed (shared mode registers its own task in newShared).
	var proxyDone func()
	if a.shared == nil {
		proxyDone = a.ready.Register("proxy listeners")
	}
	defer shutdownServers()
	if err := serve("admin", a.cfg.Listen.Admin, adm.AdminHandler()); err != nil {
		return err
	}
	if err := serve("stats", a.cfg.Listen.Stats, adm.StatsHandler()); err != nil {
		return err
	}
	if err := serve("readiness", a.cfg.Listen.Readiness, adm.ReadinessHandler()); err != nil {
		return err
	}

	if d := a.cfg.MemoryTrimInterval; d > 0 {
		t := &memTrim{interval: d, quietBytes: defaultTrimQuietBytes, minExcess: defaultTrimMinExcess, log: a.log}
		wg.Go(func() { t.run(runCtx) }) // memtrim.go
	}

	if a.shared != nil {
		return a.runShared(ctx, cancelRun) // shared.go
	}
	if err := a.proxy.Listen(runCtx); err != nil {
		return err
	}
	proxyDone()
	stopWatch := a.proxy.WatchPolicies()
	defer stopWatch()
	if a.cfg.DNS.Enabled {
		srv, err := a.startDNS(a.dnsConfig(a.socket, nil, nil))
		if err != nil {
			a.proxy.Drain(context.Background())
			return err
		}
		defer srv.Close()
	}
	if !a.self.IsZero() {
		// Fetch the workload's certificate now rather than on its first connection.
		wg.Go(func() {
			if _, err := a.certs.Get(runCtx, a.self); err != nil && runCtx.Err() == nil {
				a.log.Warn("prefetching the workload certificate failed", "identity", a.self.String(), "err", err)
			}
		})
	}
	a.log.Info("ztunnel started", "version", version.Version, "istio_version", a.cfg.IstioVersion, "mode", a.cfg.Mode.String())
	releaseStartupMemory(a.log) // footprint.go

	select {
	case <-ctx.Done():
		a.log.Info("received termination signal, draining")
	case <-a.quit:
		a.log.Info("received /quitquitquit, draining")
	}
	err := a.proxy.Drain(context.Background())
	cancelRun()
	a.log.Info("shutdown complete")
	return err
}

// crlPoll is how often the revocation list file is checked for changes (ztunnel's file watch
// debounces changes for 2 s).
const crlPoll = 2 * time.Second
