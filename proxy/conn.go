package proxy

import (
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"sync"

	"github.com/ztunnel-go/ztunnel/hbone"
	"github.com/ztunnel-go/ztunnel/metrics"
	"github.com/ztunnel-go/ztunnel/netutil"
	"github.com/ztunnel-go/ztunnel/policy"
)

// connState is what the proxy keeps of one connection it serves, an accepted socket or an
// HBONE stream, from its arrival to the end of its relay: its job (see end), its place in the
// tracker, its record and the relay's completion (Ended). They live exactly as long as each
// other, so they are one allocation: a node holds one per open connection, idle or not, and
// as four small objects (a job, a tracker entry, a record and a bound func) they cost more
// than their sizes, each small one keeping heap pages resident among the garbage of
// connection set-up (benchmarks/README.md, "One allocation per connection").
//
// The accept loop (or serveHBONE for a stream) makes it and hands it to the handler, which
// owns it until it hands it to a relay (kept); the relay's completion owns it then.
type connState struct {
	p *Proxy

	// closer ends the connection for the tracker: the accepted connection (or both legs)
	// until the relay runs, then the relay's Link. Guarded by tracker.mu once tracked.
	closer io.Closer

	limited bool        // holds a slot of p.cfg.Limit
	socket  socketGauge // the istio_tcp_sockets_open gauge it counts in, if any
	kept    bool        // handed to a relay; written only by the handler's goroutine
	// relaying: the relay counts into rec and policy may judge it (rec is complete);
	// guarded by tracker.mu. Flushes and re-evaluation skip a connection until then.
	relaying bool
	// slot is its index in tracker.conns while tracked (remove checks that the entry there is
	// this connection, so a stale or zero slot is harmless); guarded by tracker.mu. It sits
	// in what was padding before rec.
	slot int32

	rec record
}

// socketGauge says which istio_tcp_sockets_open series an accepted socket counts in.
type socketGauge uint8

const (
	noSocket          socketGauge = iota // an HBONE stream: its connection is the socket
	sourceSocket                         // reporter="source" (outbound listeners)
	destinationSocket                    // reporter="destination" (inbound listeners)
)

// closePair closes two connections: both legs of an inbound connection before its relay runs.
type closePair struct{ a, b net.Conn }

func (c closePair) Close() error { return errors.Join(c.a.Close(), c.b.Close()) }

// Ended is the relay's completion (a netutil.Ender): untrack, write the record, end the job.
// The byte totals are the record's counters, which the relay added to as it wrote and which
// also hold what went before it (early data sent with an HBONE request).
//
// A connection relayed before its HBONE answer whose request failed (refused, reset, or
// unanswered by the connect timeout) is reported as a failed connect, as it is when the
// answer is awaited first (outboundFailure): no bytes count, since none reached it.
//
// The HBONE stream of an outbound connection is the relay's second connection (relay's
// upstream); Refusal is nil for one whose answer was awaited (and was 200), so the check needs
// no mark of which were relayed before their answer (a pointer to the stream cost 8 bytes of
// every connState).
func (st *connState) Ended(_, _ int64, err error) {
	p, rec := st.p, &st.rec
	p.conns.remove(st) // from here on, nothing else uses st (closer included)
	if l, ok := st.closer.(*netutil.Link); ok && !rec.inbound() {
		if s, ok := l.B().(*hbone.Stream); ok {
			if rerr := s.Refusal(); rerr != nil {
				err, flags := outboundFailure(rerr)
				rec.finish(p.access, err, flags, 0, 0)
				st.end()
				return
			}
		}
	}
	rec.finish(p.access, relayErr(err), metrics.FlagNone, rec.toServer.Load(), rec.toClient.Load())
	st.end()
}

// end releases the connection's job, exactly once: its place in p.wg and, for a socket the
// accept loop took, its connection-limit slot and its istio_tcp_sockets_open count. The
// accept loop calls it when the handler returns, unless the handler kept the connection for
// an asynchronous relay (kept), whose completion (Ended) calls it.
func (st *connState) end() {
	p := st.p
	switch st.socket {
	case sourceSocket:
		p.cfg.Metrics.SocketClosed(metrics.ReporterSource)
	case destinationSocket:
		p.cfg.Metrics.SocketClosed(metrics.ReporterDestination)
	}
	if st.limited {
		p.cfg.Limit.release()
	}
	p.wg.Done()
}

// tracker is the set of live connections of a proxy, for drain, policy re-evaluation and
// periodic byte flushes. A connection's closer and relaying may be set after add, under mu.
//
// The set is a slice, each connection holding its index (connState.slot): removal moves the
// last entry into the hole. A node holds one entry per open connection, idle or not, and a
// map[*connState]struct{} cost about 31 bytes per entry at 9,400 connections (its groups and
// their load factor), the slice 8 to 10 (benchmarks/README.md, "The pools' buffers and the
// tracker (thirty-first session)").
type tracker struct {
	mu    sync.Mutex
	conns []*connState
	empty chan struct{} // closed and replaced when conns becomes empty; guarded by mu
}

