package certs

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/ztunnel-go/ztunnel/tls/identity"
)

// File names of Istio's plugged-in CA layout (the "cacerts" secret).
const (
	CACertFile    = "ca-cert.pem"
	CAKeyFile     = "ca-key.pem"
	RootCertFile  = "root-cert.pem"
	CertChainFile = "cert-chain.pem"
)

const (
	// Backdate is how far before the signing time a workload certificate's
	// NotBefore is set, to tolerate clock skew between nodes.
	Backdate = time.Minute

	// fakeRootLifetime is the validity of the root NewFakeCA generates.
	fakeRootLifetime = 10 * 365 * 24 * time.Hour
)

// LocalCA signs workload certificates in process. It is immutable after
// construction and safe for concurrent use.
type LocalCA struct {
	cert          *x509.Certificate   // signing certificate
	key           crypto.Signer       // its private key
	intermediates []*x509.Certificate // from above cert up to (excluding) the roots
	roots         []*x509.Certificate // trust bundle

	chainPEM []string // cert (unless it is a root) and intermediates, PEM
	rootsPEM string   // all roots concatenated
}

// NewFakeCA returns a CA with a freshly generated ECDSA P-256 root, valid for
// ten years, that signs directly (FAKE_CA=true). trustDomain names the root
// (its Organization); the CA signs identities of any trust domain, as
// ztunnel's fake CA does. Only certificates from this process trust each other.
func NewFakeCA(trustDomain string) (*LocalCA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("fake CA: generating key: %w", err)
	}
	serial, err := newSerial()
	if err != nil {
		return nil, fmt.Errorf("fake CA: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{Organization: []string{trustDomain}, CommonName: "ztunnel fake CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(fakeRootLifetime),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("fake CA: creating root: %w", err)
	}
	root, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("fake CA: %w", err)
	}
	return newLocalCA(root, key, nil, []*x509.Certificate{root}), nil
}

// LoadLocalCA loads a CA from dir in Istio's plugged-in cacerts layout
// (LOCAL_CA_DIR):
//
//   - ca-cert.pem: the signing certificate (a CA certificate);
//   - ca-key.pem: its private key, EC or RSA, in SEC1, PKCS#1 or PKCS#8 PEM;
//   - root-cert.pem: the trust root(s);
//   - cert-chain.pem (optional): the chain from ca-cert up to the root. Its
//     copies of ca-cert and of any root are ignored; the rest are sent as
//     intermediates, in file order.
//
// The signing certificate must chain to one of the roots. Errors name the
// file at fault. Every process that loads the same directory issues
// certificates the others accept.
func LoadLocalCA(dir string) (*LocalCA, error) {
	read := func(name string) ([]byte, error) {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			return nil, fmt.Errorf("local CA: %w", err)
		}
		return b, nil
	}
	certPEM, err := read(CACertFile)
	if err != nil {
		return nil, err
	}
	certs, err := parseCertsPEM(certPEM)
	if err != nil {
		return nil, fmt.Errorf("local CA: %s: %w", CACertFile, err)
	}
	cert := certs[0]
	if !cert.IsCA || !cert.BasicConstraintsValid {
		return nil, fmt.Errorf("local CA: %s: not a CA certificate (basic constraints CA:TRUE missing)", CACertFile)
	}
	if cert.KeyUsage != 0 && cert.KeyUsage&x509.KeyUsageCertSign == 0 {
		return nil, fmt.Errorf("local CA: %s: key usage does not allow certificate signing", CACertFile)
	}

	keyPEM, err := read(CAKeyFile)
	if err != nil {
		return nil, err
	}
	key, err := parsePrivateKeyPEM(keyPEM)
	if err != nil {
		return nil, fmt.Errorf("local CA: %s: %w", CAKeyFile, err)
	}
	if !samePublicKey(key.Public(), cert.PublicKey) {
		return nil, fmt.Errorf("local CA: %s does not match the public key of %s", CAKeyFile, CACertFile)
	}

	rootPEM, err := read(RootCertFile)
	if err != nil {
		return nil, err
	}
	roots, err := parseCertsPEM(rootPEM)
	if err != nil {
		return nil, fmt.Errorf("local CA: %s: %w", RootCertFile, err)
	}

	var intermediates []*x509.Certificate
	chainPEM, err := os.ReadFile(filepath.Join(dir, CertChainFile))
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return nil, fmt.Errorf("local CA: %w", err)
	default:
		chain, err := parseCertsPEM(chainPEM)
		if err != nil {
			return nil, fmt.Errorf("local CA: %s: %w", CertChainFile, err)
		}
		for _, c := range chain {
			if c.Equal(cert) || slices.ContainsFunc(roots, c.Equal) {
				continue
			}
			intermediates = append(intermediates, c)
		}
	}

	// The signing certificate must chain to the trust roots, or every peer
	// would reject what we issue.
	opts := x509.VerifyOptions{
		Roots:         x509.NewCertPool(),
		Intermediates: x509.NewCertPool(),
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	}
	for _, r := range roots {
		opts.Roots.AddCert(r)
	}
	for _, c := range intermediates {
		opts.Intermediates.AddCert(c)
	}
	if _, err := cert.Verify(opts); err != nil {
		where := RootCertFile
		if len(intermediates) > 0 {
			where += " through " + CertChainFile
		}
		return nil, fmt.Errorf("local CA: %s does not chain to %s: %w", CACertFile, where, err)
	}
	return newLocalCA(cert, key, intermediates, roots), nil
}

