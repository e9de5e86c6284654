package caclient_test

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/ztunnel-go/ztunnel/config"
	"github.com/ztunnel-go/ztunnel/tls/caclient"
	"github.com/ztunnel-go/ztunnel/tls/caclient/catest"
	"github.com/ztunnel-go/ztunnel/tls/certs"
	"github.com/ztunnel-go/ztunnel/tls/certs/certtest"
	"github.com/ztunnel-go/ztunnel/tls/identity"
)

const caHost = "istiod.istio-system.svc"

// startCA runs a CA test server with a TLS certificate for caHost and returns
// it with a DialConfig that reaches it.
func startCA(t *testing.T) (*catest.Server, caclient.DialConfig) {
	t.Helper()
	tlsCA := certtest.NewCA(t, "istiod TLS root")
	srvCert := servingCert(t, tlsCA)
	signer, err := certs.NewFakeCA("cluster.local")
	if err != nil {
		t.Fatal(err)
	}
	srv := catest.Start(t, "127.0.0.1:0", srvCert, signer)
	rootFile := filepath.Join(t.TempDir(), "root-cert.pem")
	if err := os.WriteFile(rootFile, rootPEM(tlsCA), 0o600); err != nil {
		t.Fatal(err)
	}
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte("ca-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return srv, caclient.DialConfig{
		Address:     "https://" + srv.Addr(),
		RootCert:    config.RootCert{Kind: config.RootCertFile, Path: rootFile},
		AltHostname: caHost,
		Auth:        config.Auth{Kind: config.AuthTokenFile, Path: tokenFile, ClusterID: "Kubernetes"},
		Headers:     map[string]string{"x-ca": "1"},
	}
}

func newManager(t *testing.T, d caclient.DialConfig, impersonate bool, ttl time.Duration) *certs.Manager {
	t.Helper()
	c, err := caclient.New(d, impersonate)
	if err != nil {
		t.Fatal(err)
	}
	m := certs.NewManager(c, certs.ManagerOptions{TTL: ttl})
	t.Cleanup(func() {
		m.Close()
		c.Close()
	})
	return m
}

var workloadID = identity.ID{TrustDomain: "cluster.local", Namespace: "ns1", ServiceAccount: "sa1"}

func TestIssue(t *testing.T) {
	tests := []struct {
		name        string
		impersonate bool
	}{
		{"dedicated", false},
		{"shared mode impersonates", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, d := startCA(t)
			m := newManager(t, d, tt.impersonate, time.Hour)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			c, err := m.Get(ctx, workloadID)
			if err != nil {
				t.Fatal(err)
			}
			if got, _ := identity.FromCertificate(c.Leaf); got != workloadID {
				t.Errorf("certificate identity = %v, want %v", got, workloadID)
			}
			if got := c.NotAfter.Sub(c.Leaf.NotBefore) - certs.Backdate; got < 59*time.Minute || got > 61*time.Minute {
				t.Errorf("lifetime = %v, want SECRET_TTL 1h", got)
			}
			calls := srv.Calls()
			if len(calls) != 1 {
				t.Fatalf("%d calls, want 1", len(calls))
			}
			call := calls[0]
			wantImp := ""
			if tt.impersonate {
				wantImp = workloadID.String()
			}
			if call.Impersonated != wantImp {
				t.Errorf("ImpersonatedIdentity = %q, want %q", call.Impersonated, wantImp)
			}
			if call.TTL != time.Hour {
				t.Errorf("validity_duration = %v, want 1h", call.TTL)
			}
			headers := []struct{ key, want string }{{"authorization", "Bearer ca-token"}, {"clusterid", "Kubernetes"}, {"x-ca", "1"}}
			for _, h := range headers {
				if got := call.Metadata.Get(h.key); !slices.Equal(got, []string{h.want}) {
					t.Errorf("header %s = %v, want %s", h.key, got, h.want)
				}
			}
		})
	}
}

func TestRotateAtHalfLifeAndKeepThroughOutage(t *testing.T) {
	srv, d := startCA(t)
	m := newManager(t, d, false, 4*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	first, err := m.Get(ctx, workloadID)
	if err != nil {
		t.Fatal(err)
	}
	// Rotation at half of the remaining lifetime (~2 s).
	var second *certs.Certificate
	for second == nil || second == first {
		if ctx.Err() != nil {
			t.Fatal("certificate never rotated")
		}
		time.Sleep(50 * time.Millisecond)
		if second, err = m.Get(ctx, workloadID); err != nil {
			t.Fatal(err)
		}
	}
	rotatedAfter := second.Leaf.NotBefore.Add(certs.Backdate).Sub(first.Leaf.NotBefore.Add(certs.Backdate))
	if rotatedAfter < 1500*time.Millisecond || rotatedAfter > 3500*time.Millisecond {
		t.Errorf("rotated after %v, want about 2s (half of 4s)", rotatedAfter)
	}

	// Outage: the renewal fails and the current certificate keeps being served.
	srv.SetDown(true)
	for {
		calls := srv.Calls()
		if calls[len(calls)-1].Failed {
			break
		}
		if ctx.Err() != nil {
			t.Fatal("no renewal attempted during the outage")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if c, err := m.Get(ctx, workloadID); err != nil || c != second {
		t.Fatalf("during outage: %v, %v; want the current certificate", c, err)
	}
	srv.SetDown(false)
	for {
		c, err := m.Get(ctx, workloadID)
		if err != nil {
			t.Fatal(err)
		}
		if c != second {
			break
		}
		if ctx.Err() != nil {
			t.Fatal("no new certificate after the outage")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestDialErrors(t *testing.T) {
	tests := []struct {
		name string
		d    caclient.DialConfig
	}{
		{"plain http", caclient.DialConfig{Address: "http://istiod:15012", RootCert: config.RootCert{Kind: config.RootCertSystem}}},
		{"no port", caclient.DialConfig{Address: "https://istiod", RootCert: config.RootCert{Kind: config.RootCertSystem}}},
		{"missing root file", caclient.DialConfig{Address: "istiod:15012", RootCert: config.RootCert{Kind: config.RootCertFile, Path: "/nonexistent/root.pem"}}},
		{"garbage inline root", caclient.DialConfig{Address: "istiod:15012", RootCert: config.RootCert{Kind: config.RootCertPEM, PEM: []byte("nope")}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if cc, err := tt.d.Dial(); err == nil {
				cc.Close()
				t.Fatal("Dial succeeded")
			}
		})
	}
}

func TestWrongServerNameRejected(t *testing.T) {
	_, d := startCA(t)
	d.AltHostname = "someone-else.example"
	c, err := caclient.New(d, false)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := c.Sign(ctx, workloadID, []byte("csr"), time.Hour); err == nil {
		t.Fatal("Sign succeeded against a server with the wrong name")
	}
}