// minTrackerShrink is the capacity below which the tracker's slice is never reallocated smaller:
// 8 KiB, not worth a copy.
const minTrackerShrink = 1024

func newTracker() *tracker {
	return &tracker{}
}

func (t *tracker) add(c *connState) {
	t.mu.Lock()
	c.slot = int32(len(t.conns))
	t.conns = append(t.conns, c)
	t.mu.Unlock()
}

// remove untracks c; a second remove of the same connection does nothing.
func (t *tracker) remove(c *connState) {
	t.mu.Lock()
	if i := int(c.slot); i >= 0 && i < len(t.conns) && t.conns[i] == c {
		last := len(t.conns) - 1
		moved := t.conns[last]
		t.conns[i], moved.slot = moved, int32(i)
		t.conns[last] = nil // no stale pointer keeps a finished connection's state alive
		t.conns = t.conns[:last]
		c.slot = -1
		if cap(t.conns) > minTrackerShrink && len(t.conns) < cap(t.conns)/4 {
			// After a burst has ended, hand back what it grew (a map never shrinks).
			t.conns = append(make([]*connState, 0, 2*len(t.conns)), t.conns...)
		}
	}
	if len(t.conns) == 0 && t.empty != nil {
		close(t.empty)
		t.empty = nil
	}
	t.mu.Unlock()
}

// waitEmpty returns when no connection is tracked or ctx ends.
func (t *tracker) waitEmpty(ctx context.Context) {
	t.mu.Lock()
	if len(t.conns) == 0 {
		t.mu.Unlock()
		return
	}
	if t.empty == nil {
		t.empty = make(chan struct{})
	}
	ch := t.empty
	t.mu.Unlock()
	select {
	case <-ch:
	case <-ctx.Done():
	}
}

// eachRelaying calls f with the record of every relaying connection, under the mutex, and
// returns how many connections are tracked (relaying or not).
func (t *tracker) eachRelaying(f func(*record)) (tracked int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, c := range t.conns {
		if c.relaying {
			f(&c.rec)
		}
	}
	return len(t.conns)
}

// markDrained marks the records of the relaying connections as closed by the drain (the
// error they end with), before anything closes them.
func (t *tracker) markDrained() { t.eachRelaying((*record).drained) }

// closeAll closes every tracked connection and returns how many there were. The relaying
// ones end with the drain's error (markDrained).
func (t *tracker) closeAll() int {
	t.markDrained()
	t.mu.Lock()
	closers := make([]io.Closer, 0, len(t.conns))
	for _, c := range t.conns {
		closers = append(closers, c.closer)
	}
	t.mu.Unlock()
	for _, c := range closers {
		c.Close()
	}
	return len(closers)
}

// flushBytes adds the bytes every live connection moved since the last flush to the metrics,
// and returns how many connections are tracked.
func (t *tracker) flushBytes() (tracked int) { return t.eachRelaying((*record).flush) }

// denial is an inbound connection that a policy update denied, as the proxy logs it.
type denial struct {
	src, dst netip.AddrPort // dst: where the connection is relayed to (record.inboundDst)
	srcID    string
	reason   string // the policy.Decision's
}

// reevaluate closes the inbound connections that the current policies deny and returns them.
func (t *tracker) reevaluate(set *policy.Set) []denial {
	t.mu.Lock()
	var closers []io.Closer
	var denied []denial
	for _, c := range t.conns {
		if !c.relaying || !c.rec.inbound() {
			continue
		}
		target, conn := c.rec.policyInputs()
		if d := set.Evaluate(target, &conn); !d.Allow {
			closers = append(closers, c.closer)
			c.rec.deny() // marks the record before close, for its error and response flags
			denied = append(denied, denial{src: c.rec.src.AddrPort(), dst: c.rec.inboundDst(), srcID: c.rec.srcID.URI(), reason: d.Reason})
		}
	}
	t.mu.Unlock()
	for _, c := range closers {
		c.Close()
	}
	return denied
}

// An HBONE stream relays without a goroutine while idle and takes arriving bytes straight to
// its destination socket only as a netutil.DirectNotifier; the relay finds that by a type
// assertion, so a signature drift would silently cost both. This keeps it a compile error.
var _ netutil.DirectNotifier = (*hbone.Stream)(nil)

// The relay resets the client of a tunnel refused after it started (see netutil.Refuser).
var _ netutil.Refuser = (*hbone.Stream)(nil)

// relay hands client and upstream to an asynchronous relay and returns once the relay runs on
// goroutines of its own (its first direction parked or ended). The relay owns both connections
// and st from here on; st (already tracked) aborts it through the Link, and its completion
// (st.Ended) untracks st, writes the record and ends the job. The caller must not touch st or
// the connections afterwards.
func (p *Proxy) relay(st *connState, client, upstream net.Conn) {
	st.kept = true
	l := netutil.NewLink(client, upstream, &st.rec.toServer, &st.rec.toClient, st)
	p.conns.mu.Lock()
	st.closer = l
	st.relaying = true
	p.conns.mu.Unlock()
	l.Run()
}
