// Package certs issues and manages the workload certificates that HBONE's
// mutual TLS uses, and builds the crypto/tls configurations for it.
//
// A Signer turns a CSR into a PEM chain (leaf first, root last, the shape of
// istiod's CreateCertificate answer). LocalCA is the in-process Signer behind
// FAKE_CA and LOCAL_CA_DIR; the istiod client lives elsewhere. Manager fetches
// a certificate per identity on first use, shares concurrent requests, caches,
// refreshes at half lifetime in the background and keeps a valid certificate
// through signer outages, failing closed once it has expired.
//
// ServerConfig and ClientConfig build the HBONE TLS configurations: TLS 1.3
// (1.2 optional), ALPN h2, no SNI, certificates verified against the trust
// bundle of the local certificate and the peer's SPIFFE identity checked (same
// trust domain on the server, one of the expected identities on the client).
package certs

import (
	"context"
	"time"

	"github.com/ztunnel-go/ztunnel/tls/identity"
)

// Signer issues workload certificates.
//
// Sign signs csrPEM (a PEM "CERTIFICATE REQUEST") for id with the requested
// lifetime and returns PEM certificates: the leaf first, then intermediates,
// and last the trust root(s) (several roots may be concatenated in the last
// element). Implementations must be safe for concurrent use.
type Signer interface {
	Sign(ctx context.Context, id identity.ID, csrPEM []byte, ttl time.Duration) ([]string, error)
}

// SignerFunc adapts a function to Signer.
type SignerFunc func(ctx context.Context, id identity.ID, csrPEM []byte, ttl time.Duration) ([]string, error)

// Sign calls f.
func (f SignerFunc) Sign(ctx context.Context, id identity.ID, csrPEM []byte, ttl time.Duration) ([]string, error) {
	return f(ctx, id, csrPEM, ttl)
}
