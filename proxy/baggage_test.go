package proxy

import (
	"context"
	"io"
	"net/http"
	"net/netip"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/ztunnel-go/ztunnel/hbone"
	"github.com/ztunnel-go/ztunnel/internal/promtext"
	"github.com/ztunnel-go/ztunnel/workload"
)

// labelled replaces the env's client and server workloads with ones that carry everything a
// baggage header tells, and returns the server's.
func (e *testEnv) labelled(t *testing.T) *workload.Workload {
	t.Helper()
	client := &workload.Workload{UID: "client", Name: "client", Namespace: "default", ServiceAccount: "client",
		TrustDomain: "cluster.local", WorkloadIPs: []netip.Addr{clientIP}, Protocol: workload.ProtocolHBONE, Capacity: 1,
		ClusterID: "east", WorkloadName: "sleep", WorkloadType: "deployment", CanonicalName: "sleep", CanonicalRevision: "v1",
		Locality: workload.Locality{Region: "r1", Zone: "z1"}}
	server := &workload.Workload{UID: "server", Name: "server", Namespace: "default", ServiceAccount: "server",
		TrustDomain: "cluster.local", WorkloadIPs: []netip.Addr{serverIP}, Protocol: workload.ProtocolHBONE, Capacity: 1,
		ClusterID: "east", WorkloadName: "echo", WorkloadType: "pod", CanonicalName: "echo", CanonicalRevision: "v2"}
	e.apply(t, workload.Update{Workloads: []*workload.Workload{client, server}})
	return server
}

// connectAnswer opens a CONNECT with header, echoes one message over it and returns the answer's
// fields.
func connectAnswer(t *testing.T, cc *hbone.ClientConn, authority string, header hbone.Header) (hbone.Header, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var answer hbone.Header
	s, err := cc.Connect(ctx, &hbone.Request{Method: http.MethodConnect, Authority: authority, Header: header, Response: &answer})
	if err != nil {
		return answer, err
	}
	defer s.Close()
	s.Write([]byte("hi"))
	s.CloseWrite()
	if got, err := io.ReadAll(s); err != nil || string(got) != "hi" {
		t.Errorf("CONNECT %s: echo %q, %v", authority, got, err)
	}
	return answer, nil
}

// TestBaggage: as ztunnel, the proxy sends the client workload's baggage with every CONNECT,
// answers 200 with the destination workload's, and describes by its baggage a client it has no
// record of (here one from another network, behind its gateway); a client it knows is
// described by the store whatever its baggage says.
func TestBaggage(t *testing.T) {
	e := newEnv(t)
	server := e.labelled(t)

	// Outbound: what a peer (here a waypoint) receives.
	wp := e.startWaypoint(t, netip.AddrPortFrom(waypointIP, e.ports.RemoteHBONE), waypointID)
	e.apply(t, workload.Update{Workloads: []*workload.Workload{waypointWorkload(waypointIP)},
		Services: []*workload.Service{e.echoService(waypointAt(wp.addr))}})
	if got := roundTrip(t, e.socksDialFrom(t, clientIP, netip.AddrPortFrom(echoVIP, 80)), "hello"); got != "hello" {
		t.Fatalf("echo through the waypoint = %q", got)
	}
	want := "k8s.cluster.name=east,k8s.namespace.name=default,k8s.deployment.name=sleep,service.name=sleep," +
		"service.version=v1,cloud.region=r1,cloud.availability_zone=z1"
	if reqs := wp.requests(); len(reqs) != 1 || reqs[0].baggage != want {
		t.Errorf("the waypoint got %+v, want one request with baggage %q", reqs, want)
	}
	// A second connection: each CONNECT starts a trace of its own (traceparent), as ztunnel's.
	if got := roundTrip(t, e.socksDialFrom(t, clientIP, netip.AddrPortFrom(echoVIP, 80)), "again"); got != "again" {
		t.Fatalf("echo through the waypoint = %q", got)
	}
	traceparent := regexp.MustCompile(`^00-[0-9a-f]{32}-[0-9a-f]{16}-00$`)
	reqs := wp.requests()
	for _, r := range reqs {
		if !traceparent.MatchString(r.traceparent) || r.forwarded == "" {
			t.Errorf("the waypoint got traceparent %q and forwarded %q, want a W3C trace context and the client", r.traceparent, r.forwarded)
		}
	}
	if len(reqs) == 2 && reqs[0].traceparent == reqs[1].traceparent {
		t.Errorf("two connections sent the same traceparent %q", reqs[0].traceparent)
	}

	// Inbound: the answer, and the client's description.
	cc, err := e.hboneClient(t, clientID, serverID)
	if err != nil {
		t.Fatal(err)
	}
	target := netip.AddrPortFrom(serverIP, e.appPort).String()
	remote := hbone.Header{
		{Name: "x-forwarded-network", Value: "west"},
		{Name: "baggage", Value: "k8s.cluster.name=west,k8s.namespace.name=remote-ns,k8s.deployment.name=curl,service.name=curl-app,service.version=v9"},
	}
	lying := hbone.Header{{Name: "baggage", Value: "k8s.namespace.name=elsewhere,k8s.deployment.name=impostor"}}
	for _, h := range []hbone.Header{remote, lying} {
		answer, err := connectAnswer(t, cc, target, h)
		if err != nil {
			t.Fatal(err)
		}
		if got := answer.Get("baggage"); got != server.Baggage() {
			t.Errorf("200 answered with baggage %q, want the server's %q", got, server.Baggage())
		}
	}
	waitLog(t, e.access, "connection complete", "direction=inbound", "src.workload=curl-app", "src.namespace=remote-ns",
		"src.cluster=west", "dst.workload=server", "dst.cluster=east")
	waitLog(t, e.access, "connection complete", "direction=inbound", "src.workload=client", "src.namespace=default",
		"src.cluster=east")
	text := e.metricsText(t)
	in := []string{`reporter="destination"`, `destination_workload="echo"`}
	if n := promtext.Sum(text, "istio_tcp_connections_opened_total", append(in, `source_workload="curl"`, `source_app="curl"`,
		`source_canonical_service="curl-app"`, `source_canonical_revision="v9"`, `source_workload_namespace="remote-ns"`,
		`source_cluster="west"`, `source_principal="`+clientID.String()+`"`)...); n != 1 {
		t.Errorf("connections from the client behind the gateway: %v, want 1:\n%s", n, text)
	}
	if n := promtext.Sum(text, "istio_tcp_connections_opened_total", append(in, `source_workload="sleep"`, `source_cluster="east"`)...); n != 1 {
		t.Errorf("connections from the known client: %v, want 1:\n%s", n, text)
	}
}

