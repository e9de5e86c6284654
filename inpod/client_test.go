package inpod

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"

	"github.com/ztunnel-go/ztunnel/inpod/zdspb"
	"github.com/ztunnel-go/ztunnel/internal/testwait"
	"github.com/ztunnel-go/ztunnel/proxy"
)

// fakeFactory records proxy starts and drains; fail[uid] makes the next n starts of uid fail.
type fakeFactory struct {
	mu       sync.Mutex
	started  []string
	drained  []string
	graceful []string // the drains whose ctx had not ended: connections may finish
	fail     map[string]int
}

type fakeProxy struct {
	f   *fakeFactory
	uid string
}

func (p *fakeProxy) Drain(ctx context.Context) error {
	p.f.mu.Lock()
	defer p.f.mu.Unlock()
	p.f.drained = append(p.f.drained, p.uid)
	if ctx.Err() == nil {
		p.f.graceful = append(p.f.graceful, p.uid)
	}
	return nil
}

// Connections gives each fake proxy one outbound connection, from its pod's own address.
func (p *fakeProxy) Connections() proxy.Connections {
	return proxy.Connections{Inbound: []proxy.InboundConnection{}, Outbound: []proxy.OutboundConnection{{
		Src:         netip.MustParseAddrPort("10.244.0.2:40000"),
		OriginalDst: netip.MustParseAddrPort("10.96.0.1:80"),
		ActualDst:   netip.MustParseAddrPort("10.244.0.3:15008"),
		Protocol:    "HBONE",
	}}}
}

func (f *fakeFactory) gracefulDrains() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Sorted(slices.Values(f.graceful))
}

func (f *fakeFactory) Start(_ context.Context, pod *Pod) (PodProxy, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail[pod.UID] > 0 {
		f.fail[pod.UID]--
		return nil, errors.New("listen: address already in use")
	}
	f.started = append(f.started, pod.UID)
	return &fakeProxy{f, pod.UID}, nil
}

func (f *fakeFactory) snapshot() (started, drained []string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.started), slices.Sorted(slices.Values(f.drained))
}

// harness is a client under test and the raw node-agent end it talks to.
type harness struct {
	t       *testing.T
	l       *net.UnixListener
	f       *fakeFactory
	c       *Client
	reg     *prometheus.Registry // the client's workload_manager_* metrics
	readyMu sync.Mutex
	ready   []bool
	cancel  context.CancelFunc
	done    chan error
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	if runtime.GOOS != "linux" {
		t.Skip("SOCK_SEQPACKET and SCM_RIGHTS handling is Linux-only")
	}
	path := filepath.Join(t.TempDir(), "zds.sock")
	l, err := net.ListenUnix("unixpacket", &net.UnixAddr{Name: path, Net: "unixpacket"})
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, l: l, f: &fakeFactory{fail: map[string]int{}}, reg: prometheus.NewRegistry(), done: make(chan error, 1)}
	m, err := NewMetrics(h.reg)
	if err != nil {
		t.Fatal(err)
	}
	c, err := NewClient(Config{
		Path: path, Factory: h.f, RetryInterval: 50 * time.Millisecond, Metrics: m,
		MinBackoff: time.Millisecond, MaxBackoff: 10 * time.Millisecond,
		Ready: func(v bool) {
			h.readyMu.Lock()
			h.ready = append(h.ready, v)
			h.readyMu.Unlock()
		},
		Logger: slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	if err != nil {
		t.Fatal(err)
	}
	h.c = c
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	go func() { h.done <- c.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-h.done:
		case <-time.After(5 * time.Second):
			t.Error("Run did not return after cancel")
		}
		l.Close()
	})
	return h
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Logf("%s", strings.TrimSpace(string(p)))
	return len(p), nil
}

func (h *harness) lastReady() (bool, int) {
	h.readyMu.Lock()
	defer h.readyMu.Unlock()
	if len(h.ready) == 0 {
		return false, 0
	}
	return h.ready[len(h.ready)-1], len(h.ready)
}

// peer is one accepted connection from the client.
type peer struct {
	t  *testing.T
	uc *net.UnixConn
}

