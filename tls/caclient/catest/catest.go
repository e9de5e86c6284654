// Package catest runs a CA server for tests on istio.io/api's
// IstioCertificateService definition (gRPC + TLS), signing with a
// certs.LocalCA the way istiod does: the identity comes from the
// ImpersonatedIdentity metadata when present, else from the CSR's URI SAN.
// It records each request's metadata and can be switched into an outage.
// For tests only: helpers fail the test on error.
package catest

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"net"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	pb "istio.io/api/security/v1alpha1"

	"github.com/ztunnel-go/ztunnel/tls/certs"
	"github.com/ztunnel-go/ztunnel/tls/identity"
)

// Call is one CreateCertificate request as the server saw it.
type Call struct {
	Identity     identity.ID // the identity signed for
	Impersonated string      // the ImpersonatedIdentity metadata, "" when absent
	TTL          time.Duration
	Metadata     metadata.MD // the gRPC headers (authorization, clusterid, CA_HEADER_*)
	Failed       bool        // answered with an error (outage)
}

// Server is a running CA.
type Server struct {
	pb.UnimplementedIstioCertificateServiceServer
	CA *certs.LocalCA

	gs   *grpc.Server
	addr string
	wg   sync.WaitGroup

	mu    sync.Mutex
	calls []Call
	down  bool
}

// Start serves on addr with the TLS certificate cert until the test ends,
// signing with ca.
func Start(tb testing.TB, addr string, cert tls.Certificate, ca *certs.LocalCA) *Server {
	tb.Helper()
	var l net.Listener
	var err error
	// A restart reuses the stopped server's port, which a socket of the old server or a
	// reconnecting client may hold for a moment: retry a busy port for up to a second.
	for range 50 {
		if l, err = net.Listen("tcp", addr); err == nil || !errors.Is(err, syscall.EADDRINUSE) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		tb.Fatalf("catest: %v", err)
	}
	return Serve(tb, l, cert, ca)
}

// Serve is Start on an existing listener (e.g. one made inside a network
// namespace).
func Serve(tb testing.TB, l net.Listener, cert tls.Certificate, ca *certs.LocalCA) *Server {
	tb.Helper()
	s := &Server{CA: ca, addr: l.Addr().String()}
	s.gs = grpc.NewServer(grpc.Creds(credentials.NewTLS(&tls.Config{Certificates: []tls.Certificate{cert}})))
	pb.RegisterIstioCertificateServiceServer(s.gs, s)
	s.wg.Go(func() { s.gs.Serve(l) })
	tb.Cleanup(func() {
		s.gs.Stop()
		s.wg.Wait()
	})
	return s
}

// Stop closes the listener and every connection at once (a restart of istiod, when another
// Server is started on the same address). The test's cleanup stops it too; twice is harmless.
func (s *Server) Stop() {
	s.gs.Stop()
	s.wg.Wait()
}

// Addr is the listening address.
func (s *Server) Addr() string { return s.addr }

// SetDown makes every request fail with Unavailable while down is true.
func (s *Server) SetDown(down bool) {
	s.mu.Lock()
	s.down = down
	s.mu.Unlock()
}

// Calls returns the requests received so far.
func (s *Server) Calls() []Call {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Call(nil), s.calls...)
}

// CreateCertificate implements the CA service.
func (s *Server) CreateCertificate(ctx context.Context, req *pb.IstioCertificateRequest) (*pb.IstioCertificateResponse, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	call := Call{Metadata: md, TTL: time.Duration(req.GetValidityDuration()) * time.Second}
	call.Impersonated = req.GetMetadata().GetFields()["ImpersonatedIdentity"].GetStringValue()
	id, err := s.identity(req, call.Impersonated)
	call.Identity = id
	s.mu.Lock()
	call.Failed = s.down
	s.calls = append(s.calls, call)
	s.mu.Unlock()
	if call.Failed {
		return nil, status.Error(codes.Unavailable, "catest: CA is down")
	}
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	chain, err := s.CA.Sign(ctx, id, []byte(req.GetCsr()), call.TTL)
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	return &pb.IstioCertificateResponse{CertChain: chain}, nil
}

func (s *Server) identity(req *pb.IstioCertificateRequest, impersonated string) (identity.ID, error) {
	if impersonated != "" {
		return identity.Parse(impersonated)
	}
	block, _ := pem.Decode([]byte(req.GetCsr()))
	if block == nil {
		return identity.ID{}, errors.New("CSR is not PEM")
	}
	csr, err := x509.ParseCertificateRequest(block.Bytes)
	if err != nil {
		return identity.ID{}, err
	}
	if len(csr.URIs) != 1 {
		return identity.ID{}, errors.New("CSR must carry exactly one URI SAN")
	}
	return identity.Parse(csr.URIs[0].String())
}
