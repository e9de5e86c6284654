package proxy

import (
	"log/slog"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/ztunnel-go/ztunnel/internal/boundedmap"
	"github.com/ztunnel-go/ztunnel/logging"
	"github.com/ztunnel-go/ztunnel/metrics"
	"github.com/ztunnel-go/ztunnel/policy"
	"github.com/ztunnel-go/ztunnel/tls/identity"
	"github.com/ztunnel-go/ztunnel/workload"
)

// record is the telemetry of one proxied connection: metrics while it lives and the
// "connection complete" access log line when it ends. Owned by the connection's goroutine,
// except note (its cut) and flushed while the connection is relaying and tracked
// (connState): the tracker's periodic flush, policy re-evaluation and drain use them then, under
// tracker.mu, and finish runs only before or after that (it is never called on a connection in
// that state).
type record struct {
	start    monoTime // when the connection was accepted
	src, dst addr
	// hboneAddr is dst.hbone_addr: the CONNECT authority of a connection tunnelled (outbound)
	// or arrived over HBONE, as ztunnel logs it. It is invalid without a tunnel, and when the
	// authority names a service by hostname (note.authority then).
	hboneAddr addr
	// The flags and the port fill the word the three 20-byte addresses end in.
	mtls  bool
	flags recordFlags
	// port is a port the addresses do not show. On an inbound HBONE connection it is the port
	// policy judges it by (see inboundDst): the one it is relayed to on dst's address (the
	// authority's, the service's target port, or the application tunnel's), as ztunnel's; zero
	// on plaintext, where it is dst's. On an outbound connection to a service's VIP it is the
	// port the client dialed (see dialedVIP).
	port uint16

	srcW, dstW *workload.Workload
	dstSvc     *workload.Service
	srcID      ident // the source's verified (inbound) or own (outbound) identity
	dstID      ident

	m metrics.Conn // set by open; the zero Conn (never opened) counts nothing

	// Bytes moved so far, client to server and server to client: written by the relay as it
	// copies, read by the flusher.
	toServer, toClient atomic.Int64

	// note holds what few connections have, allocated for those: 8 bytes of every record
	// instead of the 24 its fields would take.
	note    *recordNote
	flushed [2]int64 // bytes already added to the metrics (toServer, toClient)
}

// recordFlags are a record's facts of one bit.
type recordFlags uint8

const (
	flagInbound recordFlags = 1 << iota // the inbound side of a connection (else outbound)
	// flagHostNamed: an inbound HBONE request's Forwarded header named dstSvc's hostname,
	// which the connection dump shows as ztunnel's does (a host naming nothing the workload
	// serves is kept in the note instead). Most requests through a service carry one, so a
	// bit, not a note per connection.
	flagHostNamed

	// The bits from vipShift up are, on an outbound connection to a service's VIP, 1 + the
	// index of that VIP in dstSvc.VIPs (0: none). With the port, they say where the client
	// connected without a note per connection: most pods connect to services.
	vipShift = iota
	vipMax   = 1<<(8-vipShift) - 1 // the largest 1 + index the bits hold
)

// inbound reports whether r is the inbound side of a connection.
func (r *record) inbound() bool { return r.flags&flagInbound != 0 }

// policyInputs returns what L4 policy evaluates for an inbound connection whose destination
// workload is known: the workload's policies, and the connection's verified source identity
// (zero on plaintext), source address and destination (the CONNECT target over HBONE, the
// original destination otherwise). The first evaluation and every re-evaluation use it, so the
// connection is judged by the same inputs each time, without keeping a copy of them.
func (r *record) policyInputs() (policy.Target, policy.Conn) {
	dst := r.inboundDst()
	return policy.Target{Namespace: r.dstW.Namespace, Policies: r.dstW.AuthorizationPolicies},
		policy.Conn{SrcID: r.srcID.ID(), SrcIP: r.src.AddrPort().Addr(), DstIP: dst.Addr(), DstPort: dst.Port()}
}

