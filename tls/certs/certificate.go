package certs

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"fmt"
	"time"

	"github.com/ztunnel-go/ztunnel/tls/identity"
)

// Certificate is a workload certificate with its key and trust bundle. It is
// immutable once returned by the Manager.
type Certificate struct {
	ID identity.ID
	// TLS holds the chain (leaf and intermediates, no root) and the private key,
	// with Leaf set.
	TLS tls.Certificate
	// Leaf is the parsed leaf certificate.
	Leaf *x509.Certificate
	// Roots is the trust bundle: the certificates of the last PEM element the
	// signer returned.
	Roots *x509.CertPool
	// NotBefore and NotAfter are the leaf's validity.
	NotBefore, NotAfter time.Time

	chain     []*x509.Certificate // leaf and intermediates, for Dump
	rootCerts []*x509.Certificate // the roots in Roots, for Dump
}

// ValidAt reports whether t is before NotAfter. NotBefore is not checked:
// it is backdated by the CA and a certificate just issued by a CA whose clock
// runs ahead is still ours to use.
func (c *Certificate) ValidAt(t time.Time) bool { return t.Before(c.NotAfter) }

// oidSubjectAltName is id-ce-subjectAltName.
var oidSubjectAltName = asn1.ObjectIdentifier{2, 5, 29, 17}

// newCSR returns a PEM CSR for id signed by key. As ztunnel does, the subject
// is empty and the only extension is a critical subjectAltName holding the
// URI of id.
func newCSR(key crypto.Signer, id identity.ID) ([]byte, error) {
	san, err := asn1.Marshal([]asn1.RawValue{{Class: asn1.ClassContextSpecific, Tag: 6, Bytes: []byte(id.String())}})
	if err != nil {
		return nil, fmt.Errorf("CSR: %w", err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		ExtraExtensions: []pkix.Extension{{Id: oidSubjectAltName, Critical: true, Value: san}},
	}, key)
	if err != nil {
		return nil, fmt.Errorf("CSR: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}), nil
}

// newKey generates the workload key: ECDSA P-256.
func newKey() (*ecdsa.PrivateKey, error) {
	return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
}

// newCertificate assembles a Certificate from a signer's answer (leaf first,
// roots last) and the key the CSR was made with. It checks that the leaf names
// exactly id, carries key's public key and has not expired at now.
func newCertificate(id identity.ID, key crypto.Signer, pems []string, now time.Time) (*Certificate, error) {
	if len(pems) < 2 {
		return nil, fmt.Errorf("signer returned %d PEM certificates, want the leaf, any intermediates and the root", len(pems))
	}
	var chain []*x509.Certificate
	for i, p := range pems[:len(pems)-1] {
		certs, err := parseCertsPEM([]byte(p))
		if err != nil {
			return nil, fmt.Errorf("signer's certificate %d: %w", i, err)
		}
		chain = append(chain, certs...)
	}
	roots, err := parseCertsPEM([]byte(pems[len(pems)-1]))
	if err != nil {
		return nil, fmt.Errorf("signer's root certificate: %w", err)
	}
	leaf := chain[0]
	got, err := identity.FromCertificate(leaf)
	if err != nil {
		return nil, fmt.Errorf("signer's leaf certificate: %w", err)
	}
	if got != id {
		return nil, fmt.Errorf("signer's leaf certificate is for %s, want %s", got, id)
	}
	if !samePublicKey(key.Public(), leaf.PublicKey) {
		return nil, fmt.Errorf("signer's leaf certificate for %s does not carry the CSR's public key", id)
	}
	if !now.Before(leaf.NotAfter) {
		return nil, fmt.Errorf("signer's leaf certificate for %s expired at %s", id, leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	pool := x509.NewCertPool()
	for _, r := range roots {
		pool.AddCert(r)
	}
	raw := make([][]byte, len(chain))
	for i, c := range chain {
		raw[i] = c.Raw
	}
	return &Certificate{
		ID:        id,
		TLS:       tls.Certificate{Certificate: raw, PrivateKey: key, Leaf: leaf},
		Leaf:      leaf,
		Roots:     pool,
		NotBefore: leaf.NotBefore,
		NotAfter:  leaf.NotAfter,
		chain:     chain,
		rootCerts: roots,
	}, nil
}

// refreshAt returns when c should be renewed: at half its lifetime, as
// ztunnel does. When that moment is already past (a heavily backdated short
// certificate), half the remaining lifetime from now is used instead.
func refreshAt(c *Certificate, now time.Time) time.Time {
	at := c.NotBefore.Add(c.NotAfter.Sub(c.NotBefore) / 2)
	if at.Before(now) {
		at = now.Add(c.NotAfter.Sub(now) / 2)
	}
	return at
}