// TestBaggageDisabled: with ENABLE_RESPONSE_BAGGAGE=false the 200 carries no baggage and a
// client of another network stays unknown; requests still carry the client's baggage.
func TestBaggageDisabled(t *testing.T) {
	e := newEnvConfig(t, func(c *Config) { c.Baggage = false })
	e.labelled(t)
	cc, err := e.hboneClient(t, clientID, serverID)
	if err != nil {
		t.Fatal(err)
	}
	answer, err := connectAnswer(t, cc, netip.AddrPortFrom(serverIP, e.appPort).String(), hbone.Header{
		{Name: "x-forwarded-network", Value: "west"},
		{Name: "baggage", Value: "k8s.namespace.name=remote-ns,k8s.deployment.name=curl"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if answer.Get("baggage") != "" {
		t.Errorf("200 answered with %q, want no baggage", answer)
	}
	waitLog(t, e.access, "connection complete", "direction=inbound", "src.namespace=default", "dst.workload=server")
	text := e.metricsText(t)
	if n := promtext.Sum(text, "istio_tcp_connections_opened_total", `reporter="destination"`, `source_workload="unknown"`); n != 1 {
		t.Errorf("connections from an unknown client: %v, want 1:\n%s", n, text)
	}
}

// TestBaggageWorkloadShared: connections with the same baggage share one derived workload, and
// a value past maxSharedBaggage is parsed for its connection alone, never kept.
func TestBaggageWorkloadShared(t *testing.T) {
	small := hbone.Header{{Name: "baggage", Value: "k8s.namespace.name=ns"}, {Name: "Baggage", Value: "service.name=app"}}
	a, b := baggageWorkload(small), baggageWorkload(small)
	if a == nil || a != b || a.Namespace != "ns" || a.CanonicalName != "app" {
		t.Errorf("small value: %p %+v and %p, want one shared workload of ns/app", a, a, b)
	}
	large := hbone.Header{{Name: "baggage", Value: "service.name=big,pad=" + strings.Repeat("x", maxSharedBaggage)}}
	a, b = baggageWorkload(large), baggageWorkload(large)
	if a == nil || a == b || a.CanonicalName != "big" {
		t.Errorf("large value: %p %+v and %p, want two of their own named big", a, a, b)
	}
	if baggageWorkload(hbone.Header{{Name: "forwarded", Value: "for=x"}}) != nil {
		t.Error("no baggage field: want nil")
	}
}