// accept takes the client's next connection and checks its hello.
func (h *harness) accept() *peer {
	h.t.Helper()
	h.l.SetDeadline(time.Now().Add(5 * time.Second))
	uc, err := h.l.AcceptUnix()
	if err != nil {
		h.t.Fatalf("accept: %v", err)
	}
	h.t.Cleanup(func() { uc.Close() })
	p := &peer{t: h.t, uc: uc}
	b := p.read()
	var hello zdspb.ZdsHello
	if err := proto.Unmarshal(b, &hello); err != nil || hello.Version != zdspb.Version_V1 {
		h.t.Fatalf("hello = %x (%v), want version V1", b, err)
	}
	return p
}

func (p *peer) read() []byte {
	p.t.Helper()
	buf := make([]byte, 4096)
	p.uc.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, err := p.uc.Read(buf)
	if err != nil {
		p.t.Fatalf("read: %v", err)
	}
	return buf[:n]
}

// exchange sends a datagram with files as SCM_RIGHTS and returns the ack's error text.
func (p *peer) exchange(b []byte, files ...*os.File) string {
	p.t.Helper()
	var oob []byte
	if len(files) > 0 {
		fds := make([]int, len(files))
		for i, f := range files {
			fds[i] = int(f.Fd())
		}
		oob = unix.UnixRights(fds...)
	}
	if _, _, err := p.uc.WriteMsgUnix(b, oob, nil); err != nil {
		p.t.Fatalf("send: %v", err)
	}
	var resp zdspb.WorkloadResponse
	if err := proto.Unmarshal(p.read(), &resp); err != nil || resp.GetAck() == nil {
		p.t.Fatalf("answer is not an ack: %v", err)
	}
	return resp.GetAck().GetError()
}

func (p *peer) send(req *zdspb.WorkloadRequest, files ...*os.File) string {
	p.t.Helper()
	b, err := proto.Marshal(req)
	if err != nil {
		p.t.Fatal(err)
	}
	return p.exchange(b, files...)
}

// expectClosed checks the client hung up.
func (p *peer) expectClosed() {
	p.t.Helper()
	buf := make([]byte, 64)
	p.uc.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, err := p.uc.Read(buf)
	if err == nil && n != 0 {
		p.t.Fatalf("read %d bytes, want the connection closed", n)
	}
	if err != nil && errors.Is(err, os.ErrDeadlineExceeded) {
		p.t.Fatal("connection still open, want it closed")
	}
}

// addPods adds each uid, each in a netns of its own under dir, and fails on a NACK.
func (p *peer) addPods(dir string, uids ...string) {
	p.t.Helper()
	for _, uid := range uids {
		if e := p.send(add(uid), netnsFile(p.t, dir, uid)); e != "" {
			p.t.Fatalf("add %s NACKed: %s", uid, e)
		}
	}
}

func add(uid string) *zdspb.WorkloadRequest {
	return &zdspb.WorkloadRequest{Payload: &zdspb.WorkloadRequest_Add{Add: &zdspb.AddWorkload{
		Uid: uid, WorkloadInfo: &zdspb.WorkloadInfo{Name: uid, Namespace: "default", ServiceAccount: "sa"},
	}}}
}

func keep(uid string) *zdspb.WorkloadRequest {
	return &zdspb.WorkloadRequest{Payload: &zdspb.WorkloadRequest_Keep{Keep: &zdspb.KeepWorkload{Uid: uid}}}
}

func del(uid string) *zdspb.WorkloadRequest {
	return &zdspb.WorkloadRequest{Payload: &zdspb.WorkloadRequest_Del{Del: &zdspb.DelWorkload{Uid: uid}}}
}

var snapshotSent = &zdspb.WorkloadRequest{Payload: &zdspb.WorkloadRequest_SnapshotSent{SnapshotSent: &zdspb.SnapshotSent{}}}

