package proxy

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"

	"github.com/ztunnel-go/ztunnel/internal/promtext"
	"github.com/ztunnel-go/ztunnel/internal/testwait"
	"github.com/ztunnel-go/ztunnel/tls/certs"
	"github.com/ztunnel-go/ztunnel/tls/certs/certtest"
	"github.com/ztunnel-go/ztunnel/tls/identity"
)

// crlEnv is a test environment whose certificates come from a CA the test holds the keys of,
// with revocation lists (CRL_PATH) in a file the test writes.
type crlEnv struct {
	*testEnv
	inter *certtest.CA // signs the workload certificates
	crl   *certs.CRLSet
	path  string
}

func newCRLEnv(t *testing.T) *crlEnv { return newCRLEnvConfig(t, nil) }

func newCRLEnvConfig(t *testing.T, mod func(*Config)) *crlEnv {
	t.Helper()
	dir := t.TempDir()
	inter := certtest.NewCA(t, "root").NewIntermediate(t, "intermediate")
	inter.WriteCACerts(t, dir, true)
	ca, err := certs.LoadLocalCA(dir)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "crl.pem")
	crl, err := certs.NewCRLSet(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	m := certs.NewManager(ca, certs.ManagerOptions{CRL: crl})
	t.Cleanup(func() { m.Close() })
	e := newEnvConfig(t, func(c *Config) {
		c.Certs = m
		if mod != nil {
			mod(c)
		}
	})
	e.certs = m // hboneClient's certificates too
	return &crlEnv{testEnv: e, inter: inter, crl: crl, path: path}
}

// revoke makes the lists revoke serials of certificates inter issued, and reloads them.
func (e *crlEnv) revoke(t *testing.T, serials ...*big.Int) {
	t.Helper()
	tmpl := &x509.RevocationList{Number: big.NewInt(time.Now().UnixNano()), ThisUpdate: time.Now().Add(-time.Minute), NextUpdate: time.Now().Add(time.Hour)}
	for _, s := range serials {
		tmpl.RevokedCertificateEntries = append(tmpl.RevokedCertificateEntries, x509.RevocationListEntry{SerialNumber: s, RevocationTime: time.Now()})
	}
	der, err := x509.CreateRevocationList(rand.Reader, tmpl, e.inter.Cert, e.inter.Key)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(e.path, pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := e.crl.Reload(); err != nil {
		t.Fatal(err)
	}
}

// serialOf returns the serial number of id's current certificate.
func (e *crlEnv) serialOf(t *testing.T, id identity.ID) *big.Int {
	t.Helper()
	c, err := e.certs.Get(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return c.Leaf.SerialNumber
}

// liveConn opens a connection through the proxy (outbound, pooled tunnel, inbound, the app)
// that has carried a byte each way; the test's end closes it.
func (e *crlEnv) liveConn(t *testing.T) net.Conn {
	t.Helper()
	c := e.socksDial(t, netip.AddrPortFrom(serverIP, e.appPort))
	t.Cleanup(func() { c.Close() })
	echoOnce(t, c)
	return c
}

// echoOnce writes a byte through c and reads it back.
func echoOnce(t *testing.T, c net.Conn) {
	t.Helper()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(c, make([]byte, 1)); err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Time{})
}

// waitClosed fails unless the peer of c ends it within 5 s.
func waitClosed(t *testing.T, c net.Conn, what string) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err := io.ReadAll(c)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("%s: still open", what)
	}
}