// inboundDst is where an inbound connection is relayed to, as policy and the connection dump
// see it: the workload's address, on the port dialed (port over HBONE, dst's own on
// plaintext).
func (r *record) inboundDst() netip.AddrPort {
	dst := r.dst.AddrPort()
	if r.port != 0 {
		dst = netip.AddrPortFrom(dst.Addr(), r.port)
	}
	return dst
}

// setDialedVIP records that an outbound connection's client dialed dst, an address of
// r.dstSvc (set first), in the flags and the port. It reports false when dst is not one of the
// service's VIPs as they are written there, or its index does not fit: the caller keeps dst in
// the note then.
func (r *record) setDialedVIP(dst netip.AddrPort) bool {
	if r.dstSvc == nil {
		return false
	}
	for i, vip := range r.dstSvc.VIPs {
		if vip.Address == dst.Addr() {
			if i+1 > vipMax {
				return false
			}
			r.flags |= recordFlags(i+1) << vipShift
			r.port = dst.Port()
			return true
		}
	}
	return false
}

// dialedVIP is the service VIP an outbound connection's client dialed, when setDialedVIP
// recorded one. The record holds the service it was resolved against, so the index stays valid
// when the service changes.
func (r *record) dialedVIP() (addr, bool) {
	i := int(r.flags >> vipShift)
	if i == 0 {
		return addr{}, false
	}
	return packAddr(netip.AddrPortFrom(r.dstSvc.VIPs[i-1].Address, r.port)), true
}

// addr is a record's netip.AddrPort in 20 bytes instead of 32, which keeps a connState (one per
// connection, idle or not) in the 192-byte allocation class: the address's 16 bytes, the port
// and the family. It keeps no IPv6 zone; addresses of pods and nodes have none. The zero addr
// is invalid, as the zero netip.AddrPort is.
type addr struct {
	ip   [16]byte
	port uint16
	fam  uint8 // 0 (invalid), 4 or 6
}

// packAddr packs ap; AddrPort gives it back (without a zone).
func packAddr(ap netip.AddrPort) addr {
	a := addr{ip: ap.Addr().As16(), port: ap.Port()}
	switch {
	case ap.Addr().Is4():
		a.fam = 4
	case ap.Addr().Is6():
		a.fam = 6
	}
	return a
}

// AddrPort returns the address as a netip.AddrPort.
func (a addr) AddrPort() netip.AddrPort {
	switch a.fam {
	case 4:
		return netip.AddrPortFrom(netip.AddrFrom16(a.ip).Unmap(), a.port)
	case 6:
		return netip.AddrPortFrom(netip.AddrFrom16(a.ip), a.port)
	}
	return netip.AddrPort{}
}

// IsValid reports whether a holds an address.
func (a addr) IsValid() bool { return a.fam != 0 }

// AppendTo appends the address's text form, as netip.AddrPort.AppendTo does: the access log
// writes it without a string (logging.appendAddr).
func (a addr) AppendTo(b []byte) []byte { return a.AddrPort().AppendTo(b) }

// String returns the address's text form.
func (a addr) String() string { return a.AddrPort().String() }

// direction is the access log's direction field.
func (r *record) direction() string { return directionOf(r.inbound()) }

// directionOf is the direction field of an inbound or outbound connection.
func directionOf(inbound bool) string {
	if inbound {
		return "inbound"
	}
	return "outbound"
}

// monoTime is a reading of the monotonic clock, in nanoseconds since the process's epoch: the
// 8 bytes of a time.Time (24) that a duration needs.
type monoTime int64

// epoch is monoTime's zero.
var epoch = time.Now()

// now returns the current monoTime.
func now() monoTime { return monoTime(time.Since(epoch)) }

// since returns the time elapsed since t.
func (t monoTime) since() time.Duration { return time.Duration(now() - t) }

