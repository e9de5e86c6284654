package proxy

import (
	"context"
	"io"
	"net/http"
	"net/netip"
	"testing"
	"time"

	"github.com/ztunnel-go/ztunnel/hbone"
	"github.com/ztunnel-go/ztunnel/internal/promtext"
	"github.com/ztunnel-go/ztunnel/workload"
)

// TestInboundServiceHostname: the inner request of double HBONE names a service by hostname;
// the proxy maps the service port to the receiving workload's target port (the endpoint's own
// mapping first), refuses hostnames and ports it cannot map, and takes a client whose request
// comes from another network (x-istio-origin-network) for no workload of its own network, as
// its address is the network gateway's.
func TestInboundServiceHostname(t *testing.T) {
	e := newEnv(t)
	named := &workload.Service{Name: "named", Namespace: "default", Hostname: "named.default.svc.cluster.local",
		VIPs:      []workload.NetworkAddress{{Address: netip.MustParseAddr("127.0.0.25")}},
		Ports:     map[uint16]uint16{8080: 0, 9090: 0},
		Endpoints: map[string]*workload.Endpoint{"server": {WorkloadUID: "server", Port: map[uint16]uint16{8080: e.appPort}}}}
	own := &workload.Service{Name: "own", Namespace: "default", Hostname: "own.default.svc.cluster.local",
		VIPs:      []workload.NetworkAddress{{Address: netip.MustParseAddr("127.0.0.26")}},
		Ports:     map[uint16]uint16{80: e.ports.InboundHBONE},
		Endpoints: map[string]*workload.Endpoint{"server": {WorkloadUID: "server"}}}
	e.apply(t, workload.Update{Services: []*workload.Service{e.echoService(nil), named, own}})
	cc, err := e.hboneClient(t, clientID, serverID)
	if err != nil {
		t.Fatal(err)
	}
	echo := func(authority string, header hbone.Header) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s, err := cc.Connect(ctx, &hbone.Request{Method: http.MethodConnect, Authority: authority, Header: header})
		if err != nil {
			return "", err
		}
		defer s.Close()
		s.Write([]byte("hello"))
		s.CloseWrite()
		got, err := io.ReadAll(s)
		return string(got), err
	}
	fromElsewhere := hbone.Header{{Name: "x-istio-origin-network", Value: "west"}}
	for _, c := range []struct {
		authority string
		header    hbone.Header
	}{
		{echoHost + ":80", nil},
		{"named.default.svc.cluster.local:8080", nil},
		{echoHost + ":80", fromElsewhere},
	} {
		if got, err := echo(c.authority, c.header); err != nil || got != "hello" {
			t.Errorf("CONNECT %s: echo %q, %v", c.authority, got, err)
		}
	}
	for _, c := range []struct {
		authority string
		status    int
	}{
		{"nowhere.default.svc.cluster.local:80", http.StatusServiceUnavailable},
		{echoHost + ":81", http.StatusServiceUnavailable},                       // not a port of the service
		{"named.default.svc.cluster.local:9090", http.StatusServiceUnavailable}, // a named port the endpoint does not map
		{"own.default.svc.cluster.local:80", http.StatusServiceUnavailable},     // to the proxy's own port
		{echoHost + ":0", http.StatusBadRequest},
		{echoHost, http.StatusBadRequest},
		{"[fe80::1%eth0]:80", http.StatusBadRequest},
	} {
		if _, err := echo(c.authority, nil); statusOf(err) != c.status {
			t.Errorf("CONNECT %s: %v, want status %d", c.authority, err, c.status)
		}
	}
	if n := e.appConns.Load(); n != 3 {
		t.Errorf("the app saw %d connections, want 3", n)
	}
	waitLog(t, e.access, "connection complete", "dst.service="+echoHost, "src.workload=client", "dst.hbone_addr="+netip.AddrPortFrom(serverIP, e.appPort).String())
	waitLog(t, e.access, "connection complete", "dst.service=named.default.svc.cluster.local", "dst.workload=server")
	waitLog(t, e.access, "unknown service hostname nowhere.default.svc.cluster.local")
	text := e.metricsText(t)
	dst := `destination_service="` + echoHost + `"`
	// From the client's network: the connection on port 80 and the refused one on port 81.
	if n := promtext.Sum(text, "istio_tcp_connections_opened_total", `reporter="destination"`, dst, `source_workload="client"`); n != 2 {
		t.Errorf("connections opened from the client's own network to %s: %v, want 2:\n%s", echoHost, n, text)
	}
	if n := promtext.Sum(text, "istio_tcp_connections_opened_total", `reporter="destination"`, dst, `source_workload="unknown"`); n != 1 {
		t.Errorf("connections opened from another network to %s: %v, want 1:\n%s", echoHost, n, text)
	}
}

func TestParseAuthority(t *testing.T) {
	for _, c := range []struct {
		in, target, host string
		ok               bool
	}{
		{"10.0.0.1:80", "10.0.0.1:80", "", true},
		{"[::ffff:10.0.0.1]:80", "10.0.0.1:80", "", true},
		{"[2001:db8::1]:8080", "[2001:db8::1]:8080", "", true},
		{"echo.default.svc.cluster.local:80", "invalid AddrPort", "echo.default.svc.cluster.local", true},
		{"echo:65535", "invalid AddrPort", "echo", true},
		{"echo:0", "", "", false},
		{"echo:65536", "", "", false},
		{"echo", "", "", false},
		{":80", "", "", false},
		{"[fe80::1%eth0]:80", "", "", false},
		{"[echo]:80", "", "", false},
		{"10.0.0.1", "", "", false},
	} {
		target, host, ok := parseAuthority(c.in)
		if ok != c.ok || ok && (target.String() != c.target || host != c.host) {
			t.Errorf("parseAuthority(%q) = %v, %q, %v; want %s, %q, %v", c.in, target, host, ok, c.target, c.host, c.ok)
		}
	}
}

// FuzzParseAuthority: an authority is an unmapped ip:port with no host, or a hostname that is
// no address with a port alone, or refused.
func FuzzParseAuthority(f *testing.F) {
	for _, s := range []string{"10.0.0.1:80", "[::ffff:10.0.0.1]:80", "echo.default.svc.cluster.local:80", "[fe80::1%eth0]:80", "echo:0"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		target, host, ok := parseAuthority(s)
		switch {
		case !ok:
		case host == "":
			if !target.IsValid() || target.Addr().Is4In6() || target.Addr().Zone() != "" {
				t.Fatalf("%q: target %v", s, target)
			}
		default:
			if target.Addr().IsValid() || target.Port() == 0 {
				t.Fatalf("%q: host %q with target %v", s, host, target)
			}
			if _, err := netip.ParseAddr(host); err == nil {
				t.Fatalf("%q: host %q is an address", s, host)
			}
		}
	})
}
