package certs

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/ztunnel-go/ztunnel/tls/identity"
)

// ALPN is the only application protocol HBONE negotiates.
const ALPN = "h2"

// Compliance policies (COMPLIANCE_POLICY).
const (
	// PolicyFIPS restricts TLS to AES-GCM cipher suites and the P-256 and
	// P-384 key exchanges.
	PolicyFIPS = "fips-140-2"
	// PolicyPQC restricts the key exchange to X25519MLKEM768, as ztunnel does.
	PolicyPQC = "pqc"
)

type compliance int

const (
	complianceNone compliance = iota
	complianceFIPS
	compliancePQC
)

// CheckCompliancePolicy reports whether p is a supported COMPLIANCE_POLICY
// value: "", "fips-140-2" or "pqc".
func CheckCompliancePolicy(p string) error {
	_, err := parseCompliancePolicy(p)
	return err
}

func parseCompliancePolicy(p string) (compliance, error) {
	switch p {
	case "":
		return complianceNone, nil
	case PolicyFIPS:
		return complianceFIPS, nil
	case PolicyPQC:
		return compliancePQC, nil
	}
	return complianceFIPS, fmt.Errorf("unsupported compliance policy %q (want %q, %q or empty)", p, PolicyFIPS, PolicyPQC)
}

// tls12Suites are the TLS 1.2 suites offered when TLS 1.2 is allowed: ECDHE
// with AES-GCM only, the same set as ztunnel.
var tls12Suites = []uint16{
	tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
}

// fipsTLS13Suites are the TLS 1.3 suites allowed under PolicyFIPS.
var fipsTLS13Suites = []uint16{tls.TLS_AES_128_GCM_SHA256, tls.TLS_AES_256_GCM_SHA384}

// baseConfig returns the settings shared by server and client configs.
func (m *Manager) baseConfig() *tls.Config {
	cfg := &tls.Config{
		MinVersion:             tls.VersionTLS13,
		MaxVersion:             tls.VersionTLS13,
		NextProtos:             []string{ALPN},
		CipherSuites:           tls12Suites, // TLS 1.2 only; crypto/tls fixes the TLS 1.3 list
		SessionTicketsDisabled: true,        // every connection is verified against current roots
	}
	if m.tls12 {
		cfg.MinVersion = tls.VersionTLS12
	}
	switch m.policy {
	case complianceFIPS:
		cfg.CurvePreferences = []tls.CurveID{tls.CurveP256, tls.CurveP384}
	case compliancePQC:
		cfg.CurvePreferences = []tls.CurveID{tls.X25519MLKEM768}
	}
	return cfg
}

// checkSuite enforces the compliance policy on the negotiated cipher suite.
// crypto/tls does not let a Config restrict TLS 1.3 suites, so under
// PolicyFIPS a ChaCha20 TLS 1.3 handshake (possible with a peer that prefers
// it, or on hardware without AES) is refused here.
func (m *Manager) checkSuite(cs tls.ConnectionState) error {
	if m.policy != complianceFIPS || cs.Version != tls.VersionTLS13 {
		return nil
	}
	if !slices.Contains(fipsTLS13Suites, cs.CipherSuite) {
		return fmt.Errorf("cipher suite %s not allowed by compliance policy %s", tls.CipherSuiteName(cs.CipherSuite), PolicyFIPS)
	}
	return nil
}

// ServerConfig returns the TLS configuration of an HBONE server for the
// workload local: TLS 1.3 (1.2 with TLS12), ALPN h2, the certificate of local
// fetched with Get at every handshake (so renewals are picked up), and a
// client certificate required, verified against the roots of local's
// certificate and carrying a SPIFFE ID of local's trust domain. A client that
// offers ALPN without h2 is refused; one that offers no ALPN is accepted, as
// rustls does. Session tickets are off: every connection is fully verified.
func (m *Manager) ServerConfig(local identity.ID) *tls.Config {
	cfg := m.baseConfig()
	cfg.GetCertificate = func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
		c, err := m.Get(hello.Context(), local)
		if err != nil {
			return nil, err
		}
		return &c.TLS, nil
	}
	cfg.GetConfigForClient = func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
		// crypto/tls lets a client that offers only http/1.1 through without
		// ALPN; HBONE speaks nothing but h2.
		if len(hello.SupportedProtos) > 0 && !slices.Contains(hello.SupportedProtos, ALPN) {
			return nil, fmt.Errorf("client offered ALPN %q, want %q", hello.SupportedProtos, ALPN)
		}
		return nil, nil
	}
	cfg.ClientAuth = tls.RequireAnyClientCert
	cfg.VerifyConnection = func(cs tls.ConnectionState) error {
		if err := m.checkSuite(cs); err != nil {
			return err
		}
		c, err := m.current(local)
		if err != nil {
			return err
		}
		id, err := verifyChain(cs.PeerCertificates, c.Roots, m.now(), m.crl)
		if err != nil {
			return fmt.Errorf("client certificate: %w", err)
		}
		if id.TrustDomain != local.TrustDomain {
			return fmt.Errorf("client identity %s is not in trust domain %q", id, local.TrustDomain)
		}
		return nil
	}
	return cfg
}