// flush adds the bytes moved since the last flush to the metrics. Its caller holds the
// tracker's mutex, or is finish (see record).
func (r *record) flush() {
	s, c := r.toServer.Load(), r.toClient.Load()
	// A refused connection's record is finished with no bytes, some of which a periodic flush
	// may have counted already: counters never go back.
	ds, dc := max(s-r.flushed[0], 0), max(c-r.flushed[1], 0)
	r.flushed = [2]int64{s, c}
	r.m.AddBytes(ds, dc)
}

// recordNote is the part of a record that few connections have.
type recordNote struct {
	// authority is dst.hbone_addr when the CONNECT authority names a service by hostname:
	// double HBONE, on both sides. Set before the connection is tracked.
	authority hostAuthority
	// cut says why the proxy closed the connection while it relayed: a policy change denied
	// it (deny), a reloaded revocation list revoked its tunnel's peer (revoke), or a drain
	// closed it (drained). Set under the tracker's mutex while the connection is tracked;
	// finish reads it after.
	cut cutCause
	// forwarded is the host an inbound HBONE request's Forwarded header named (a waypoint's
	// or a gateway's), shown by the connection dump. Set before the connection is tracked.
	forwarded string
	// origDst is where an outbound connection's client connected, when the record does not
	// show it otherwise (impliedDst, dialedVIP): a destination reached through a network
	// gateway, or a service's VIP the flags cannot hold. Set before the connection is tracked.
	origDst addr
}

// noted returns r's note, allocating it.
func (r *record) noted() *recordNote {
	if r.note == nil {
		r.note = new(recordNote)
	}
	return r.note
}

// cutCause is why the proxy closed a relaying connection (recordNote.cut).
type cutCause uint8

const (
	notCut     cutCause = iota
	cutDenied           // a policy update denies it: errPolicyChange, DENY
	cutRevoked          // its tunnel's peer certificate was revoked: errCertRevoked, CERT_REVOKED
	cutDrained          // the proxy's drain closed it: errClosedFromDrain, flags unchanged
)

// cut returns the note's cut.
func (r *record) cut() cutCause {
	if r.note == nil {
		return notCut
	}
	return r.note.cut
}

// hostAuthority is a CONNECT authority that names a service: "hostname:port". It is logged
// bare, as an address is (logging's addrText), since ztunnel writes dst.hbone_addr so whether it
// is an address or a hostname.
type hostAuthority string

func (h hostAuthority) IsValid() bool            { return h != "" }
func (h hostAuthority) AppendTo(b []byte) []byte { return append(b, h...) }
func (h hostAuthority) String() string           { return string(h) }

// deny records that a policy change closed the connection. Its caller holds the tracker's
// mutex.
func (r *record) deny() { r.noted().cut = cutDenied }

// revoke records that the connection's tunnel is ended because its peer's certificate was
// revoked. Its caller holds the tracker's mutex.
func (r *record) revoke() { r.noted().cut = cutRevoked }

// drained records that the proxy's drain closed the connection (its deadline passed, or the
// proxy stopped at once). Its caller holds the tracker's mutex.
func (r *record) drained() {
	if r.cut() == notCut {
		r.noted().cut = cutDrained
	}
}

// ids returns the SPIFFE URIs of srcID and dstID ("" for a zero identity).
func (r *record) ids() (src, dst string) { return r.srcID.URI(), r.dstID.URI() }

// ident is an identity as a record keeps it: a pointer to the process's shared copy and its
// SPIFFE URI (idStrings). A node has few identities and many connections, each of which
// keeps two for its life (metric labels, the access log, the pool key): 16 bytes instead of
// 2 x 48 for the identities and 2 x 16 for their URIs, and no formatting per connection.
// The zero ident is the zero identity.
type ident struct{ e *idEntry }

// idEntry is one shared identity and its URI.
type idEntry struct {
	id  identity.ID
	uri string
}

// identOf returns id's shared copy.
func identOf(id identity.ID) ident {
	if id.IsZero() {
		return ident{}
	}
	return ident{idStrings.Get(id, newIDEntry)}
}

func newIDEntry(id identity.ID) *idEntry { return &idEntry{id: id, uri: id.String()} }

// IsZero reports whether i is the zero identity.
func (i ident) IsZero() bool { return i.e == nil }

