package xds

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/prometheus/client_golang/prometheus"
	statuspb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/ztunnel-go/ztunnel/policy"
	"github.com/ztunnel-go/ztunnel/workload"
	"github.com/ztunnel-go/ztunnel/xds/pb/securitypb"
	"github.com/ztunnel-go/ztunnel/xds/pb/workloadpb"
)

// The resource types ztunnel subscribes to.
const (
	AddressType       = "type.googleapis.com/istio.workload.Address"
	AuthorizationType = "type.googleapis.com/istio.security.Authorization"
)

// Client defaults, ztunnel's.
const (
	// DefaultInitialBackoff and DefaultMaxBackoff bound the delay between stream attempts.
	DefaultInitialBackoff = 10 * time.Millisecond
	DefaultMaxBackoff     = 15 * time.Second
	// DefaultMaxMessageSize is the largest response accepted (200 MiB).
	DefaultMaxMessageSize = 200 << 20
)

// ClientConfig configures a Client. Fields are read by NewClient only.
type ClientConfig struct {
	// Conn is the connection to istiod (see caclient.DialConfig.Dial: TLS, bearer token
	// re-read for every stream, clusterid and XDS_HEADER_* metadata); required. The caller
	// owns and closes it.
	Conn grpc.ClientConnInterface
	// Node identifies this proxy to istiod (see NodeFromConfig); required.
	Node *corev3.Node
	// Store receives the configuration; required.
	Store *workload.Store
	// OnDemand (XDS_ON_DEMAND) subscribes to no address at start; Demand asks for each.
	OnDemand bool
	// Headers are extra gRPC metadata sent when opening each stream (on top of whatever Conn
	// adds per RPC). Nil sends none.
	Headers map[string]string
	// Ready is called once, when both types have been acknowledged for the first time
	// (only Authorization with OnDemand, as the address type is then answered lazily). Nil
	// means no callback.
	Ready func()
	// Logger reports connection changes and rejected resources. Nil discards.
	Logger *slog.Logger
	// Metrics, when set, receives the istio_xds_* metrics.
	Metrics prometheus.Registerer
	// InitialBackoff and MaxBackoff bound the reconnection delay; zero means the defaults
	// (10 ms and 15 s).
	InitialBackoff, MaxBackoff time.Duration
	// MaxMessageSize is the largest response accepted; zero means 200 MiB.
	MaxMessageSize int
}

// Client is a delta ADS client that keeps a workload.Store in step with istiod.
//
// Run owns all mutable state below except what is marked otherwise; there is
// one Run per Client. While disconnected the store keeps the last known
// configuration; on reconnect the versions of every resource held are sent in
// initial_resource_versions so istiod sends only what changed.
type Client struct {
	cfg     ClientConfig // immutable after NewClient
	log     *slog.Logger
	metrics *clientMetrics
	demands chan demand // to Run, from Demand

	known    map[string]map[string]resourceInfo // type URL -> resource name -> what we hold
	acked    map[string]bool                    // types acked at least once
	ready    bool                               // cfg.Ready has been called
	demanded map[string]bool                    // on-demand address names subscribed so far
	waiting  map[string][]chan struct{}         // on-demand names -> waiters to wake
}

// resourceInfo is what we hold for one resource name.
type resourceInfo struct {
	version string
	kind    string // workload.KindWorkload, KindService or KindPolicy
	key     string // the store key (workload UID, service or policy key)
}

// demand is one on-demand lookup, handed to Run.
type demand struct {
	name string
	done chan struct{}
}

