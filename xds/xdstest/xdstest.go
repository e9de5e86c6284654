// Package xdstest runs a real delta xDS server for tests: go-control-plane's
// ADS server over gRPC + TLS, with one LinearCache per ztunnel type URL, and
// records every request the client sends. It also makes the test PKI
// (a root and a server certificate for a host name). For tests only: every
// helper fails the test on error.
package xdstest

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"net"
	"sync"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"

	"github.com/ztunnel-go/ztunnel/tls/certs/certtest"
	"github.com/ztunnel-go/ztunnel/xds/pb/securitypb"
	"github.com/ztunnel-go/ztunnel/xds/pb/workloadpb"
)

// The type URLs served (the same strings as package xds's).
const (
	AddressType       = "type.googleapis.com/istio.workload.Address"
	AuthorizationType = "type.googleapis.com/istio.security.Authorization"
)

// PKI is a test root and a server certificate signed by it.
type PKI struct {
	CA      *certtest.CA
	RootPEM []byte
	Server  tls.Certificate
}

// NewPKI returns a root and a server certificate for host (a DNS name or an IP).
func NewPKI(tb testing.TB, host string) *PKI {
	tb.Helper()
	ca := certtest.NewCA(tb, "xdstest root")
	tmpl := &x509.Certificate{
		NotBefore:   time.Now().Add(-time.Hour),
		NotAfter:    time.Now().Add(24 * time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	if ip := net.ParseIP(host); ip != nil {
		tmpl.IPAddresses = []net.IP{ip}
	} else {
		tmpl.DNSNames = []string{host}
	}
	return &PKI{
		CA:      ca,
		RootPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Cert.Raw}),
		Server:  ca.IssueLeafTemplate(tb, tmpl),
	}
}

// Request is one request the server received, with the stream's metadata.
type Request struct {
	*discoveryv3.DeltaDiscoveryRequest
	Metadata metadata.MD
}

// Server is a delta ADS server. Its caches outlive restarts, so a restarted
// server serves the same resources (with the same versions).
type Server struct {
	Address       *cache.LinearCache
	Authorization *cache.LinearCache

	tb     testing.TB
	cert   tls.Certificate
	cache  *cache.MuxCache
	ctx    context.Context
	cancel context.CancelFunc

	mu       sync.Mutex
	addr     string
	gs       *grpc.Server
	wg       sync.WaitGroup
	requests []Request
	streamMD map[int64]metadata.MD
	changed  chan struct{} // closed and replaced when requests grow
}

// Start serves on addr ("127.0.0.1:0" for any port) until the test ends.
func Start(tb testing.TB, addr string, cert tls.Certificate) *Server {
	tb.Helper()
	return serve(tb, addr, nil, cert)
}

// Serve serves on l (e.g. a listener made inside a network namespace) until
// the test ends. Restart re-listens on l's address in the current namespace.
func Serve(tb testing.TB, l net.Listener, cert tls.Certificate) *Server {
	tb.Helper()
	return serve(tb, "", l, cert)
}

func serve(tb testing.TB, addr string, l net.Listener, cert tls.Certificate) *Server {
	tb.Helper()
	s := &Server{
		Address:       cache.NewLinearCache(AddressType),
		Authorization: cache.NewLinearCache(AuthorizationType),
		tb:            tb,
		cert:          cert,
		streamMD:      map[int64]metadata.MD{},
		changed:       make(chan struct{}),
	}
	s.cache = &cache.MuxCache{
		Classify:      func(r *cache.Request) string { return r.GetTypeUrl() },
		ClassifyDelta: func(r *cache.DeltaRequest) string { return r.GetTypeUrl() },
		Caches:        map[string]cache.Cache{AddressType: s.Address, AuthorizationType: s.Authorization},
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	if l != nil {
		s.serveOn(l)
	} else {
		s.listen(addr)
	}
	tb.Cleanup(func() {
		s.Stop()
		s.cancel()
	})
	return s
}

func (s *Server) listen(addr string) {
	s.tb.Helper()
	var l net.Listener
	var err error
	// A restarted server reuses its port; the old socket may take a moment to go.
	for range 50 {
		if l, err = net.Listen("tcp", addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		s.tb.Fatalf("xdstest: %v", err)
	}
	s.serveOn(l)
}

func (s *Server) serveOn(l net.Listener) {
	cb := serverv3.CallbackFuncs{
		DeltaStreamOpenFunc: func(ctx context.Context, id int64, _ string) error {
			md, _ := metadata.FromIncomingContext(ctx)
			s.mu.Lock()
			s.streamMD[id] = md
			s.mu.Unlock()
			return nil
		},
		StreamDeltaRequestFunc: func(id int64, r *discoveryv3.DeltaDiscoveryRequest) error {
			s.mu.Lock()
			s.requests = append(s.requests, Request{r, s.streamMD[id]})
			close(s.changed)
			s.changed = make(chan struct{})
			s.mu.Unlock()
			return nil
		},
	}
	gs := grpc.NewServer(grpc.Creds(credentials.NewTLS(&tls.Config{Certificates: []tls.Certificate{s.cert}})))
	discoveryv3.RegisterAggregatedDiscoveryServiceServer(gs, serverv3.NewServer(s.ctx, s.cache, cb))
	s.mu.Lock()
	s.addr = l.Addr().String()
	s.gs = gs
	s.mu.Unlock()
	s.wg.Go(func() { gs.Serve(l) })
}

// Addr is the listening address (host:port).
func (s *Server) Addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addr
}

// Stop closes the listener and every stream.
func (s *Server) Stop() {
	s.mu.Lock()
	gs := s.gs
	s.gs = nil
	s.mu.Unlock()
	if gs != nil {
		gs.Stop()
	}
	s.wg.Wait()
}

// Restart stops the server and starts it again on the same address.
func (s *Server) Restart() {
	s.tb.Helper()
	s.Stop()
	s.listen(s.Addr())
}

// Requests returns the requests received so far.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Request(nil), s.requests...)
}

// WaitRequest waits until a request satisfying match has arrived (counting
// those already received from index from on) and returns it with its index.
func (s *Server) WaitRequest(from int, timeout time.Duration, match func(*Request) bool) (Request, int) {
	s.tb.Helper()
	deadline := time.After(timeout)
	for {
		s.mu.Lock()
		for i := from; i < len(s.requests); i++ {
			if match(&s.requests[i]) {
				r := s.requests[i]
				s.mu.Unlock()
				return r, i
			}
		}
		from = len(s.requests)
		ch := s.changed
		s.mu.Unlock()
		select {
		case <-ch:
		case <-deadline:
			s.tb.Fatalf("xdstest: no matching request within %v", timeout)
		}
	}
}

// Workload wraps w as an Address resource.
func Workload(w *workloadpb.Workload) types.Resource {
	return &workloadpb.Address{Type: &workloadpb.Address_Workload{Workload: w}}
}

// Service wraps s as an Address resource.
func Service(s *workloadpb.Service) types.Resource {
	return &workloadpb.Address{Type: &workloadpb.Address_Service{Service: s}}
}

// Policy is a as a resource.
func Policy(a *securitypb.Authorization) types.Resource { return a }

// Node returns the node of the latest request that carried one.
func (s *Server) Node() *corev3.Node {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := len(s.requests) - 1; i >= 0; i-- {
		if n := s.requests[i].GetNode(); n != nil {
			return n
		}
	}
	return nil
}