// ID returns the identity.
func (i ident) ID() identity.ID {
	if i.e == nil {
		return identity.ID{}
	}
	return i.e.id
}

// URI returns the identity's SPIFFE URI, "" for the zero identity.
func (i ident) URI() string {
	if i.e == nil {
		return ""
	}
	return i.e.uri
}

// idStrings is the process's shared identities (ident), at most maxIDCache of them, so
// identities that come and go cannot grow it without limit. Entries never change: records
// keep theirs when they are evicted.
var idStrings = boundedmap.New[identity.ID, *idEntry](maxIDCache)

// maxIDCache bounds idStrings.
const maxIDCache = 4096

func (r *record) labels(reporter string) metrics.Labels {
	srcIDs, dstIDs := r.ids()
	l := metrics.Labels{Reporter: reporter, RequestProtocol: "tcp"}
	if r.mtls {
		l.ConnectionSecurityPolicy = metrics.SecurityMutualTLS
	}
	if w := r.srcW; w != nil {
		l.SourceWorkload = orName(w.WorkloadName, w.Name)
		l.SourceCanonicalService = w.CanonicalName
		l.SourceCanonicalRevision = w.CanonicalRevision
		l.SourceWorkloadNamespace = w.Namespace
		l.SourceApp = w.CanonicalName
		if w.Derived {
			l.SourceApp = w.WorkloadName // as ztunnel labels a client known by its baggage
		}
		l.SourceVersion = w.CanonicalRevision
		l.SourceCluster = w.ClusterID
	}
	if !r.srcID.IsZero() {
		l.SourcePrincipal = srcIDs
		if l.SourceWorkloadNamespace == "" {
			l.SourceWorkloadNamespace = r.srcID.ID().Namespace
		}
	}
	if w := r.dstW; w != nil {
		l.DestinationWorkload = orName(w.WorkloadName, w.Name)
		l.DestinationCanonicalService = w.CanonicalName
		l.DestinationCanonicalRevision = w.CanonicalRevision
		l.DestinationWorkloadNamespace = w.Namespace
		l.DestinationApp = w.CanonicalName
		if w.Derived {
			l.DestinationApp = w.WorkloadName // as ztunnel labels a destination known by its baggage
		}
		l.DestinationVersion = w.CanonicalRevision
		l.DestinationCluster = w.ClusterID
	}
	if !r.dstID.IsZero() {
		l.DestinationPrincipal = dstIDs
	}
	if s := r.dstSvc; s != nil {
		l.DestinationService = s.Hostname
		l.DestinationServiceNamespace = s.Namespace
		l.DestinationServiceName = s.Name
	}
	return l
}

