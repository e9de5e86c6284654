package certs

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ztunnel-go/ztunnel/internal/testwait"
	"github.com/ztunnel-go/ztunnel/tls/certs/certtest"
)

// crlDER returns a revocation list issued and signed by ca, revoking serials.
func crlDER(t testing.TB, ca *certtest.CA, serials ...*big.Int) []byte {
	t.Helper()
	tmpl := &x509.RevocationList{
		Number:     big.NewInt(time.Now().UnixNano()),
		ThisUpdate: time.Now().Add(-time.Hour),
		NextUpdate: time.Now().Add(-time.Minute), // past its next update: still enforced, as by ztunnel
	}
	for _, s := range serials {
		tmpl.RevokedCertificateEntries = append(tmpl.RevokedCertificateEntries,
			x509.RevocationListEntry{SerialNumber: s, RevocationTime: time.Now().Add(-time.Minute)})
	}
	der, err := x509.CreateRevocationList(rand.Reader, tmpl, ca.Cert, ca.Key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func crlPEM(ders ...[]byte) []byte {
	var out []byte
	out = append(out, "# comments and other blocks are skipped\n"...)
	out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte("not a crl")})...)
	for _, d := range ders {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: d})...)
	}
	return out
}

// handshakeErrs makes one handshake from clientID to serverID and returns what each side saw,
// with the certificates each presented (nil on failure).
func handshakeErrs(t *testing.T, m *Manager) (clientErr, serverErr error, client, server *x509.Certificate) {
	t.Helper()
	addr, res := serveOne(t, m.ServerConfig(serverID))
	c := dialOne(t, addr, clientConfig(t, m, clientID, serverID))
	s := <-res
	if c.handshakeErr == nil && len(c.state.PeerCertificates) > 0 {
		server = c.state.PeerCertificates[0]
	}
	if s.handshakeErr == nil && len(s.state.PeerCertificates) > 0 {
		client = s.state.PeerCertificates[0]
	}
	return c.handshakeErr, s.handshakeErr, client, server
}

// TestCRLEnforced: with a revocation list, a handshake is refused by the side whose peer
// presented a revoked certificate (client or server), or one issued by a revoked intermediate;
// lists that are not signed by the certificate's issuer are ignored; without a file yet,
// nothing is revoked.
func TestCRLEnforced(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ca-crl.pem")
	crl, err := NewCRLSet(path, nil)
	if err != nil {
		t.Fatalf("NewCRLSet on a missing file: %v", err)
	}
	m, inter := dirCAManager(t, ManagerOptions{CRL: crl})
	cerr, serr, client, server := handshakeErrs(t, m)
	if cerr != nil || serr != nil {
		t.Fatalf("without a list: client %v, server %v", cerr, serr)
	}
	impostor := certtest.NewCA(t, "intermediate") // same name as the issuer, another key
	for _, c := range []struct {
		name    string
		file    []byte
		refuser string // the side that must refuse with ErrRevoked: "client", "server" or none
	}{
		{"client revoked", crlPEM(crlDER(t, inter, client.SerialNumber)), "server"},
		{"server revoked", crlPEM(crlDER(t, inter, big.NewInt(12345), server.SerialNumber)), "client"},
		// The client checks the server's chain first.
		{"intermediate revoked by the root", crlPEM(crlDER(t, inter.Root(), inter.Cert.SerialNumber)), "client"},
		{"list not signed by the issuer", crlPEM(crlDER(t, impostor, client.SerialNumber, server.SerialNumber)), ""},
		{"other serials, DER", crlDER(t, inter, big.NewInt(1), big.NewInt(2)), ""},
		{"empty file", nil, ""},
	} {
		if err := os.WriteFile(path, c.file, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := crl.Reload(); err != nil {
			t.Fatalf("%s: Reload: %v", c.name, err)
		}
		cerr, serr, _, _ := handshakeErrs(t, m)
		switch c.refuser {
		case "":
			if cerr != nil || serr != nil {
				t.Errorf("%s: client %v, server %v; want both to pass", c.name, cerr, serr)
			}
		case "client":
			if !errors.Is(cerr, ErrRevoked) {
				t.Errorf("%s: client error %v, want ErrRevoked", c.name, cerr)
			}
		case "server":
			if !errors.Is(serr, ErrRevoked) {
				t.Errorf("%s: server error %v, want ErrRevoked", c.name, serr)
			}
		}
	}
}

// TestCRLReload: Watch takes a changed file, even one changed before it started, keeps the current lists when the new file does not
// parse, and ends with its context; NewCRLSet refuses a file that does not parse.
func TestCRLReload(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ca-crl.pem")
	if err := os.WriteFile(path, []byte("-----BEGIN X509 CRL-----\nbm90IGEgY3Js\n-----END X509 CRL-----\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := NewCRLSet(path, nil); err == nil || !strings.Contains(err.Error(), "revocation list 1") {
		t.Fatalf("NewCRLSet on a malformed list: %v, want an error naming it", err)
	}
	os.WriteFile(path, nil, 0o644)
	crl, err := NewCRLSet(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	m, inter := dirCAManager(t, ManagerOptions{CRL: crl})
	_, _, client, _ := handshakeErrs(t, m)

	// Changed after the load and before Watch starts (as between the app's New and Run): taken.
	os.WriteFile(path, crlPEM(crlDER(t, inter, client.SerialNumber)), 0o644)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { crl.Watch(ctx, 10*time.Millisecond) })
	defer func() { cancel(); wg.Wait() }()
	testwait.Until(t, "the new list to be taken", 5*time.Second, func() bool { return crl.Len() == 1 })
	if _, serr, _, _ := handshakeErrs(t, m); !errors.Is(serr, ErrRevoked) {
		t.Errorf("after the reload: server error %v, want ErrRevoked", serr)
	}
	os.WriteFile(path, []byte("garbage"), 0o644)
	time.Sleep(100 * time.Millisecond) // several polls
	if crl.Len() != 1 {
		t.Errorf("after a malformed file: %d lists, want the previous one", crl.Len())
	}
	if _, serr, _, _ := handshakeErrs(t, m); !errors.Is(serr, ErrRevoked) {
		t.Errorf("after a malformed file: server error %v, want ErrRevoked still", serr)
	}
}

// FuzzParseCRLs: any file content parses into lists or an error, without panicking; what
// parses is what Check can use.
func FuzzParseCRLs(f *testing.F) {
	ca := certtest.NewCA(f, "fuzz")
	der := crlDER(f, ca, big.NewInt(7))
	f.Add(der)
	f.Add(crlPEM(der, der))
	f.Add([]byte("-----BEGIN X509 CRL-----\nbm90IGEgY3Js\n-----END X509 CRL-----\n"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		lists, err := parseCRLs(data)
		if err != nil {
			return
		}
		for _, l := range lists {
			if l == nil {
				t.Fatal("nil list")
			}
		}
		s := &CRLSet{}
		s.lists.Store(&lists)
		s.Check(ca.Chain())
	})
}