func newLocalCA(cert *x509.Certificate, key crypto.Signer, intermediates, roots []*x509.Certificate) *LocalCA {
	ca := &LocalCA{cert: cert, key: key, intermediates: intermediates, roots: roots}
	if !slices.ContainsFunc(roots, cert.Equal) {
		ca.chainPEM = append(ca.chainPEM, encodeCertPEM(cert))
	}
	for _, c := range intermediates {
		ca.chainPEM = append(ca.chainPEM, encodeCertPEM(c))
	}
	var b strings.Builder
	for _, r := range roots {
		b.WriteString(encodeCertPEM(r))
	}
	ca.rootsPEM = b.String()
	return ca
}

// Roots returns the CA's trust roots. The slice is a copy; the certificates
// must not be modified.
func (ca *LocalCA) Roots() []*x509.Certificate { return slices.Clone(ca.roots) }

// Sign issues a certificate for id with the public key of csrPEM, after
// checking the CSR's signature. Like istiod, it takes the identity from the
// caller, not from the CSR: the certificate has exactly one SAN, the URI of
// id, and an empty subject. KeyUsage is digitalSignature|keyEncipherment,
// ExtKeyUsage serverAuth and clientAuth; NotBefore is Backdate before now and
// NotAfter now+ttl, capped at the signing certificate's NotAfter. It returns
// the leaf, the chain up to the roots, and the roots (concatenated) last.
func (ca *LocalCA) Sign(ctx context.Context, id identity.ID, csrPEM []byte, ttl time.Duration) ([]string, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := id.Validate(); err != nil {
		return nil, fmt.Errorf("sign: identity: %w", err)
	}
	if ttl <= 0 {
		return nil, fmt.Errorf("sign: invalid lifetime %v", ttl)
	}
	csr, err := parseCSRPEM(csrPEM)
	if err != nil {
		return nil, fmt.Errorf("sign: %w", err)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, fmt.Errorf("sign: CSR signature: %w", err)
	}
	serial, err := newSerial()
	if err != nil {
		return nil, fmt.Errorf("sign: %w", err)
	}
	now := time.Now()
	notAfter := now.Add(ttl)
	if notAfter.After(ca.cert.NotAfter) {
		notAfter = ca.cert.NotAfter
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		NotBefore:             now.Add(-Backdate),
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
		// With an empty subject, crypto/x509 marks the SAN critical (RFC 5280).
		URIs: []*url.URL{{Scheme: "spiffe", Host: id.TrustDomain, Path: "/ns/" + id.Namespace + "/sa/" + id.ServiceAccount}},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, csr.PublicKey, ca.key)
	if err != nil {
		return nil, fmt.Errorf("sign: %w", err)
	}
	out := make([]string, 0, 2+len(ca.chainPEM))
	out = append(out, string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})))
	out = append(out, ca.chainPEM...)
	out = append(out, ca.rootsPEM)
	return out, nil
}

// parseCSRPEM parses exactly one PEM certificate request.
func parseCSRPEM(data []byte) (*x509.CertificateRequest, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, errors.New("CSR: no PEM block")
	}
	if block.Type != "CERTIFICATE REQUEST" && block.Type != "NEW CERTIFICATE REQUEST" {
		return nil, fmt.Errorf("CSR: unexpected PEM block %q", block.Type)
	}
	csr, err := x509.ParseCertificateRequest(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("CSR: %w", err)
	}
	return csr, nil
}

// newSerial returns a random positive 128-bit serial number.
func newSerial() (*big.Int, error) {
	limit := new(big.Int).Lsh(big.NewInt(1), 128)
	n, err := rand.Int(rand.Reader, limit)
	if err != nil {
		return nil, fmt.Errorf("serial number: %w", err)
	}
	return n.Add(n, big.NewInt(1)), nil
}
