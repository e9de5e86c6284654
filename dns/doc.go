// Package dns is ztunnel's DNS proxy: the server a pod's port-53 traffic is
// redirected to (port 15053, UDP and TCP, inside each pod's network namespace
// in shared mode and on 127.0.0.1/::1 of the proxy's own namespace).
//
// A and AAAA queries for names of the mesh are answered from the workload
// Store, authoritatively, with a TTL of 30 s:
//
//   - a service answers with its VIPs on the proxy's network; a headless
//     service (no VIPs) with one address of each endpoint's workload;
//   - short names are expanded from the client's namespace the way
//     Kubernetes search lists do (<name>.<ns>.svc.<domain>, <name>.<ns> ->
//     .svc.<domain>, <name>.<ns>.svc -> .<domain>), and a name that already
//     carries a search domain (<ns>.svc.<domain>, svc.<domain>, <domain>) is
//     also tried without it, answered with a CNAME to the stripped name;
//   - each candidate is tried as is and then as wildcards of decreasing
//     specificity (a.b.c, *.b.c, *.c), so "*.example.com" hostnames match;
//   - when several namespaces define the hostname, the client's namespace
//     wins, then a canonical service, then the preferred namespace, then the
//     first one; namespace-visible services are hidden from other
//     namespaces;
//   - a name that exists with no address of the asked family answers
//     NOERROR with no records, never NXDOMAIN.
//
// Everything else (other names, other record types) is forwarded unchanged to
// the upstream resolvers from sockets carrying the proxy's mark, over UDP and
// again over TCP when the upstream answer is truncated. A failing upstream
// gives SERVFAIL.
//
// Answers to UDP clients are cut to the client's limit (512 bytes, or its
// EDNS0 payload size) with the TC bit set, so the client retries over TCP.
// Malformed queries whose header parses get FORMERR; the rest are dropped.
//
// Resolver is the other side: the client with which on-demand DNS looks up
// workloads known by hostname only (ServiceEntry endpoints with DNS
// resolution), caching answers for their TTLs.
//
// The server counts istio_dns_requests_total and the upstream metrics of
// ztunnel (istio_dns_upstream_requests_total,
// istio_dns_upstream_failures_total,
// istio_dns_upstream_request_duration_seconds).
package dns