// NewClient checks cfg and returns a client; Run starts it.
func NewClient(cfg ClientConfig) (*Client, error) {
	switch {
	case cfg.Conn == nil:
		return nil, errors.New("xds client: no connection")
	case cfg.Node == nil:
		return nil, errors.New("xds client: no node")
	case cfg.Store == nil:
		return nil, errors.New("xds client: no store")
	}
	if cfg.InitialBackoff <= 0 {
		cfg.InitialBackoff = DefaultInitialBackoff
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = DefaultMaxBackoff
	}
	if cfg.MaxMessageSize <= 0 {
		cfg.MaxMessageSize = DefaultMaxMessageSize
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	m, err := newClientMetrics(cfg.Metrics)
	if err != nil {
		return nil, err
	}
	return &Client{
		cfg:      cfg,
		log:      log,
		metrics:  m,
		demands:  make(chan demand),
		known:    map[string]map[string]resourceInfo{AddressType: {}, AuthorizationType: {}},
		acked:    map[string]bool{},
		demanded: map[string]bool{},
		waiting:  map[string][]chan struct{}{},
	}, nil
}

// Run keeps a stream to istiod open until ctx ends, then returns nil. Failed
// streams are retried with exponential backoff (InitialBackoff doubling up to
// MaxBackoff; a stream that delivered configuration resets it). It starts one
// receiving goroutine per stream and waits for it before returning.
func (c *Client) Run(ctx context.Context) error {
	backoff := c.cfg.InitialBackoff
	timer := time.NewTimer(0)
	<-timer.C
	defer timer.Stop()
	for {
		progressed, err := c.stream(ctx)
		if ctx.Err() != nil {
			return nil
		}
		reason := "Error"
		switch code := status.Code(err); {
		case err == nil || errors.Is(err, io.EOF):
			reason, err = "Complete", nil
		case progressed, code == codes.Canceled, code == codes.DeadlineExceeded, code == codes.Unknown:
			reason = "Reconnect"
		case code == codes.Unavailable:
			reason = "ConnectionError"
		}
		c.metrics.terminations.WithLabelValues(reason).Inc()
		if progressed || err == nil {
			backoff = c.cfg.InitialBackoff
		} else {
			backoff = min(2*backoff, c.cfg.MaxBackoff)
		}
		c.log.Warn("xds stream ended; keeping the last known configuration", "reason", reason, "error", err, "retry_in", backoff)
		timer.Reset(backoff)
		select {
		case <-ctx.Done():
			return nil
		case <-timer.C:
		}
	}
}

// stream runs one ADS stream until it fails. progressed reports whether any
// response was received on it.
func (c *Client) stream(ctx context.Context) (progressed bool, err error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if len(c.cfg.Headers) > 0 {
		kv := make([]string, 0, 2*len(c.cfg.Headers))
		for k, v := range c.cfg.Headers {
			kv = append(kv, k, v)
		}
		ctx = metadata.AppendToOutgoingContext(ctx, kv...)
	}
	ads := discoveryv3.NewAggregatedDiscoveryServiceClient(c.cfg.Conn)
	st, err := ads.DeltaAggregatedResources(ctx, grpc.MaxCallRecvMsgSize(c.cfg.MaxMessageSize))
	if err != nil {
		return false, fmt.Errorf("opening stream: %w", err)
	}
	for _, typ := range []string{AddressType, AuthorizationType} {
		if err := st.Send(c.initialRequest(typ)); err != nil {
			return false, fmt.Errorf("sending initial request: %w", err)
		}
	}

	// The receiver hands responses to this goroutine, which alone sends on the stream.
	type recvResult struct {
		resp *discoveryv3.DeltaDiscoveryResponse
		err  error
	}
	responses := make(chan recvResult)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	wg.Go(func() {
		for {
			resp, err := st.Recv()
			select {
			case responses <- recvResult{resp, err}:
			case <-ctx.Done():
				return
			}
			if err != nil {
				return
			}
		}
	})
	for {
		select {
		case <-ctx.Done():
			return progressed, ctx.Err()
		case r := <-responses:
			if r.err != nil {
				return progressed, r.err
			}
			if !progressed {
				c.log.Info("xds stream established")
			}
			progressed = true
			ack := c.handle(r.resp)
			if err := st.Send(ack); err != nil {
				return progressed, fmt.Errorf("sending ack: %w", err)
			}
			if ack.ErrorDetail == nil && !c.acked[ack.TypeUrl] {
				c.acked[ack.TypeUrl] = true
				// An on-demand type may never be answered at start, so it does not hold
				// readiness back (as in ztunnel).
				if !c.ready && (c.acked[AddressType] || c.cfg.OnDemand) && c.acked[AuthorizationType] {
					c.ready = true
					if c.cfg.Ready != nil {
						c.cfg.Ready()
					}
				}
			}
		case d := <-c.demands:
			if c.demanded[d.name] {
				if _, pending := c.waiting[d.name]; !pending {
					// Subscribed and answered: the store is up to date for this name.
					close(d.done)
				} else {
					c.waiting[d.name] = append(c.waiting[d.name], d.done)
				}
				continue
			}
			c.waiting[d.name] = append(c.waiting[d.name], d.done)
			c.demanded[d.name] = true
			c.log.Debug("on-demand address lookup", "name", d.name)
			if err := st.Send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: AddressType, ResourceNamesSubscribe: []string{d.name}}); err != nil {
				return progressed, fmt.Errorf("sending on-demand request: %w", err)
			}
		}
	}
}

