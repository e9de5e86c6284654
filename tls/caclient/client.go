package caclient

import (
	"context"
	"errors"
	"fmt"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/structpb"
	pb "istio.io/api/security/v1alpha1"

	"github.com/ztunnel-go/ztunnel/tls/identity"
)

// ImpersonatedIdentityKey is the request metadata field naming the identity a
// shared-mode node proxy asks a certificate for.
const ImpersonatedIdentityKey = "ImpersonatedIdentity"

// Client signs workload certificates with istiod's CA. It implements
// certs.Signer (the Manager generates the key and CSR and checks the
// returned SAN) and is safe for concurrent use. Immutable after New.
type Client struct {
	cc          *grpc.ClientConn
	ca          pb.IstioCertificateServiceClient
	impersonate bool
}

// New connects (lazily) to the CA described by d. With impersonate (shared
// mode) every request names the identity asked for in the ImpersonatedIdentity
// metadata, so istiod lets the node proxy obtain its pods' certificates.
func New(d DialConfig, impersonate bool) (*Client, error) {
	cc, err := d.Dial()
	if err != nil {
		return nil, fmt.Errorf("CA client: %w", err)
	}
	return &Client{cc: cc, ca: pb.NewIstioCertificateServiceClient(cc), impersonate: impersonate}, nil
}

// Sign asks the CA to sign csrPEM for id with the given lifetime (whole
// seconds) and returns its chain, leaf first and root last.
func (c *Client) Sign(ctx context.Context, id identity.ID, csrPEM []byte, ttl time.Duration) ([]string, error) {
	req := &pb.IstioCertificateRequest{Csr: string(csrPEM), ValidityDuration: int64(ttl / time.Second)}
	if c.impersonate {
		req.Metadata = &structpb.Struct{Fields: map[string]*structpb.Value{
			ImpersonatedIdentityKey: structpb.NewStringValue(id.String()),
		}}
	}
	resp, err := c.ca.CreateCertificate(ctx, req)
	if err != nil {
		return nil, fmt.Errorf("CreateCertificate: %w", err)
	}
	if len(resp.GetCertChain()) == 0 {
		return nil, errors.New("CreateCertificate: empty certificate chain")
	}
	return resp.GetCertChain(), nil
}

// Close releases the connection.
func (c *Client) Close() error { return c.cc.Close() }
