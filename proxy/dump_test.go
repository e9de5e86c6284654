package proxy

import (
	"context"
	"encoding/json"
	"maps"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ztunnel-go/ztunnel/hbone"
	"github.com/ztunnel-go/ztunnel/internal/testwait"
	"github.com/ztunnel-go/ztunnel/workload"
)

// TestConnectionsDump holds connections through the proxy, to a pod and to a service's VIP
// (SOCKS5 -> outbound -> pooled HBONE -> inbound -> app), and one HBONE stream whose
// Forwarded header names another host, and reads them back as /config_dump shows them.
func TestConnectionsDump(t *testing.T) {
	e := newEnv(t)
	e.apply(t, workload.Update{Services: []*workload.Service{e.echoService(nil)}})
	app := netip.AddrPortFrom(serverIP, e.appPort)
	const otherHost = "reviews.other.svc.cluster.local"
	toPod := e.socksDial(t, app)
	defer toPod.Close()
	echoOnce(t, toPod)
	toVIP := e.socksDial(t, netip.AddrPortFrom(echoVIP, 80))
	defer toVIP.Close()
	echoOnce(t, toVIP)

	cc, err := e.hboneClient(t, clientID, serverID)
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	s, err := cc.Open(context.Background(), &hbone.Request{Method: "CONNECT", Authority: app.String(),
		Header: hbone.Header{{Name: "Forwarded", Value: `for=10.0.0.1;host="` + otherHost + `"`}}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	echoOnce(t, s)

	var d Connections
	testwait.Until(t, "three inbound connections and two outbound", 5*time.Second, func() bool {
		d = e.proxy.Connections()
		return len(d.Inbound) == 3 && len(d.Outbound) == 2
	})
	hboneDst := netip.AddrPortFrom(serverIP, e.ports.InboundHBONE)
	srcOf := func(c net.Conn) netip.AddrPort { return c.LocalAddr().(*net.TCPAddr).AddrPort() }
	wantOut := []OutboundConnection{
		{Src: srcOf(toPod), OriginalDst: app, ActualDst: hboneDst, Protocol: "HBONE"},
		{Src: srcOf(toVIP), OriginalDst: netip.AddrPortFrom(echoVIP, 80), ActualDst: hboneDst, Protocol: "HBONE"},
	}
	slices.SortFunc(wantOut, func(a, b OutboundConnection) int { return a.Src.Compare(b.Src) })
	if !slices.Equal(d.Outbound, wantOut) {
		t.Errorf("outbound = %+v\nwant %+v", d.Outbound, wantOut)
	}
	// The pod's connection carries no host; the VIP's names the service (as our outbound
	// sends it); the waypoint-like stream names a host the workload does not serve, which
	// the proxy keeps as it came.
	hosts := map[string]int{}
	for _, in := range d.Inbound {
		if in.ActualDst != app || in.Protocol != "HBONE" || !in.Src.IsValid() {
			t.Errorf("inbound %+v: want an HBONE connection to %v", in, app)
		}
		h := "null"
		if in.OriginalDst != nil {
			h = *in.OriginalDst
		}
		hosts[h]++
	}
	if want := map[string]int{"null": 1, echoHost: 1, otherHost: 1}; !maps.Equal(hosts, want) {
		t.Errorf("inbound originalDst values %v, want %v", hosts, want)
	}

	// ztunnel's JSON: camelCase names, addresses as ip:port, originalDst null without a host.
	b, err := json.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	js := string(b)
	for _, want := range []string{`"inbound":[{"src":"`, `"originalDst":null,"actualDst":"` + app.String() + `","protocol":"HBONE"}`,
		`"outbound":[{"src":"`, `"originalDst":"` + echoVIP.String() + `:80","actualDst":"` + hboneDst.String() + `","protocol":"HBONE"}`} {
		if !strings.Contains(js, want) {
			t.Errorf("dump %s\nlacks %s", js, want)
		}
	}

	toPod.Close()
	toVIP.Close()
	s.Close()
	testwait.Until(t, "the dump empties as the connections end", 5*time.Second, func() bool {
		d = e.proxy.Connections()
		return len(d.Inbound) == 0 && len(d.Outbound) == 0
	})
	if b, _ := json.Marshal(d); string(b) != `{"inbound":[],"outbound":[]}` {
		t.Errorf("empty dump = %s, want empty lists", b)
	}
}
