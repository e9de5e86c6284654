package certs

import (
	"context"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/ztunnel-go/ztunnel/tls/certs/certtest"
	"github.com/ztunnel-go/ztunnel/tls/identity"
)

var testID = identity.ID{TrustDomain: "cluster.local", Namespace: "default", ServiceAccount: "app"}

// signFor makes a CSR with a new key and has ca sign it for id.
func signFor(t *testing.T, s Signer, id identity.ID, ttl time.Duration) (*ecdsa.PrivateKey, []string) {
	t.Helper()
	key := certtest.NewKey(t)
	csr, err := newCSR(key, id)
	if err != nil {
		t.Fatal(err)
	}
	pems, err := s.Sign(context.Background(), id, csr, ttl)
	if err != nil {
		t.Fatalf("Sign: %v", err)
	}
	return key, pems
}

// verifyPEMChain checks that pems (leaf first, roots last) verify against
// wantRoot and returns the parsed leaf.
func verifyPEMChain(t *testing.T, pems []string, wantRoot *x509.Certificate) *x509.Certificate {
	t.Helper()
	var certs []*x509.Certificate
	for _, p := range pems[:len(pems)-1] {
		cs, err := parseCertsPEM([]byte(p))
		if err != nil {
			t.Fatal(err)
		}
		certs = append(certs, cs...)
	}
	roots, err := parseCertsPEM([]byte(pems[len(pems)-1]))
	if err != nil {
		t.Fatal(err)
	}
	if len(roots) != 1 || !roots[0].Equal(wantRoot) {
		t.Fatalf("last PEM holds %d certificates, want exactly the root %q", len(roots), wantRoot.Subject)
	}
	opts := x509.VerifyOptions{Roots: x509.NewCertPool(), Intermediates: x509.NewCertPool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	opts.Roots.AddCert(wantRoot)
	for _, c := range certs[1:] {
		opts.Intermediates.AddCert(c)
	}
	if _, err := certs[0].Verify(opts); err != nil {
		t.Fatalf("issued chain does not verify: %v", err)
	}
	return certs[0]
}

func TestLoadLocalCALayouts(t *testing.T) {
	tests := []struct {
		name string
		// build writes the directory and returns the root and the number of
		// PEM elements Sign must return.
		build func(t *testing.T, dir string) (*x509.Certificate, int)
	}{
		{"root signs directly", func(t *testing.T, dir string) (*x509.Certificate, int) {
			root := certtest.NewCA(t, "root")
			root.WriteCACerts(t, dir, false)
			return root.Cert, 2
		}},
		{"root signs directly, cert-chain.pem holds the root", func(t *testing.T, dir string) (*x509.Certificate, int) {
			root := certtest.NewCA(t, "root")
			root.WriteCACerts(t, dir, true)
			return root.Cert, 2
		}},
		{"intermediate with cert-chain.pem", func(t *testing.T, dir string) (*x509.Certificate, int) {
			root := certtest.NewCA(t, "root")
			inter := root.NewIntermediate(t, "intermediate")
			inter.WriteCACerts(t, dir, true)
			return root.Cert, 3
		}},
		{"intermediate without cert-chain.pem", func(t *testing.T, dir string) (*x509.Certificate, int) {
			root := certtest.NewCA(t, "root")
			inter := root.NewIntermediate(t, "intermediate")
			inter.WriteCACerts(t, dir, false)
			return root.Cert, 3
		}},
		{"two intermediates, cert-chain.pem required", func(t *testing.T, dir string) (*x509.Certificate, int) {
			root := certtest.NewCA(t, "root")
			i2 := root.NewIntermediate(t, "i1").NewIntermediate(t, "i2")
			i2.WriteCACerts(t, dir, true)
			return root.Cert, 4
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			root, wantLen := tt.build(t, dir)
			ca, err := LoadLocalCA(dir)
			if err != nil {
				t.Fatalf("LoadLocalCA: %v", err)
			}
			if got := ca.Roots(); len(got) != 1 || !got[0].Equal(root) {
				t.Errorf("Roots() = %d certificates, want the root", len(got))
			}
			key, pems := signFor(t, ca, testID, time.Hour)
			if len(pems) != wantLen {
				t.Fatalf("Sign returned %d PEM elements, want %d", len(pems), wantLen)
			}
			leaf := verifyPEMChain(t, pems, root)
			if got, err := identity.FromCertificate(leaf); err != nil || got != testID {
				t.Errorf("leaf identity = %v, %v; want %v", got, err, testID)
			}
			if _, err := newCertificate(testID, key, pems, time.Now()); err != nil {
				t.Errorf("newCertificate on the answer: %v", err)
			}
		})
	}
}

func TestLoadLocalCAKeyFormats(t *testing.T) {
	ecKey := certtest.NewKey(t)
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	sec1, err := x509.MarshalECPrivateKey(ecKey)
	if err != nil {
		t.Fatal(err)
	}
	ecParams := pem.EncodeToMemory(&pem.Block{Type: "EC PARAMETERS", Bytes: []byte{0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07}})
	tests := []struct {
		name string
		key  any
		pem  []byte
	}{
		{"EC SEC1", ecKey, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: sec1})},
		{"EC SEC1 after EC PARAMETERS", ecKey, append(ecParams, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: sec1})...)},
		{"EC PKCS#8", ecKey, certtest.KeyPEM(t, ecKey)},
		{"RSA PKCS#1", rsaKey, pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(rsaKey)})},
		{"RSA PKCS#8", rsaKey, certtest.KeyPEM(t, rsaKey)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := selfSignedCA(t, tt.key)
			dir := t.TempDir()
			certtest.WriteFile(t, filepath.Join(dir, CACertFile), certtest.CertPEM(root))
			certtest.WriteFile(t, filepath.Join(dir, RootCertFile), certtest.CertPEM(root))
			certtest.WriteFile(t, filepath.Join(dir, CAKeyFile), tt.pem)
			ca, err := LoadLocalCA(dir)
			if err != nil {
				t.Fatalf("LoadLocalCA: %v", err)
			}
			_, pems := signFor(t, ca, testID, time.Hour)
			verifyPEMChain(t, pems, root)
		})
	}
}