// initialRequest is the first request of a type on a new stream.
func (c *Client) initialRequest(typ string) *discoveryv3.DeltaDiscoveryRequest {
	req := &discoveryv3.DeltaDiscoveryRequest{TypeUrl: typ, Node: c.cfg.Node}
	if known := c.known[typ]; len(known) > 0 {
		req.InitialResourceVersions = make(map[string]string, len(known))
		for name, r := range known {
			req.InitialResourceVersions[name] = r.version
		}
	}
	if typ == AddressType && c.cfg.OnDemand {
		// Delta xDS cannot say "subscribe to nothing"; subscribing to and unsubscribing from
		// the wildcard in one request does, as ztunnel does. Names looked up before are
		// subscribed again.
		req.ResourceNamesSubscribe = []string{"*"}
		req.ResourceNamesUnsubscribe = []string{"*"}
		for name := range c.demanded {
			req.ResourceNamesSubscribe = append(req.ResourceNamesSubscribe, name)
		}
	}
	return req
}

// Demand asks istiod for the address resource of ip in network (XDS_ON_DEMAND)
// and waits until istiod has answered for it (with the resource, or with its
// removal when it does not exist) or ctx ends. The caller then looks the
// address up in the store. Without OnDemand it returns at once.
func (c *Client) Demand(ctx context.Context, network string, ip netip.Addr) error {
	if !c.cfg.OnDemand {
		return nil
	}
	d := demand{name: network + "/" + ip.String(), done: make(chan struct{})}
	select {
	case c.demands <- d:
	case <-ctx.Done():
		return fmt.Errorf("on-demand lookup of %s: %w", d.name, context.Cause(ctx))
	}
	select {
	case <-d.done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("on-demand lookup of %s: %w", d.name, context.Cause(ctx))
	}
}

func (c *Client) wake(name string) {
	for _, ch := range c.waiting[name] {
		close(ch)
	}
	delete(c.waiting, name)
}

// rejection is one resource of a response that was not applied.
type rejection struct {
	name   string
	reason string
}

// handle applies one response to the store and returns its ACK, or its NACK
// naming each rejected resource with its reason.
func (c *Client) handle(resp *discoveryv3.DeltaDiscoveryResponse) *discoveryv3.DeltaDiscoveryRequest {
	typ := resp.GetTypeUrl()
	c.metrics.messages.WithLabelValues(typ).Inc()
	size := 0
	for _, r := range resp.GetResources() {
		size += len(r.GetResource().GetValue())
	}
	c.metrics.bytes.WithLabelValues(typ).Add(float64(size))

	ack := &discoveryv3.DeltaDiscoveryRequest{TypeUrl: typ, ResponseNonce: resp.GetNonce()}
	known, ok := c.known[typ]
	if !ok {
		c.log.Error("xds response of an unknown type", "type_url", typ)
		ack.ErrorDetail = &statuspb.Status{Code: int32(codes.InvalidArgument), Message: "unknown type " + typ}
		return ack
	}
	rejected := c.apply(typ, known, resp)
	if typ == AddressType && len(c.waiting) > 0 {
		for _, r := range resp.GetResources() {
			c.wake(r.GetName())
		}
		for _, name := range resp.GetRemovedResources() {
			c.wake(name)
		}
	}
	if len(rejected) > 0 {
		msgs := make([]string, len(rejected))
		for i, r := range rejected {
			msgs[i] = r.name + ": " + r.reason
		}
		msg := strings.Join(msgs, "; ")
		c.log.Error("rejecting xds resources", "type_url", typ, "nonce", resp.GetNonce(), "rejected", len(rejected), "error", msg)
		ack.ErrorDetail = &statuspb.Status{Code: int32(codes.InvalidArgument), Message: msg}
	}
	return ack
}

