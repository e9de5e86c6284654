// Package certtest creates certificate authorities and workload certificates
// for tests: roots, intermediates, leaves with arbitrary validity (expired,
// not yet valid), other trust domains, untrusted roots, and directories in
// Istio's plugged-in cacerts layout. It is for tests only: every helper fails
// the test on error.
package certtest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/ztunnel-go/ztunnel/tls/identity"
)

// CA is a test certificate authority. Its fields must not be modified.
type CA struct {
	Cert   *x509.Certificate
	Key    crypto.Signer
	Parent *CA // nil for a root
}

// NewCA returns a self-signed ECDSA P-256 root named name, valid from an hour
// ago for ten years.
func NewCA(tb testing.TB, name string) *CA {
	tb.Helper()
	key := NewKey(tb)
	tmpl := caTemplate(tb, name)
	return &CA{Cert: create(tb, tmpl, tmpl, key.Public(), key), Key: key}
}

// NewIntermediate returns a CA signed by ca.
func (ca *CA) NewIntermediate(tb testing.TB, name string) *CA {
	tb.Helper()
	key := NewKey(tb)
	return &CA{Cert: create(tb, caTemplate(tb, name), ca.Cert, key.Public(), ca.Key), Key: key, Parent: ca}
}

// Root returns the root at the top of ca's chain.
func (ca *CA) Root() *CA {
	for ca.Parent != nil {
		ca = ca.Parent
	}
	return ca
}

// Pool returns a pool holding ca's root.
func (ca *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.Root().Cert)
	return p
}

// Chain returns ca's certificate followed by its parents, root included.
func (ca *CA) Chain() []*x509.Certificate {
	var out []*x509.Certificate
	for c := ca; c != nil; c = c.Parent {
		out = append(out, c.Cert)
	}
	return out
}

// IssueLeaf returns a workload certificate for id valid from notBefore to
// notAfter, with a new ECDSA P-256 key, shaped like the ones istiod issues
// (URI SAN only, serverAuth and clientAuth). The chain holds the leaf and the
// intermediates up to, not including, the root; Leaf is set.
func (ca *CA) IssueLeaf(tb testing.TB, id identity.ID, notBefore, notAfter time.Time) tls.Certificate {
	tb.Helper()
	u, err := url.Parse(id.String())
	if err != nil {
		tb.Fatalf("certtest: %v", err)
	}
	return ca.IssueLeafTemplate(tb, &x509.Certificate{
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
		URIs:                  []*url.URL{u},
	})
}

// IssueLeafTemplate is IssueLeaf with a caller-made template (its serial
// number is filled in when nil), for unusual SANs or usages.
func (ca *CA) IssueLeafTemplate(tb testing.TB, tmpl *x509.Certificate) tls.Certificate {
	tb.Helper()
	if tmpl.SerialNumber == nil {
		tmpl.SerialNumber = serial(tb)
	}
	key := NewKey(tb)
	leaf := create(tb, tmpl, ca.Cert, key.Public(), ca.Key)
	chain := [][]byte{leaf.Raw}
	for c := ca; c.Parent != nil; c = c.Parent {
		chain = append(chain, c.Cert.Raw)
	}
	return tls.Certificate{Certificate: chain, PrivateKey: key, Leaf: leaf}
}

// WriteCACerts writes ca in Istio's cacerts layout into dir: ca-cert.pem,
// ca-key.pem (PKCS#8), root-cert.pem and, when withChain, cert-chain.pem
// (ca-cert followed by its parents up to the root, as Istio's tooling writes
// it).
func (ca *CA) WriteCACerts(tb testing.TB, dir string, withChain bool) {
	tb.Helper()
	WriteFile(tb, filepath.Join(dir, "ca-cert.pem"), CertPEM(ca.Cert))
	WriteFile(tb, filepath.Join(dir, "ca-key.pem"), KeyPEM(tb, ca.Key))
	WriteFile(tb, filepath.Join(dir, "root-cert.pem"), CertPEM(ca.Root().Cert))
	if withChain {
		WriteFile(tb, filepath.Join(dir, "cert-chain.pem"), CertPEM(ca.Chain()...))
	}
}

// CertPEM encodes certificates as concatenated PEM blocks.
func CertPEM(certs ...*x509.Certificate) []byte {
	var out []byte
	for _, c := range certs {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	return out
}

// KeyPEM encodes key as PKCS#8 PEM ("PRIVATE KEY").
func KeyPEM(tb testing.TB, key crypto.Signer) []byte {
	tb.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		tb.Fatalf("certtest: %v", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

// NewKey returns a new ECDSA P-256 key.
func NewKey(tb testing.TB) *ecdsa.PrivateKey {
	tb.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatalf("certtest: %v", err)
	}
	return key
}

// WriteFile writes data to path with mode 0600.
func WriteFile(tb testing.TB, path string, data []byte) {
	tb.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		tb.Fatalf("certtest: %v", err)
	}
}

func caTemplate(tb testing.TB, name string) *x509.Certificate {
	now := time.Now()
	return &x509.Certificate{
		SerialNumber:          serial(tb),
		Subject:               pkix.Name{CommonName: name, Organization: []string{"certtest"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(10 * 365 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
}

func create(tb testing.TB, tmpl, parent *x509.Certificate, pub crypto.PublicKey, key crypto.Signer) *x509.Certificate {
	tb.Helper()
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, key)
	if err != nil {
		tb.Fatalf("certtest: creating certificate: %v", err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		tb.Fatalf("certtest: %v", err)
	}
	return c
}

func serial(tb testing.TB) *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	if err != nil {
		tb.Fatalf("certtest: %v", err)
	}
	return n.Add(n, big.NewInt(1))
}
