package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"

	"github.com/ztunnel-go/ztunnel/hbone"
	"github.com/ztunnel-go/ztunnel/metrics"
	"github.com/ztunnel-go/ztunnel/netutil"
	"github.com/ztunnel-go/ztunnel/policy"
)

// tracked is one live connection known to the tracker, and the completion callback of its
// relay (done). closer ends it: the accepted connection (or both legs) until the relay runs,
// then the relay's Link. Policy re-evaluates inbound connections from their record
// (record.policyInputs). It is kept small on purpose: a node holds one per open connection.
type tracked struct {
	closer io.Closer // guarded by tracker.mu once added
	rec    *record   // its telemetry, for byte flushes, late denials and policy; outbound: nil before the relay starts
	p      *Proxy    // set by relay, for done
	j      *job      // set by relay, for done
	// opened is the HBONE stream of an outbound connection relayed before its answer
	// (hbone.Pool.Open), for done to tell a refused request from a relay error; nil
	// otherwise. Set before the relay starts.
	opened *hbone.Stream
}

// closePair closes two connections: both legs of an inbound connection before its relay runs.
type closePair struct{ a, b net.Conn }

func (c closePair) Close() error { return errors.Join(c.a.Close(), c.b.Close()) }

// done is the relay's completion: untrack, write the record, end the job. The byte totals
// are the record's counters, which the relay added to as it wrote and which also hold what
// went before it (early data sent with an HBONE request).
//
// A connection relayed before its HBONE answer whose request failed (refused, reset, or
// unanswered by the connect timeout) is reported as a failed connect, as it is when the
// answer is awaited first: the error names the target and no bytes count, since none reached
// it.
func (tr *tracked) done(_, _ int64, err error) {
	tr.p.conns.remove(tr)
	rec := tr.rec
	if tr.opened != nil {
		if rerr := tr.opened.Refusal(); rerr != nil {
			rec.finish(tr.p.access, fmt.Errorf("connect %s: %w", rec.hboneAddr, rerr), metrics.FlagConnect, 0, 0)
			tr.j.end()
			return
		}
	}
	rec.finish(tr.p.access, benign(err), metrics.FlagNone, rec.toServer.Load(), rec.toClient.Load())
	tr.j.end()
}

// tracker is the set of live connections of a proxy, for drain, policy re-evaluation and
// periodic byte flushes. A tracked's close and rec may be set after add, under mu.
type tracker struct {
	mu    sync.Mutex
	conns map[*tracked]struct{}
	empty chan struct{} // closed and replaced when conns becomes empty; guarded by mu
}

func newTracker() *tracker {
	return &tracker{conns: make(map[*tracked]struct{})}
}

func (t *tracker) add(c *tracked) {
	t.mu.Lock()
	t.conns[c] = struct{}{}
	t.mu.Unlock()
}

func (t *tracker) remove(c *tracked) {
	t.mu.Lock()
	delete(t.conns, c)
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

// closeAll closes every tracked connection and returns how many there were.
func (t *tracker) closeAll() int {
	t.mu.Lock()
	closers := make([]io.Closer, 0, len(t.conns))
	for c := range t.conns {
		closers = append(closers, c.closer)
	}
	t.mu.Unlock()
	for _, c := range closers {
		c.Close()
	}
	return len(closers)
}

// flushBytes adds the bytes every live connection moved since the last flush to the metrics.
func (t *tracker) flushBytes() {
	t.mu.Lock()
	defer t.mu.Unlock()
	for c := range t.conns {
		if c.rec != nil {
			c.rec.flush()
		}
	}
}

// reevaluate closes the inbound connections that the current policies deny.
func (t *tracker) reevaluate(set *policy.Set) int {
	t.mu.Lock()
	var closers []io.Closer
	for c := range t.conns {
		if c.rec == nil || !c.rec.inbound {
			continue
		}
		target, conn := c.rec.policyInputs()
		if d := set.Evaluate(target, &conn); !d.Allow {
			closers = append(closers, c.closer)
			c.rec.deny(d.Reason) // marks the record before close, for logs and response flags
		}
	}
	t.mu.Unlock()
	for _, c := range closers {
		c.Close()
	}
	return len(closers)
}

// job is the bookkeeping of one connection the proxy serves: its place in p.wg and, for a socket
// the accept loop took, its connection-limit slot and its istio_tcp_sockets_open gauge. end
// releases them, exactly once: the accept loop calls it when the handler returns, unless the
// handler kept the job for an asynchronous relay (kept), whose completion calls it.
type job struct {
	p       *Proxy
	limited bool   // holds a slot of p.cfg.Limit
	closed  func() // ends the socket gauge; nil for an HBONE stream
	kept    bool   // handed to a relay; written only by the handler's goroutine
}

func (j *job) end() {
	if j.closed != nil {
		j.closed()
	}
	if j.limited {
		j.p.cfg.Limit.release()
	}
	j.p.wg.Done()
}

// An HBONE stream relays without a goroutine while idle and takes arriving bytes straight to
// its destination socket only as a netutil.DirectNotifier; the relay finds that by a type
// assertion, so a signature drift would silently cost both. This keeps it a compile error.
var _ netutil.DirectNotifier = (*hbone.Stream)(nil)

// The relay resets the client of a tunnel refused after it started (see netutil.Refuser).
var _ netutil.Refuser = (*hbone.Stream)(nil)

// relay hands client and upstream to an asynchronous relay and returns once the relay runs on
// goroutines of its own (its first direction parked or ended). The relay owns both connections
// and the job from here on; tr (already tracked) aborts it through the Link, and its completion
// untracks tr, writes the record and ends the job. The caller must not touch rec, the
// connections or j afterwards.
func (p *Proxy) relay(rec *record, tr *tracked, client, upstream net.Conn, j *job) {
	j.kept = true
	tr.p, tr.j = p, j
	l := netutil.NewLink(client, upstream, &rec.toServer, &rec.toClient, tr.done)
	p.conns.mu.Lock()
	tr.closer = l
	tr.rec = rec
	p.conns.mu.Unlock()
	l.Run()
}