// apply converts the resources of resp, applies them with its removals as one
// store update, records what is now held, and returns what was rejected.
func (c *Client) apply(typ string, known map[string]resourceInfo, resp *discoveryv3.DeltaDiscoveryResponse) []rejection {
	var (
		u        workload.Update
		rejected []rejection
		held     = make(map[string]resourceInfo, len(resp.GetResources()))
		byKey    = make(map[string]string, len(resp.GetResources())) // kind+"\x00"+key -> name
	)
	remove := func(r resourceInfo) {
		switch r.kind {
		case workload.KindWorkload:
			u.RemoveWorkloads = append(u.RemoveWorkloads, r.key)
		case workload.KindService:
			u.RemoveServices = append(u.RemoveServices, r.key)
		case workload.KindPolicy:
			u.RemovePolicies = append(u.RemovePolicies, r.key)
		}
	}
	for _, name := range resp.GetRemovedResources() {
		if prev, ok := known[name]; ok {
			remove(prev)
			delete(known, name)
			continue
		}
		// Not held (e.g. rejected before): remove whatever the name could denote.
		if typ == AddressType {
			u.RemoveWorkloads = append(u.RemoveWorkloads, name)
			u.RemoveServices = append(u.RemoveServices, name)
		} else {
			u.RemovePolicies = append(u.RemovePolicies, name)
		}
	}

	if typ == AddressType {
		u.Workloads = make([]*workload.Workload, 0, len(resp.GetResources()))
	} else {
		u.Policies = make([]*policy.Authorization, 0, len(resp.GetResources()))
	}
	var addr workloadpb.Address
	var authz securitypb.Authorization
	for _, res := range resp.GetResources() {
		name := res.GetName()
		reject := func(err error) { rejected = append(rejected, rejection{name, err.Error()}) }
		if res.GetResource() == nil {
			reject(errors.New("resource body is missing"))
			continue
		}
		var info resourceInfo
		if typ == AddressType {
			addr.Reset()
			if err := proto.Unmarshal(res.GetResource().GetValue(), &addr); err != nil {
				reject(fmt.Errorf("decoding Address: %w", err))
				continue
			}
			switch t := addr.GetType().(type) {
			case *workloadpb.Address_Workload:
				w, err := ConvertWorkload(t.Workload)
				if err != nil {
					reject(err)
					continue
				}
				u.Workloads = append(u.Workloads, w)
				info = resourceInfo{kind: workload.KindWorkload, key: w.UID}
			case *workloadpb.Address_Service:
				s, err := ConvertService(t.Service)
				if err != nil {
					reject(err)
					continue
				}
				u.Services = append(u.Services, s)
				info = resourceInfo{kind: workload.KindService, key: s.Key()}
			default:
				reject(errors.New("address holds neither a workload nor a service"))
				continue
			}
		} else {
			authz.Reset()
			if err := proto.Unmarshal(res.GetResource().GetValue(), &authz); err != nil {
				reject(fmt.Errorf("decoding Authorization: %w", err))
				continue
			}
			p, err := ConvertAuthorization(&authz)
			if err != nil {
				reject(err)
				continue
			}
			u.Policies = append(u.Policies, p)
			info = resourceInfo{kind: workload.KindPolicy, key: p.Key()}
		}
		info.version = res.GetVersion()
		if prev, ok := known[name]; ok && (prev.kind != info.kind || prev.key != info.key) {
			remove(prev) // the name now denotes something else
		}
		held[name] = info
		byKey[info.kind+"\x00"+info.key] = name
	}

	err := c.cfg.Store.Apply(u)
	for _, re := range workload.Rejected(err) {
		name, ok := byKey[re.Kind+"\x00"+re.Key]
		if !ok {
			name = re.Key
		}
		rejected = append(rejected, rejection{name, re.Err.Error()})
		delete(held, name)
	}
	// A rejected resource is not recorded as held, so that a reconnect asks for it again;
	// the store keeps its previous version, if any.
	for _, r := range rejected {
		delete(known, r.name)
	}
	for name, info := range held {
		known[name] = info
	}
	return rejected
}

// clientMetrics are ztunnel's istio_xds_* metrics. Immutable after creation.
type clientMetrics struct {
	terminations *prometheus.CounterVec // by reason
	messages     *prometheus.CounterVec // by url
	bytes        *prometheus.CounterVec // by url
}

func newClientMetrics(reg prometheus.Registerer) (*clientMetrics, error) {
	m := &clientMetrics{
		terminations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "istio_xds_connection_terminations_total",
			Help: "The total number of completed connections to xds server (unstable)",
		}, []string{"reason"}),
		messages: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "istio_xds_message_total",
			Help: "Total number of messages received (unstable)",
		}, []string{"url"}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "istio_xds_message_bytes_total",
			Help: "Total number of bytes received (unstable)",
		}, []string{"url"}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.terminations, m.messages, m.bytes} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("xds metrics: %w", err)
			}
		}
	}
	return m, nil
}