// TestCRLReloadEndsTunnels: when the reloaded lists revoke the client's certificate, the
// inbound tunnel it came over ends with its connection (CERT_REVOKED, counted once by the
// destination), idle tunnels of the same client end too, as ztunnel's server ends them
// (GOAWAY(NO_ERROR), then the close), and the client's next handshake is refused (counted
// again); a list that revokes no one's certificate ends nothing.
func TestCRLReloadEndsTunnels(t *testing.T) {
	e := newCRLEnv(t)
	c := e.liveConn(t)
	idle, err := e.hboneClient(t, clientID, serverID)
	if err != nil {
		t.Fatal(err)
	}
	// A second idle tunnel, whose frames the test reads.
	tc, err := e.hboneTLS(t, serverIP, nil, clientID, serverID)
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	if _, err := io.WriteString(tc, http2.ClientPreface); err != nil {
		t.Fatal(err)
	}
	fr := http2.NewFramer(tc, tc)
	if err := fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	frames := make(chan http2.Frame, 16)
	var rawEnd error
	go func() { // ends with the connection, which the test's end closes at the latest
		defer close(frames)
		for {
			f, err := fr.ReadFrame()
			if err != nil {
				rawEnd = err
				return
			}
			if ga, ok := f.(*http2.GoAwayFrame); ok {
				frames <- &http2.GoAwayFrame{LastStreamID: ga.LastStreamID, ErrCode: ga.ErrCode} // the Framer reuses f
			}
		}
	}()
	// Both ends of the pooled tunnel, and the accepted ends of the idle ones (tracked once the
	// server's side of the handshake is done, after the client's).
	testwait.Until(t, "4 tunnels to be tracked", 5*time.Second, func() bool { return e.tracked() == 4 })

	e.revoke(t, big.NewInt(1), big.NewInt(2))
	if n := e.proxy.sweepRevoked(); n != 0 {
		t.Fatalf("a list revoking no one's certificate ended %d tunnels", n)
	}
	echoOnce(t, c)

	// Quiet long enough for the tunnels' read loops to park (hbone: 100 ms of silence): a
	// parked connection must be woken to end.
	time.Sleep(300 * time.Millisecond)
	e.revoke(t, e.serialOf(t, clientID)) // WatchPolicies sweeps
	waitClosed(t, c, "the connection over a revoked client's tunnel")
	waitLog(t, e.access, "connection complete", "direction=inbound", `error="connection closed: peer certificate revoked by CRL"`)
	waitFailed(t, e.testEnv, "destination", "CERT_REVOKED")
	testwait.Until(t, "the idle tunnel to end", 5*time.Second, func() bool {
		_, err := connect(idle, netip.AddrPortFrom(serverIP, e.appPort).String())
		return err != nil
	})
	tc.SetReadDeadline(time.Now().Add(5 * time.Second))
	var goAways []*http2.GoAwayFrame
	for f := range frames {
		goAways = append(goAways, f.(*http2.GoAwayFrame))
	}
	if len(goAways) != 1 || goAways[0].ErrCode != http2.ErrCodeNo || goAways[0].LastStreamID != 0 {
		t.Errorf("the revoked idle tunnel sent %v, want one GOAWAY(NO_ERROR) with last stream 0", goAways)
	}
	if rawEnd != io.EOF {
		t.Errorf("the revoked idle tunnel ended with %v, want EOF", rawEnd)
	}
	waitMetric(t, e.testEnv, `istio_crl_policy_rejections_total{reporter="destination"} 3`)
	if strings.Contains(e.metricsText(t), `istio_crl_policy_rejections_total{reporter="source"}`) {
		t.Error("the client side counted a rejection; the server's certificate is not revoked")
	}

	// A new connection: the server refuses the client's certificate at the handshake (each
	// attempt the client makes counts).
	c2 := e.socksDial(t, netip.AddrPortFrom(serverIP, e.appPort))
	defer c2.Close()
	waitClosed(t, c2, "a new connection of the revoked client")
	testwait.Until(t, "the refused handshake to be counted", 5*time.Second, func() bool {
		return e.metricValue(t, `istio_crl_policy_rejections_total{reporter="destination"}`) >= 4
	})
	waitLog(t, e.access, "level=WARN", `msg="connection failed"`, "direction=inbound",
		`error="tls handshake error: Custom { kind: InvalidData, error: InvalidCertificate(Revoked) }"`)
	testwait.Until(t, "ended tunnels to be forgotten", 5*time.Second, func() bool { return e.tracked() == 0 })
}

// tracked returns how many tunnels the proxy keeps.
func (e *crlEnv) tracked() int {
	e.proxy.tunnels.mu.Lock()
	defer e.proxy.tunnels.mu.Unlock()
	return len(e.proxy.tunnels.m)
}

// TestCRLReloadEndsOutboundTunnel: when the reloaded lists revoke the server's certificate, the
// client side ends its pooled tunnel (counted by the source) and the connection it carried ends
// CERT_REVOKED on the outbound side.
func TestCRLReloadEndsOutboundTunnel(t *testing.T) {
	e := newCRLEnv(t)
	c := e.liveConn(t)
	e.revoke(t, e.serialOf(t, serverID))
	waitClosed(t, c, "the connection over a tunnel to a revoked server")
	waitLog(t, e.access, "connection complete", "direction=outbound", `error="connection closed: peer certificate revoked by CRL"`)
	waitFailed(t, e.testEnv, "source", "CERT_REVOKED")
	waitMetric(t, e.testEnv, `istio_crl_policy_rejections_total{reporter="source"} 1`)
}