func orName(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// open counts the connection as opened and writes its "connection opened" line to the
// access log (at debug level, as ztunnel does).
func (r *record) open(reg *metrics.Registry, log *slog.Logger) {
	reporter := metrics.ReporterSource
	if r.inbound() {
		reporter = metrics.ReporterDestination
	}
	r.m = reg.Open(r.labels(reporter))
	r.logOpened(log)
}

// finish counts the close and writes the access log. toServer is the request direction
// (client to server), toClient the response direction. A relaying connection is untracked
// first (connState.Ended), so that no flush or re-evaluation runs under it.
func (r *record) finish(log *slog.Logger, err error, flags string, toServer, toClient int64) {
	switch r.cut() {
	case cutDenied:
		flags, err = metrics.FlagDeny, errPolicyChange
	case cutRevoked:
		flags, err = metrics.FlagCertRevoked, errCertRevoked
	case cutDrained:
		err = errClosedFromDrain // ztunnel records it with the flags it had: not a failure
	}
	if flags == "" && err != nil {
		flags = metrics.FlagConnect
	}
	// The relay's totals are exact; the live counters may trail them on the splice path.
	r.toServer.Store(toServer)
	r.toClient.Store(toClient)
	r.flush()
	r.m.Close(flags)
	level := slog.LevelInfo
	if err != nil {
		level = slog.LevelError
	}
	// ztunnel logs bytes from its own point of view towards the peer: the source side sent the
	// request bytes, the destination side sent the response bytes.
	sent, recv := toServer, toClient
	if r.inbound() {
		sent, recv = toClient, toServer
	}
	ln := logging.Begin(log, level, "connection complete")
	if ln == nil {
		return
	}
	r.logFields(ln)
	ln.Int("bytes_sent", sent)
	ln.Int("bytes_recv", recv)
	ln.Millis("duration", r.start.since())
	// The response flags are the metrics'; ztunnel's line has only the error.
	if err != nil {
		ln.Str("error", err.Error())
	}
	ln.End()
}

// logFields adds the fields that both of a connection's access lines have: its ends, as
// ztunnel names them, and its direction.
func (r *record) logFields(ln *logging.Line) {
	srcIDs, dstIDs := r.ids()
	// Addresses go in as values with AppendTo: ztunnel writes them bare, strings quoted. They go
	// in by pointer (the record outlives the line): boxing an addr would allocate.
	ln.Any("src.addr", &r.src)
	var srcNS, srcCluster, dstCluster string
	if w := r.srcW; w != nil {
		// ztunnel names the pod, else the canonical service (all a baggage header gives).
		optStr(ln, "src.workload", orName(w.Name, w.CanonicalName))
		srcNS, srcCluster = w.Namespace, w.ClusterID
	}
	optStr(ln, "src.namespace", orName(srcNS, r.srcID.ID().Namespace))
	if r.mtls && !r.srcID.IsZero() {
		ln.Str("src.identity", srcIDs)
	}
	optStr(ln, "src.cluster", srcCluster)
	ln.Any("dst.addr", &r.dst)
	if r.hboneAddr.IsValid() {
		ln.Any("dst.hbone_addr", &r.hboneAddr)
	} else if r.note != nil && r.note.authority.IsValid() {
		ln.Any("dst.hbone_addr", &r.note.authority)
	}
	if r.dstSvc != nil {
		ln.Str("dst.service", r.dstSvc.Hostname)
	}
	if w := r.dstW; w != nil {
		name := orName(w.Name, w.CanonicalName)
		if w.Derived {
			name = w.WorkloadName // ztunnel names a destination known by its baggage so
		}
		optStr(ln, "dst.workload", name)
		optStr(ln, "dst.namespace", w.Namespace)
		dstCluster = w.ClusterID
	}
	if r.mtls && !r.dstID.IsZero() {
		ln.Str("dst.identity", dstIDs)
	}
	optStr(ln, "dst.cluster", dstCluster)
	ln.Str("direction", r.direction())
}

// logOpened writes ztunnel's "connection opened" access line, at debug level: the fields of
// the connection's "connection complete" line known when it opens (logFields).
func (r *record) logOpened(log *slog.Logger) {
	ln := logging.Begin(log, slog.LevelDebug, "connection opened")
	if ln == nil {
		return
	}
	r.logFields(ln)
	ln.End()
}

// earlyDeny logs a connection refused before the proxy knew enough of it to count it, as
// ztunnel's "connection failed" line: at warning level, with the two addresses, the direction
// and the error, and without metrics. ztunnel counts a connection, and writes its "connection
// complete" line, from the moment it has resolved where it goes; a refusal before that (an own
// port, no healthy endpoint, a CONNECT it cannot serve, a failed TLS handshake on 15008) is
// only this line.
func earlyDeny(log *slog.Logger, src, dst netip.AddrPort, inbound bool, err error) {
	ln := logging.Begin(log, slog.LevelWarn, "connection failed")
	if ln == nil {
		return
	}
	ln.Any("src.addr", src)
	ln.Any("dst.addr", dst)
	ln.Str("direction", directionOf(inbound))
	ln.Str("error", err.Error())
	ln.End()
}

// optStr adds the field when v is not empty: ztunnel leaves out what it does not know.
func optStr(ln *logging.Line, key, v string) {
	if v != "" {
		ln.Str(key, v)
	}
}
