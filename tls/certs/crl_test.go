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
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ztunnel-go/ztunnel/internal/testfile"
	"github.com/ztunnel-go/ztunnel/internal/testwait"
	"github.com/ztunnel-go/ztunnel/tls/certs/certtest"
	"github.com/ztunnel-go/ztunnel/tls/identity"
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
	testfile.Replace(t, path, crlPEM(crlDER(t, inter, client.SerialNumber)))
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { crl.Watch(ctx, 10*time.Millisecond) })
	defer func() { cancel(); wg.Wait() }()
	testwait.Until(t, "the new list to be taken", 5*time.Second, func() bool { return crl.Len() == 1 })
	if _, serr, _, _ := handshakeErrs(t, m); !errors.Is(serr, ErrRevoked) {
		t.Errorf("after the reload: server error %v, want ErrRevoked", serr)
	}
	testfile.Replace(t, path, []byte("garbage"))
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
		s.lists.Store(newCRLState(lists))
		chain := ca.Chain()
		if errors.Is(s.Check(chain), ErrRevoked) && !s.MayRevoke(chain) {
			t.Fatal("Check revokes a chain MayRevoke clears")
		}
	})
}

// TestRevokedEstablished: Manager.Revoked judges a chain a peer presented in an earlier
// handshake against the current lists: revoked when a list signed by the issuer of one of its
// certificates names it, whatever lists merely carry the issuer's name; not judged (an error)
// when the local identity has no roots; each reload that parses advances Generation and closes
// Changed.
func TestRevokedEstablished(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ca-crl.pem")
	crl, err := NewCRLSet(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	m, inter := dirCAManager(t, ManagerOptions{CRL: crl})
	addr, res := serveOne(t, m.ServerConfig(serverID))
	if c := dialOne(t, addr, clientConfig(t, m, clientID, serverID)); c.handshakeErr != nil {
		t.Fatal(c.handshakeErr)
	}
	s := <-res
	if s.handshakeErr != nil {
		t.Fatal(s.handshakeErr)
	}
	peer, at := s.state.PeerCertificates, time.Now()
	if len(peer) < 2 {
		t.Fatalf("the client presented %d certificates, want its leaf and intermediate", len(peer))
	}
	if m.CRL() != crl {
		t.Fatal("CRL() is not the set the Manager was given")
	}
	if revoked, err := m.Revoked(serverID, peer, at); revoked || err != nil {
		t.Fatalf("without lists: %v, %v", revoked, err)
	}
	impostor := certtest.NewCA(t, "intermediate") // the issuer's name, another key
	for _, c := range []struct {
		name    string
		file    []byte
		may     bool // MayRevoke
		revoked bool
	}{
		{"other serials", crlPEM(crlDER(t, inter, big.NewInt(1))), false, false},
		{"leaf named by a list the issuer did not sign", crlPEM(crlDER(t, impostor, peer[0].SerialNumber)), true, false},
		{"leaf revoked", crlPEM(crlDER(t, inter, big.NewInt(1), peer[0].SerialNumber)), true, true},
		{"intermediate revoked by the root", crlPEM(crlDER(t, inter.Root(), inter.Cert.SerialNumber)), true, true},
	} {
		gen, changed := crl.Generation(), crl.Changed()
		os.WriteFile(path, c.file, 0o644)
		if err := crl.Reload(); err != nil {
			t.Fatal(err)
		}
		if crl.Generation() != gen+1 {
			t.Errorf("%s: generation %d after %d, want one more", c.name, crl.Generation(), gen)
		}
		select {
		case <-changed:
		default:
			t.Errorf("%s: Changed not closed by the reload", c.name)
		}
		if got := crl.MayRevoke(peer); got != c.may {
			t.Errorf("%s: MayRevoke %v, want %v", c.name, got, c.may)
		}
		if revoked, err := m.Revoked(serverID, peer, at); revoked != c.revoked || err != nil {
			t.Errorf("%s: Revoked %v, %v; want %v", c.name, revoked, err, c.revoked)
		}
	}
	// A chain that cannot be judged is not revoked, and says why.
	other := identity.ID{TrustDomain: "cluster.local", Namespace: "x", ServiceAccount: "nobody"}
	if revoked, err := m.Revoked(other, peer, at); revoked || err == nil {
		t.Errorf("for an identity without roots: %v, %v; want false and an error", revoked, err)
	}
	if revoked, err := m.Revoked(serverID, peer, at.AddDate(50, 0, 0)); revoked || err == nil {
		t.Errorf("at a time the chain was not valid: %v, %v; want false and an error", revoked, err)
	}
	// A file that does not parse changes nothing.
	gen := crl.Generation()
	os.WriteFile(path, []byte("garbage"), 0o644)
	if crl.Reload() == nil || crl.Generation() != gen {
		t.Errorf("a malformed file: generation %d, want %d and an error", crl.Generation(), gen)
	}
}

// TestCRLCheckAllocs: a handshake's check of a chain no list names costs no allocation, however
// many entries the lists hold.
func TestCRLCheckAllocs(t *testing.T) {
	inter := certtest.NewCA(t, "root").NewIntermediate(t, "intermediate")
	serials := make([]*big.Int, 1000)
	for i := range serials {
		serials[i] = big.NewInt(int64(i + 1))
	}
	s := &CRLSet{}
	s.lists.Store(newCRLState([]*x509.RevocationList{mustParseCRL(t, crlDER(t, inter, serials...))}))
	chain := inter.Chain()
	if allocs := testing.AllocsPerRun(100, func() {
		if err := s.Check(chain); err != nil {
			t.Fatal(err)
		}
	}); allocs != 0 {
		t.Errorf("Check allocates %v times, want 0", allocs)
	}
	if !s.MayRevoke([]*x509.Certificate{{RawIssuer: inter.Cert.RawSubject, SerialNumber: big.NewInt(500)}}) {
		t.Error("MayRevoke clears serial 500, which the list names")
	}
}

func mustParseCRL(t *testing.T, der []byte) *x509.RevocationList {
	t.Helper()
	l, err := x509.ParseRevocationList(der)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// TestCRLSetOnChange: each reload that parses calls the callbacks once, in order; a reload that
// does not parse calls none, and a cancelled callback is not called again.
func TestCRLSetOnChange(t *testing.T) {
	path := filepath.Join(t.TempDir(), "crl.pem")
	if err := os.WriteFile(path, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	s, err := NewCRLSet(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	var a, b []uint64 // the generation each call saw
	cancelA := s.OnChange(func() { a = append(a, s.Generation()) })
	cancelB := s.OnChange(func() { b = append(b, s.Generation()) })
	defer cancelB()
	gen := s.Generation()
	if err := s.Reload(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte("garbage"), 0o644); err != nil {
		t.Fatal(err)
	}
	if s.Reload() == nil {
		t.Fatal("garbage parsed")
	}
	cancelA()
	cancelA() // a second cancel is harmless
	if err := os.WriteFile(path, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := s.Reload(); err != nil {
		t.Fatal(err)
	}
	if want := []uint64{gen + 1}; !slices.Equal(a, want) {
		t.Errorf("cancelled callback saw generations %v, want %v", a, want)
	}
	if want := []uint64{gen + 1, gen + 2}; !slices.Equal(b, want) {
		t.Errorf("callback saw generations %v, want %v", b, want)
	}
}