// selfSignedCA makes a root CA certificate for any supported key type.
func selfSignedCA(t *testing.T, key any) *x509.Certificate {
	t.Helper()
	var pub any
	switch k := key.(type) {
	case *ecdsa.PrivateKey:
		pub = k.Public()
	case *rsa.PrivateKey:
		pub = k.Public()
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(7),
		Subject:               pkix.Name{CommonName: "root"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, pub, key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestLoadLocalCAErrors(t *testing.T) {
	other := certtest.NewCA(t, "other root")
	leafTLS := other.IssueLeaf(t, testID, time.Now().Add(-time.Hour), time.Now().Add(time.Hour))
	tests := []struct {
		name    string
		mutate  func(t *testing.T, dir string)
		wantErr []string // all must appear in the error
	}{
		{"missing ca-cert.pem", remove(CACertFile), []string{CACertFile}},
		{"garbage ca-cert.pem", write(CACertFile, []byte("not a certificate")), []string{CACertFile, "no PEM"}},
		{"ca-cert.pem is a private key", write(CACertFile, certtest.KeyPEM(t, certtest.NewKey(t))), []string{CACertFile, "PRIVATE KEY"}},
		{"ca-cert.pem is not a CA", write(CACertFile, certtest.CertPEM(leafTLS.Leaf)), []string{CACertFile, "not a CA"}},
		{"missing ca-key.pem", remove(CAKeyFile), []string{CAKeyFile}},
		{"garbage ca-key.pem", write(CAKeyFile, []byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")), []string{CAKeyFile}},
		{"empty ca-key.pem", write(CAKeyFile, nil), []string{CAKeyFile, "no PEM"}},
		{"ca-key.pem of another CA", write(CAKeyFile, certtest.KeyPEM(t, other.Key)), []string{CAKeyFile, CACertFile, "does not match"}},
		{"missing root-cert.pem", remove(RootCertFile), []string{RootCertFile}},
		{"garbage root-cert.pem", write(RootCertFile, []byte("garbage")), []string{RootCertFile}},
		{"trailing data in root-cert.pem", appendTo(RootCertFile, []byte("trailing")), []string{RootCertFile, "trailing"}},
		{"root-cert.pem of another CA", write(RootCertFile, certtest.CertPEM(other.Cert)), []string{CACertFile, "does not chain", RootCertFile}},
		{"garbage cert-chain.pem", write(CertChainFile, []byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")), []string{CertChainFile}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			root := certtest.NewCA(t, "root")
			root.NewIntermediate(t, "intermediate").WriteCACerts(t, dir, true)
			tt.mutate(t, dir)
			ca, err := LoadLocalCA(dir)
			if err == nil {
				t.Fatalf("LoadLocalCA succeeded (%v), want an error", ca)
			}
			for _, want := range tt.wantErr {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not contain %q", err, want)
				}
			}
		})
	}
}

func remove(name string) func(*testing.T, string) {
	return func(t *testing.T, dir string) {
		if err := os.Remove(filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
}

func write(name string, data []byte) func(*testing.T, string) {
	return func(t *testing.T, dir string) { certtest.WriteFile(t, filepath.Join(dir, name), data) }
}

func appendTo(name string, data []byte) func(*testing.T, string) {
	return func(t *testing.T, dir string) {
		old, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		certtest.WriteFile(t, filepath.Join(dir, name), append(old, data...))
	}
}

func TestSignIgnoresCSRNames(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ca, err := NewFakeCA("cluster.local")
		if err != nil {
			t.Fatal(err)
		}
		key := certtest.NewKey(t)
		evil, _ := url.Parse("spiffe://evil/ns/kube-system/sa/admin")
		der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
			Subject:        pkix.Name{CommonName: "evil", Organization: []string{"evil"}},
			DNSNames:       []string{"evil.example"},
			EmailAddresses: []string{"evil@example"},
			IPAddresses:    []net.IP{net.IPv4(10, 0, 0, 1)},
			URIs:           []*url.URL{evil},
		}, key)
		if err != nil {
			t.Fatal(err)
		}
		csr := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
		now := time.Now()
		pems, err := ca.Sign(context.Background(), testID, csr, 3*time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		leaf := verifyPEMChain(t, pems, ca.Roots()[0])
		if got, want := len(leaf.URIs), 1; got != want {
			t.Fatalf("leaf has %d URI SANs, want %d", got, want)
		}
		if got, want := leaf.URIs[0].String(), testID.String(); got != want {
			t.Errorf("URI SAN = %q, want %q", got, want)
		}
		if len(leaf.DNSNames)+len(leaf.EmailAddresses)+len(leaf.IPAddresses) != 0 {
			t.Errorf("leaf carries CSR names: %v %v %v", leaf.DNSNames, leaf.EmailAddresses, leaf.IPAddresses)
		}
		if len(leaf.Subject.Names) != 0 {
			t.Errorf("leaf subject = %q, want empty", leaf.Subject)
		}
		for _, ext := range leaf.Extensions {
			if ext.Id.Equal(oidSubjectAltName) && !ext.Critical {
				t.Error("SAN extension of a subject-less certificate is not critical")
			}
		}
		if got, want := leaf.KeyUsage, x509.KeyUsageDigitalSignature|x509.KeyUsageKeyEncipherment; got != want {
			t.Errorf("KeyUsage = %v, want %v", got, want)
		}
		if got := leaf.ExtKeyUsage; len(got) != 2 || got[0] != x509.ExtKeyUsageServerAuth || got[1] != x509.ExtKeyUsageClientAuth {
			t.Errorf("ExtKeyUsage = %v, want serverAuth, clientAuth", got)
		}
		if leaf.IsCA {
			t.Error("leaf is a CA")
		}
		if got, want := leaf.NotBefore, now.Add(-Backdate); !got.Equal(want) {
			t.Errorf("NotBefore = %v, want %v", got, want)
		}
		if got, want := leaf.NotAfter, now.Add(3*time.Hour); !got.Equal(want) {
			t.Errorf("NotAfter = %v, want %v", got, want)
		}
		if !samePublicKey(leaf.PublicKey, key.Public()) {
			t.Error("leaf does not carry the CSR's key")
		}
	})
}

func TestSignErrors(t *testing.T) {
	ca, err := NewFakeCA("cluster.local")
	if err != nil {
		t.Fatal(err)
	}
	key := certtest.NewKey(t)
	good, err := newCSR(key, testID)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(good)
	tampered := append([]byte(nil), block.Bytes...)
	tampered[len(tampered)-1] ^= 0xff
	badSig := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: tampered})
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()

	tests := []struct {
		name    string
		ctx     context.Context
		id      identity.ID
		csr     []byte
		ttl     time.Duration
		wantErr string
	}{
		{"bad CSR signature", context.Background(), testID, badSig, time.Hour, "signature"},
		{"garbage CSR", context.Background(), testID, []byte("garbage"), time.Hour, "no PEM"},
		{"certificate instead of CSR", context.Background(), testID, certtest.CertPEM(ca.Roots()[0]), time.Hour, "unexpected PEM"},
		{"zero ttl", context.Background(), testID, good, 0, "lifetime"},
		{"invalid identity", context.Background(), identity.ID{TrustDomain: "td", Namespace: "a/b", ServiceAccount: "c"}, good, time.Hour, "identity"},
		{"zero identity", context.Background(), identity.ID{}, good, time.Hour, "identity"},
		{"cancelled", cancelled, testID, good, time.Hour, "canceled"},
	}
	for _, tt := range tests {
		pems, err := ca.Sign(tt.ctx, tt.id, tt.csr, tt.ttl)
		if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
			t.Errorf("%s: Sign() = %d PEMs, %v; want error containing %q", tt.name, len(pems), err, tt.wantErr)
		}
	}
}