// ClientConfig returns the TLS configuration of an HBONE client connecting as
// src to a server that must present one of the expected identities. It sends
// no SNI, offers ALPN h2 and requires the server to select it, presents the
// certificate of src (fetched with Get at handshake time), and verifies the
// server's chain against the roots of src's certificate. It fails if src has
// no valid certificate (waiting for the first one within ctx) or if expected
// is empty.
func (m *Manager) ClientConfig(ctx context.Context, src identity.ID, expected []identity.ID) (*tls.Config, error) {
	if len(expected) == 0 {
		return nil, errors.New("client TLS config: no expected server identity")
	}
	if _, err := m.Get(ctx, src); err != nil {
		return nil, fmt.Errorf("client TLS config: %w", err)
	}
	want := slices.Clone(expected)
	cfg := m.baseConfig()
	// Verification happens in VerifyConnection: there is no host name to check,
	// only SPIFFE identities.
	cfg.InsecureSkipVerify = true
	cfg.GetClientCertificate = func(cri *tls.CertificateRequestInfo) (*tls.Certificate, error) {
		c, err := m.Get(cri.Context(), src)
		if err != nil {
			return nil, err
		}
		return &c.TLS, nil
	}
	cfg.VerifyConnection = func(cs tls.ConnectionState) error {
		if err := m.checkSuite(cs); err != nil {
			return err
		}
		if cs.NegotiatedProtocol != ALPN {
			return fmt.Errorf("server negotiated ALPN %q, want %q", cs.NegotiatedProtocol, ALPN)
		}
		c, err := m.current(src)
		if err != nil {
			return err
		}
		id, err := verifyChain(cs.PeerCertificates, c.Roots, m.now(), m.crl)
		if err != nil {
			return fmt.Errorf("server certificate: %w", err)
		}
		if !slices.Contains(want, id) {
			return fmt.Errorf("server identity %s is not an expected identity (want %s)", id, joinIDs(want))
		}
		return nil
	}
	return cfg, nil
}

func joinIDs(ids []identity.ID) string {
	var b strings.Builder
	for i, id := range ids {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(id.String())
	}
	return b.String()
}

// ValidityError is the error of a peer chain with a certificate outside its validity period
// at At, the handshake's time: expired (At after NotAfter) or not yet valid. It says when, so
// that the failure can be reported as ztunnel's TLS library reports it (with both times).
type ValidityError struct {
	At                  time.Time // when the chain was verified
	NotBefore, NotAfter time.Time // the failing certificate's validity
	Err                 error     // crypto/x509's
}

func (e *ValidityError) Error() string { return e.Err.Error() }
func (e *ValidityError) Unwrap() error { return e.Err }

// Expired reports whether the certificate expired (rather than not being valid yet).
func (e *ValidityError) Expired() bool { return e.At.After(e.NotAfter) }

// verifyChain verifies a peer chain (leaf first, then intermediates) against
// roots at now, for any key usage, and returns the leaf's SPIFFE identity.
func verifyChain(chain []*x509.Certificate, roots *x509.CertPool, now time.Time, crl *CRLSet) (identity.ID, error) {
	if len(chain) == 0 {
		return identity.ID{}, errors.New("no certificate presented")
	}
	opts := x509.VerifyOptions{
		Roots:       roots,
		CurrentTime: now,
		KeyUsages:   []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	}
	if len(chain) > 1 {
		opts.Intermediates = x509.NewCertPool()
		for _, c := range chain[1:] {
			opts.Intermediates.AddCert(c)
		}
	}
	verified, err := chain[0].Verify(opts)
	if err != nil {
		var invalid x509.CertificateInvalidError
		if errors.As(err, &invalid) && invalid.Reason == x509.Expired && invalid.Cert != nil {
			return identity.ID{}, &ValidityError{At: now, NotBefore: invalid.Cert.NotBefore,
				NotAfter: invalid.Cert.NotAfter, Err: err}
		}
		return identity.ID{}, err
	}
	if crl != nil {
		if err := crl.Check(verified[0]); err != nil {
			return identity.ID{}, err
		}
	}
	return identity.FromCertificate(chain[0])
}

// PeerID returns the SPIFFE identity of the peer of a completed handshake made
// with ServerConfig or ClientConfig, whose verification guarantees the peer
// leaf was checked against the roots.
func PeerID(cs tls.ConnectionState) (identity.ID, error) {
	if !cs.HandshakeComplete {
		return identity.ID{}, errors.New("peer identity: handshake not complete")
	}
	if len(cs.PeerCertificates) == 0 {
		return identity.ID{}, errors.New("peer identity: no peer certificate")
	}
	id, err := identity.FromCertificate(cs.PeerCertificates[0])
	if err != nil {
		return identity.ID{}, fmt.Errorf("peer identity: %w", err)
	}
	return id, nil
}

// CRL returns the revocation lists handshakes enforce (ManagerOptions.CRL), nil without.
func (m *Manager) CRL() *CRLSet { return m.crl }

// Revoked reports whether the current revocation lists revoke peer, the chain a peer presented
// in a handshake made at `at` for the local identity local (a connection established then): it
// verifies the chain again, against local's current roots at that time (so that its
// certificates' expiry since does not count), and checks the verified chain as the handshake
// did. Most chains are cleared without a verification (CRLSet.MayRevoke). An error says that
// the chain could not be judged (no roots for local, or the chain no longer verifies); it is
// not revoked then. False without lists.
func (m *Manager) Revoked(local identity.ID, peer []*x509.Certificate, at time.Time) (bool, error) {
	if m.crl == nil || !m.crl.MayRevoke(peer) {
		return false, nil
	}
	c, err := m.current(local)
	if err != nil {
		return false, err
	}
	_, err = verifyChain(peer, c.Roots, at, m.crl)
	if errors.Is(err, ErrRevoked) {
		return true, nil
	}
	return false, err
}
