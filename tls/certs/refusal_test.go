package certs

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"net/url"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"
)

// TestHandshakeRefusedMore adds the refusals of issue 7 that
// TestHandshakeRefused does not cover: certificates not yet valid, SANs that
// are not one SPIFFE ID of the peer, and two SPIFFE URIs. Each is refused
// during the handshake, before any application byte moves.
func TestHandshakeRefusedMore(t *testing.T) {
	m, ca := dirCAManager(t, ManagerOptions{})
	now := time.Now()
	futureClient := ca.IssueLeaf(t, clientID, now.Add(time.Hour), now.Add(2*time.Hour))
	futureServer := ca.IssueLeaf(t, serverID, now.Add(time.Hour), now.Add(2*time.Hour))
	leafWith := func(dns []string, uris ...string) tls.Certificate {
		var us []*url.URL
		for _, s := range uris {
			u, err := url.Parse(s)
			if err != nil {
				t.Fatal(err)
			}
			us = append(us, u)
		}
		return ca.IssueLeafTemplate(t, &x509.Certificate{
			NotBefore:             now.Add(-time.Hour),
			NotAfter:              now.Add(time.Hour),
			KeyUsage:              x509.KeyUsageDigitalSignature,
			ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
			BasicConstraintsValid: true,
			DNSNames:              dns,
			URIs:                  us,
		})
	}
	dnsOnly := leafWith([]string{"server.ns-b.svc.cluster.local"})
	httpsURI := leafWith(nil, "https://server.ns-b/sa/server")
	twoIDs := leafWith(nil, serverID.String(), clientID.String())
	plainClient := func(certs ...tls.Certificate) *tls.Config {
		return &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"h2"}, MinVersion: tls.VersionTLS13, Certificates: certs}
	}
	plainServer := func(cert tls.Certificate) func() *tls.Config {
		return func() *tls.Config {
			return &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"h2"}}
		}
	}
	ourServer := func() *tls.Config { return m.ServerConfig(serverID) }
	ourClient := func() *tls.Config { return clientConfig(t, m, clientID, serverID) }
	tests := []struct {
		name    string
		server  func() *tls.Config
		client  func() *tls.Config
		wantErr string
	}{
		{"client certificate not yet valid", ourServer, func() *tls.Config { return plainClient(futureClient) }, "not yet valid"},
		{"server certificate not yet valid", plainServer(futureServer), ourClient, "not yet valid"},
		{"server certificate with a DNS SAN only", plainServer(dnsOnly), ourClient, "no spiffe:// URI SAN"},
		{"server certificate with a non-SPIFFE URI", plainServer(httpsURI), ourClient, "no spiffe:// URI SAN"},
		{"server certificate with two SPIFFE IDs", plainServer(twoIDs), ourClient, "want exactly one"},
		{"client certificate with a DNS SAN only", ourServer, func() *tls.Config { return plainClient(dnsOnly) }, "no spiffe:// URI SAN"},
		{"client certificate with two SPIFFE IDs", ourServer, func() *tls.Config { return plainClient(twoIDs) }, "want exactly one"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr, res := serveOne(t, tt.server())
			c := dialOne(t, addr, tt.client())
			s := <-res
			if c.handshakeErr == nil && c.readErr == nil {
				t.Fatalf("client completed an exchange (got %q)", c.got)
			}
			if len(s.got) != 0 || len(c.got) != 0 {
				t.Errorf("application data moved: server got %q, client got %q", s.got, c.got)
			}
			errs := errors.Join(c.handshakeErr, c.readErr, s.handshakeErr)
			if errs == nil || !strings.Contains(errs.Error(), tt.wantErr) {
				t.Errorf("errors %v, want one containing %q", errs, tt.wantErr)
			}
		})
	}
}

// TestPlaintextH2CRefused: a client speaking cleartext HTTP/2 (h2c: the
// client preface, SETTINGS and a CONNECT) to the HBONE port never gets its
// bytes read as a request; the TLS server fails the handshake and answers
// with nothing that parses as HTTP/2.
func TestPlaintextH2CRefused(t *testing.T) {
	m := fakeCAManager(t, ManagerOptions{})
	addr, res := serveOne(t, m.ServerConfig(serverID))
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(5 * time.Second))
	fr := http2.NewFramer(nc, nc)
	io.WriteString(nc, http2.ClientPreface)
	fr.WriteSettings()
	fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: []byte{0x82}, EndHeaders: true})
	s := <-res
	if s.handshakeErr == nil {
		t.Fatal("the TLS server completed a handshake with an h2c client")
	}
	if len(s.got) != 0 {
		t.Errorf("server read application data %q", s.got)
	}
	// What comes back (a TLS alert at most) is not an HTTP/2 frame stream.
	if f, err := fr.ReadFrame(); err == nil {
		t.Errorf("h2c client read an HTTP/2 frame: %v", f)
	}
}