func TestSignCapsAtCAExpiry(t *testing.T) {
	ca, err := NewFakeCA("cluster.local")
	if err != nil {
		t.Fatal(err)
	}
	_, pems := signFor(t, ca, testID, 100*365*24*time.Hour)
	leaf := verifyPEMChain(t, pems, ca.Roots()[0])
	if got, want := leaf.NotAfter, ca.Roots()[0].NotAfter; !got.Equal(want) {
		t.Errorf("NotAfter = %v, want the CA's %v", got, want)
	}
}

func TestNewCSR(t *testing.T) {
	key := certtest.NewKey(t)
	p, err := newCSR(key, testID)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := parseCSRPEM(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := csr.CheckSignature(); err != nil {
		t.Errorf("CSR signature: %v", err)
	}
	if len(csr.Subject.Names) != 0 {
		t.Errorf("CSR subject = %q, want empty", csr.Subject)
	}
	if len(csr.Extensions) != 1 || !csr.Extensions[0].Id.Equal(oidSubjectAltName) || !csr.Extensions[0].Critical {
		t.Fatalf("CSR extensions = %+v, want one critical subjectAltName", csr.Extensions)
	}
	uris, err := identity.SANURIs(csr.Extensions[0].Value)
	if err != nil || len(uris) != 1 || uris[0] != testID.String() {
		t.Errorf("CSR URIs = %q, %v; want [%q]", uris, err, testID)
	}
	if len(csr.DNSNames)+len(csr.IPAddresses)+len(csr.EmailAddresses) != 0 {
		t.Errorf("CSR has other SANs")
	}
	if !samePublicKey(csr.PublicKey, key.Public()) {
		t.Error("CSR carries another key")
	}
}

func FuzzParseCertsPEM(f *testing.F) {
	root := certtest.NewCA(f, "root")
	f.Add(certtest.CertPEM(root.Cert))
	f.Add(append(certtest.CertPEM(root.Cert), certtest.CertPEM(root.Cert)...))
	f.Add([]byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"))
	f.Add([]byte("garbage"))
	f.Fuzz(func(t *testing.T, data []byte) {
		certs, err := parseCertsPEM(data)
		if err == nil && len(certs) == 0 {
			t.Fatal("no error and no certificate")
		}
	})
}

func FuzzParsePrivateKeyPEM(f *testing.F) {
	key := certtest.NewKey(f)
	f.Add(certtest.KeyPEM(f, key))
	sec1, _ := x509.MarshalECPrivateKey(key)
	f.Add(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: sec1}))
	f.Add([]byte("-----BEGIN EC PARAMETERS-----\nBggqhkjOPQMBBw==\n-----END EC PARAMETERS-----\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		k, err := parsePrivateKeyPEM(data)
		if err == nil && k == nil {
			t.Fatal("no error and no key")
		}
	})
}

func FuzzParseCSRPEM(f *testing.F) {
	good, _ := newCSR(certtest.NewKey(f), testID)
	f.Add(good)
	f.Add([]byte("-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n"))
	ca, err := NewFakeCA("td")
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		// Signing arbitrary input must never panic, and must only succeed
		// for a CSR whose signature checks.
		pems, err := ca.Sign(context.Background(), testID, data, time.Hour)
		if err != nil {
			return
		}
		csr, err := parseCSRPEM(data)
		if err != nil || csr.CheckSignature() != nil {
			t.Fatalf("Sign accepted a CSR that does not verify (%d PEMs)", len(pems))
		}
	})
}