// TestCRLReloadEndsInnerTunnel: a connection through another network's gateway runs in an
// inner tunnel of its own; when the reloaded lists revoke the destination's certificate (not the
// gateway's), that inner tunnel ends, the connection with it (CERT_REVOKED), and the pooled
// tunnel to the gateway stays.
func TestCRLReloadEndsInnerTunnel(t *testing.T) {
	w := newCRLEnvConfig(t, func(c *Config) { c.Network = "west" })
	_, east, _ := multiNetworkOn(t, w.testEnv)
	c := east.socksDialFrom(t, clientIP, netip.AddrPortFrom(echoVIP, 80))
	defer c.Close()
	echoOnce(t, c)
	tracked := func() int {
		east.proxy.tunnels.mu.Lock()
		defer east.proxy.tunnels.mu.Unlock()
		return len(east.proxy.tunnels.m)
	}
	if n := tracked(); n != 2 {
		t.Fatalf("east tracks %d tunnels, want 2 (to the gateway, and the inner one)", n)
	}
	w.revoke(t, w.serialOf(t, serverID))
	if n := east.proxy.sweepRevoked(); n != 1 { // east has no WatchPolicies
		t.Fatalf("the sweep ended %d tunnels, want the inner one", n)
	}
	waitClosed(t, c, "the connection over a revoked inner tunnel")
	waitLog(t, east.access, "connection complete", "direction=outbound", `error="connection closed: peer certificate revoked by CRL"`)
	waitFailed(t, east, "source", "CERT_REVOKED")
	testwait.Until(t, "the inner tunnel to be forgotten", 5*time.Second, func() bool { return tracked() == 1 })
	if v := east.metricValue(t, `istio_crl_policy_rejections_total{reporter="source"}`); v != 1 {
		t.Errorf("source rejections %v, want 1", v)
	}
}

// TestCRLTrackRace: a tunnel whose handshake began before a reload that no sweep saw it in is
// judged when it is tracked: refused, and counted.
func TestCRLTrackRace(t *testing.T) {
	e := newCRLEnv(t)
	e.liveConn(t) // its tunnels are tracked
	var peer []*x509.Certificate
	e.proxy.tunnels.mu.Lock()
	for _, tn := range e.proxy.tunnels.m {
		if tn.local == serverID { // the accepted end: its peer is the client
			peer = tn.peer
		}
	}
	e.proxy.tunnels.mu.Unlock()
	if peer == nil {
		t.Fatal("the accepted tunnel is not tracked")
	}
	gen := e.crl.Generation()
	e.revoke(t, e.serialOf(t, clientID))
	// The reload's sweep ends the accepted end of the pooled tunnel; then no sweep runs.
	waitMetric(t, e.testEnv, `istio_crl_policy_rejections_total{reporter="destination"} 1`)
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	if e.proxy.trackTunnel(a, serverID, peer, "destination", gen+1) {
		t.Error("a tunnel verified with the current lists was judged again and refused")
	}
	if !e.proxy.trackTunnel(b, serverID, peer, "destination", gen) {
		t.Error("a tunnel verified before the reload was not judged again")
	}
	e.proxy.untrackTunnel(a)
	e.proxy.tunnels.mu.Lock()
	_, kept := e.proxy.tunnels.m[b]
	e.proxy.tunnels.mu.Unlock()
	if kept {
		t.Error("a tunnel refused when tracked is kept")
	}
	waitMetric(t, e.testEnv, `istio_crl_policy_rejections_total{reporter="destination"} 2`) // b's refusal

	// A revoked tunnel that a sweep ended is ended and counted once, however long its owner
	// takes to forget it.
	c2, d := net.Pipe()
	defer d.Close()
	e.proxy.trackTunnel(c2, serverID, peer, "destination", e.crl.Generation())
	if n := e.proxy.sweepRevoked(); n != 1 {
		t.Fatalf("the sweep ended %d tunnels, want 1", n)
	}
	if n := e.proxy.sweepRevoked(); n != 0 {
		t.Fatalf("a second sweep ended %d tunnels, want none", n)
	}
	e.proxy.untrackTunnel(c2)
	if v := e.metricValue(t, `istio_crl_policy_rejections_total{reporter="destination"}`); v != 3 {
		t.Errorf("destination rejections %v, want 3", v)
	}
}

// waitMetric waits for a line of the proxy's metrics that contains sub.
func waitMetric(t *testing.T, e *testEnv, sub string) {
	t.Helper()
	defer func() {
		if t.Failed() {
			for _, l := range strings.Split(e.metricsText(t), "\n") {
				if strings.Contains(l, "crl") {
					t.Log(l)
				}
			}
		}
	}()
	testwait.Until(t, sub, 5*time.Second, func() bool { return strings.Contains(e.metricsText(t), sub) })
}

// waitFailed waits for a connection counted as failed by reporter, with flags.
func waitFailed(t *testing.T, e *testEnv, reporter, flags string) {
	t.Helper()
	testwait.Until(t, reporter+" failure with "+flags, 5*time.Second, func() bool {
		return promtext.Has(e.metricsText(t), "istio_tcp_connections_failed_total", `reporter="`+reporter+`"`, `response_flags="`+flags+`"`)
	})
}

// metricValue returns the value of the series named exactly by series, 0 when absent.
func (e *testEnv) metricValue(t *testing.T, series string) float64 {
	t.Helper()
	for _, l := range strings.Split(e.metricsText(t), "\n") {
		if v, ok := strings.CutPrefix(l, series+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("%s: %v", l, err)
			}
			return f
		}
	}
	return 0
}