// netnsFile stands in for a netns descriptor: the state machine only needs its identity.
// Each name is a distinct inode; opening the same name twice gives the same identity.
func netnsFile(t *testing.T, dir, name string) *os.File {
	t.Helper()
	p := filepath.Join(dir, name)
	f, err := os.OpenFile(p, os.O_RDONLY|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

func TestSnapshotSemantics(t *testing.T) {
	h := newHarness(t)
	dir := t.TempDir()

	// First connection: two pods, then the end of the snapshot.
	p := h.accept()
	for _, uid := range []string{"a", "b"} {
		if e := p.send(add(uid), netnsFile(t, dir, uid)); e != "" {
			t.Fatalf("add %s NACKed: %s", uid, e)
		}
		if ready, _ := h.lastReady(); ready {
			t.Fatal("ready before snapshot_sent")
		}
	}
	if e := p.send(snapshotSent); e != "" {
		t.Fatalf("snapshot_sent NACKed: %s", e)
	}
	testwait.Until(t, "ready", 5*time.Second, func() bool { r, _ := h.lastReady(); return r })

	// The node agent restarts: a is re-added in the same netns, b is kept, c is new.
	p.uc.Close()
	p = h.accept()
	testwait.Until(t, "not ready after disconnect", 5*time.Second, func() bool { r, _ := h.lastReady(); return !r })
	for _, step := range []struct {
		req   *zdspb.WorkloadRequest
		files []*os.File
	}{
		{add("a"), []*os.File{netnsFile(t, dir, "a")}},
		{keep("b"), nil},
		{add("c"), []*os.File{netnsFile(t, dir, "c")}},
		{snapshotSent, nil},
	} {
		if e := p.send(step.req, step.files...); e != "" {
			t.Fatalf("%v NACKed: %s", step.req, e)
		}
	}
	testwait.Until(t, "ready again", 5*time.Second, func() bool { r, _ := h.lastReady(); return r })
	started, drained := h.f.snapshot()
	if want := []string{"a", "b", "c"}; !slices.Equal(started, want) || len(drained) != 0 {
		t.Fatalf("after second snapshot started=%v drained=%v, want started=%v and nothing drained", started, drained, want)
	}

	// Third connection: only c survives; a and b are drained when the snapshot ends. A del
	// during the snapshot of a pod never added is harmless.
	p.uc.Close()
	p = h.accept()
	if e := p.send(keep("c")); e != "" {
		t.Fatal(e)
	}
	if e := p.send(del("zzz")); e != "" {
		t.Fatal(e)
	}
	if e := p.send(snapshotSent); e != "" {
		t.Fatal(e)
	}
	testwait.Until(t, "a and b drained", 5*time.Second, func() bool {
		_, d := h.f.snapshot()
		return slices.Equal(d, []string{"a", "b"})
	})

	// Live: del drains at once; add of the same uid in a new netns replaces the proxy.
	if e := p.send(add("d"), netnsFile(t, dir, "d")); e != "" {
		t.Fatal(e)
	}
	if e := p.send(add("c"), netnsFile(t, dir, "c-recreated")); e != "" {
		t.Fatal(e)
	}
	if e := p.send(del("d")); e != "" {
		t.Fatal(e)
	}
	testwait.Until(t, "c (old netns) and d drained", 5*time.Second, func() bool {
		_, d := h.f.snapshot()
		return slices.Equal(d, []string{"a", "b", "c", "d"})
	})
	started, _ = h.f.snapshot()
	if want := []string{"a", "b", "c", "d", "c"}; !slices.Equal(started, want) {
		t.Fatalf("started = %v, want %v", started, want)
	}
	// A pod left out of a snapshot, deleted or given a new sandbox is gone: its connections
	// are closed at once, not drained.
	if g := h.f.gracefulDrains(); len(g) != 0 {
		t.Errorf("pods %v drained gracefully, want every removed pod stopped at once", g)
	}
}

// TestShutdownDrainsGracefully stops the client: ztunnel is going away, not the pods, so each
// pod proxy lets its connections finish within the grace period.
func TestShutdownDrainsGracefully(t *testing.T) {
	h := newHarness(t)
	dir := t.TempDir()
	p := h.accept()
	p.addPods(dir, "a", "b")
	if e := p.send(snapshotSent); e != "" {
		t.Fatal(e)
	}
	if e := p.send(del("b")); e != "" {
		t.Fatal(e)
	}
	h.cancel()
	select {
	case err := <-h.done:
		h.done <- err // for the cleanup
		if err != nil {
			t.Fatalf("Run = %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
	if _, d := h.f.snapshot(); !slices.Equal(d, []string{"a", "b"}) {
		t.Fatalf("drained %v, want a and b", d)
	}
	if g := h.f.gracefulDrains(); !slices.Equal(g, []string{"a"}) {
		t.Errorf("graceful drains %v, want only a (b was deleted before the shutdown)", g)
	}
}

func TestProtocolErrorsNACKAndReconnect(t *testing.T) {
	dir := t.TempDir()
	garbage := []byte{0xff, 0xff, 0xff}
	unknownOnly, _ := proto.Marshal(&zdspb.ZdsHello{Version: zdspb.Version_V1}) // field 1 varint: not a valid oneof message
	cases := []struct {
		name      string
		snapshot  bool // finish a snapshot first
		data      []byte
		files     int
		wantNACK  string
		wantClose bool
	}{
		{name: "KeepAfterSnapshot", snapshot: true, data: mustMarshal(keep("a")), wantNACK: "keep", wantClose: true},
		{name: "SecondSnapshotSent", snapshot: true, data: mustMarshal(snapshotSent), wantNACK: "snapshot_sent", wantClose: true},
		{name: "AddWithoutFD", data: mustMarshal(add("a")), wantNACK: "without a netns", wantClose: true},
		{name: "AddWithTwoFDs", data: mustMarshal(add("a")), files: 2, wantNACK: "more than one", wantClose: true},
		{name: "DelWithFD", snapshot: true, data: mustMarshal(del("a")), files: 1, wantNACK: "descriptor", wantClose: true},
		{name: "Garbage", data: garbage, wantNACK: "decode", wantClose: true},
		{name: "NoPayload", data: unknownOnly, wantNACK: "payload", wantClose: true},
		{name: "AddWithoutWorkloadInfo", data: mustMarshal(&zdspb.WorkloadRequest{Payload: &zdspb.WorkloadRequest_Add{Add: &zdspb.AddWorkload{Uid: "a"}}}), files: 1, wantNACK: "workload_info", wantClose: true},
		{name: "AddWithoutUID", data: mustMarshal(add("")), files: 1, wantNACK: "empty uid", wantClose: true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := newHarness(t)
			p := h.accept()
			fdsBefore := openFDs(t) // the client's connection and ours
			if c.snapshot {
				if e := p.send(snapshotSent); e != "" {
					t.Fatal(e)
				}
			}
			var files []*os.File
			for i := range c.files {
				files = append(files, netnsFile(t, dir, fmt.Sprintf("%s-%d", c.name, i)))
			}
			got := p.exchange(c.data, files...)
			if !strings.Contains(got, c.wantNACK) {
				t.Fatalf("answer = %q, want a NACK containing %q", got, c.wantNACK)
			}
			if c.wantClose {
				p.expectClosed()
			}
			// The client comes back and works.
			p.uc.Close()
			p = h.accept()
			if e := p.send(snapshotSent); e != "" {
				t.Fatalf("after reconnect: %s", e)
			}
			if started, _ := h.f.snapshot(); len(started) != 0 {
				t.Errorf("started %v, want no proxy", started)
			}
			// Received descriptors were all closed (ours are closed by t.Cleanup later).
			for _, f := range files {
				f.Close()
			}
			testwait.Until(t, "received descriptors closed", 5*time.Second, func() bool { return openFDs(t) <= fdsBefore })
		})
	}
}

func TestFailedPodIsPendingAndRetried(t *testing.T) {
	h := newHarness(t)
	h.f.fail["a"] = 2
	p := h.accept()
	e := p.send(add("a"), netnsFile(t, t.TempDir(), "a"))
	if !strings.Contains(e, "address already in use") {
		t.Fatalf("answer = %q, want a NACK with the start error", e)
	}
	if e := p.send(snapshotSent); e != "" {
		t.Fatal(e)
	}
	if r, _ := h.lastReady(); r {
		t.Fatal("ready with a pending pod")
	}
	want := WorkloadInfo{Name: "a", Namespace: "default", ServiceAccount: "sa"}
	if got := h.c.Pods()["a"]; got.State != "Pending" || got.Info != want || got.Connections != nil {
		t.Errorf("workloadState of a pending pod = %+v, want Pending without connections", got)
	}
	if b, _ := json.Marshal(h.c.Pods()); string(b) != `{"a":{"state":"Pending","info":{"name":"a","namespace":"default","serviceAccount":"sa"}}}` {
		t.Errorf("workloadState JSON of a pending pod = %s", b)
	}
	testwait.Until(t, "pod started by the retry and ready", 5*time.Second, func() bool {
		started, _ := h.f.snapshot()
		r, _ := h.lastReady()
		return slices.Equal(started, []string{"a"}) && r
	})
	testwait.Until(t, "workloadState Up", 5*time.Second, func() bool { return h.c.Pods()["a"].State == "Up" })
	// The dump is ztunnel's JSON shape, a running pod's proxy's connections read when asked.
	b, _ := json.Marshal(h.c.Pods())
	if string(b) != `{"a":{"state":"Up","connections":{"inbound":[],"outbound":[{"src":"10.244.0.2:40000",`+
		`"originalDst":"10.96.0.1:80","actualDst":"10.244.0.3:15008","protocol":"HBONE"}]},`+
		`"info":{"name":"a","namespace":"default","serviceAccount":"sa"}}}` {
		t.Errorf("workloadState JSON = %s", b)
	}
}

// podCounts is the workload manager's metrics at one moment.
type podCounts struct{ active, pending, started, stopped float64 }

// counts gathers the client's workload_manager_* metrics; each must be registered.
func (h *harness) counts() podCounts {
	h.t.Helper()
	mfs, err := h.reg.Gather()
	if err != nil {
		h.t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			switch {
			case m.GetGauge() != nil:
				got[mf.GetName()] = m.GetGauge().GetValue()
			case m.GetCounter() != nil:
				got[mf.GetName()] = m.GetCounter().GetValue()
			}
		}
	}
	var c podCounts
	for name, v := range map[string]*float64{
		"workload_manager_active_proxy_count":    &c.active,
		"workload_manager_pending_proxy_count":   &c.pending,
		"workload_manager_proxies_started_total": &c.started,
		"workload_manager_proxies_stopped_total": &c.stopped,
	} {
		val, ok := got[name]
		if !ok {
			h.t.Fatalf("%s is not registered (have %v)", name, got)
		}
		*v = val
	}
	return c
}

// TestWorkloadManagerMetrics: the gauges follow the running and pending pods as each request is
// answered, and the counters count proxies started and proxies drained, through a failed start,
// its retry, a live delete, a recreated sandbox and the client's shutdown.
func TestWorkloadManagerMetrics(t *testing.T) {
	h := newHarness(t)
	dir := t.TempDir()
	expect := func(what string, want podCounts) {
		t.Helper()
		testwait.Until(t, what, 5*time.Second, func() bool { return h.counts() == want })
	}
	// Gauges are set before a request is answered, so they are exact right after an answer.
	exact := func(what string, want podCounts) {
		t.Helper()
		if got := h.counts(); got != want {
			t.Fatalf("%s: %+v, want %+v", what, got, want)
		}
	}
	if got := h.counts(); got != (podCounts{}) {
		t.Fatalf("before any pod: %+v, want zeros", got)
	}

	h.f.fail["c"] = 1
	p := h.accept()
	p.addPods(dir, "a", "b")
	exact("a and b added", podCounts{active: 2, started: 2})
	if e := p.send(add("c"), netnsFile(t, dir, "c")); e == "" {
		t.Fatal("c's failed start was ACKed")
	}
	exact("c failed to start", podCounts{active: 2, pending: 1, started: 2})
	if e := p.send(snapshotSent); e != "" {
		t.Fatal(e)
	}
	expect("c started by the retry", podCounts{active: 3, started: 3})

	if e := p.send(del("a")); e != "" {
		t.Fatal(e)
	}
	expect("a drained", podCounts{active: 2, started: 3, stopped: 1})

	// b's sandbox is recreated: the old proxy drains, a new one starts.
	if e := p.send(add("b"), netnsFile(t, dir, "b2")); e != "" {
		t.Fatal(e)
	}
	expect("b replaced", podCounts{active: 2, started: 4, stopped: 2})

	h.cancel()
	err := <-h.done
	h.done <- err // for the cleanup
	exact("after shutdown", podCounts{started: 4, stopped: 4})
}

func mustMarshal(m proto.Message) []byte {
	b, err := proto.Marshal(m)
	if err != nil {
		panic(err)
	}
	return b
}

// openFDs counts this process's open descriptors.
func openFDs(t *testing.T) int {
	t.Helper()
	es, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip("no /proc/self/fd")
	}
	return len(es)
}
