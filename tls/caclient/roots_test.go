package caclient_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ztunnel-go/ztunnel/config"
	"github.com/ztunnel-go/ztunnel/internal/syncbuf"
	"github.com/ztunnel-go/ztunnel/internal/testfile"
	"github.com/ztunnel-go/ztunnel/internal/testwait"
	"github.com/ztunnel-go/ztunnel/tls/caclient"
	"github.com/ztunnel-go/ztunnel/tls/caclient/catest"
	"github.com/ztunnel-go/ztunnel/tls/certs"
	"github.com/ztunnel-go/ztunnel/tls/certs/certtest"
)

// servingCert is istiod's serving certificate for caHost, signed by root.
func servingCert(t *testing.T, root *certtest.CA) tls.Certificate {
	t.Helper()
	return root.IssueLeafTemplate(t, &x509.Certificate{
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames: []string{caHost},
	})
}

func rootPEM(ca *certtest.CA) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Cert.Raw})
}

// TestRootFileRotation rotates the root that istiod's serving certificate chains to, the way a
// mesh root rotation does: istiod restarts with a certificate of the new root, and the root file
// (the istio-ca-root-cert ConfigMap) now holds the new root. The client's reconnection must
// verify with the file's new contents; a file that then becomes unusable keeps the roots read
// before, and a server of a root the file never held is still refused.
func TestRootFileRotation(t *testing.T) {
	root1 := certtest.NewCA(t, "istiod TLS root 1")
	root2 := certtest.NewCA(t, "istiod TLS root 2")
	stranger := certtest.NewCA(t, "unknown root")
	signer, err := certs.NewFakeCA("cluster.local")
	if err != nil {
		t.Fatal(err)
	}
	srv := catest.Start(t, "127.0.0.1:0", servingCert(t, root1), signer)
	addr := srv.Addr()
	rootFile := filepath.Join(t.TempDir(), "root-cert.pem")
	testfile.Replace(t, rootFile, rootPEM(root1))
	logs := &syncbuf.Buffer{}
	c, err := caclient.New(caclient.DialConfig{
		Address:     "https://" + addr,
		RootCert:    config.RootCert{Kind: config.RootCertFile, Path: rootFile},
		AltHostname: caHost,
		Log:         slog.New(slog.NewTextHandler(logs, nil)),
		MinBackoff:  20 * time.Millisecond,
		MaxBackoff:  100 * time.Millisecond,
	}, false)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	// reached makes one request and reports whether it got through TLS to s (which records
	// every request it receives; the CSR here is not valid, so the request itself fails).
	var lastErr error
	reached := func(s *catest.Server) bool {
		before := len(s.Calls())
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_, lastErr = c.Sign(ctx, workloadID, []byte("not a CSR"), time.Hour)
		return len(s.Calls()) > before
	}
	// restart stops the current server and serves cert on the same address.
	restart := func(cert tls.Certificate) *catest.Server {
		srv.Stop()
		srv = catest.Start(t, addr, cert, signer)
		return srv
	}

	if !reached(srv) {
		t.Fatalf("no request reached the CA before the rotation: %v", lastErr)
	}

	testfile.Replace(t, rootFile, rootPEM(root2))
	restart(servingCert(t, root2))
	testwait.Until(t, "a request verified with the rotated root", 10*time.Second, func() bool { return reached(srv) })
	if !strings.Contains(logs.String(), "root certificate file changed") {
		t.Errorf("the change of roots was not logged:\n%s", logs)
	}

	// A half-written file: the roots read before (root2) stay in use, and the problem is logged.
	testfile.Replace(t, rootFile, []byte("-----BEGIN CERT"))
	restart(servingCert(t, root2))
	testwait.Until(t, "a request verified with the roots kept", 10*time.Second, func() bool { return reached(srv) })
	if !strings.Contains(logs.String(), "cannot use the root certificate file") {
		t.Errorf("the unusable file was not logged:\n%s", logs)
	}

	// Verification is as strict as ever: a server whose root is in neither file is refused.
	restart(servingCert(t, stranger))
	deadline := time.Now().Add(1500 * time.Millisecond)
	for time.Now().Before(deadline) {
		if reached(srv) {
			t.Fatal("a request reached a CA whose certificate chains to an unknown root")
		}
	}
	if lastErr == nil || !strings.Contains(lastErr.Error(), "x509") {
		t.Errorf("request to the stranger failed with %v, want a certificate verification error", lastErr)
	}
}
