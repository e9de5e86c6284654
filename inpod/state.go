package inpod

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sort"
	"sync"
	"sync/atomic"

	"github.com/ztunnel-go/ztunnel/proxy"
)

// Pod is a pod istio-cni asked ztunnel to serve.
type Pod struct {
	UID     string
	Info    WorkloadInfo
	NetnsID NetnsID
	// Netns is the pod's network namespace. It is owned by the state machine and stays open
	// until the pod's proxy has drained; a factory may use it for the proxy's whole life.
	Netns *os.File
}

// PodProxy is a started pod proxy. *proxy.Proxy implements it.
type PodProxy interface {
	// Drain stops accepting and lets established connections finish until ctx ends or the
	// proxy's grace period passes, whichever is first, then closes the rest. It returns once
	// every goroutine of the proxy has ended. With a ctx that has already ended, every
	// connection is closed at once.
	Drain(ctx context.Context) error
	// Connections lists the connections the proxy relays, for /config_dump. It is called from
	// any goroutine, also while or after the proxy drains.
	Connections() proxy.Connections
}

// ProxyFactory starts the proxy of a pod: when Start returns without error the pod's
// listeners are bound inside pod.Netns. It is called from the Client's goroutine only.
type ProxyFactory interface {
	Start(ctx context.Context, pod *Pod) (PodProxy, error)
}

// ProxyFactoryFunc adapts a function to ProxyFactory.
type ProxyFactoryFunc func(ctx context.Context, pod *Pod) (PodProxy, error)

// Start calls f.
func (f ProxyFactoryFunc) Start(ctx context.Context, pod *Pod) (PodProxy, error) { return f(ctx, pod) }

// errProtocol marks a request the node agent should never have sent in this state; the
// connection is NACKed and closed.
var errProtocol = errors.New("inpod: protocol error")

// podError is a pod that could not be set up: NACKed, kept pending and retried.
type podError struct {
	uid string
	err error
}

func (e *podError) Error() string { return fmt.Sprintf("pod %s: %v", e.uid, e.err) }
func (e *podError) Unwrap() error { return e.err }

type runningPod struct {
	pod   *Pod
	proxy PodProxy
}

// state is the pod state machine of one Client. Every field is owned by the Client's Run
// goroutine except drains, which Run waits on.
type state struct {
	factory ProxyFactory
	log     *slog.Logger
	metrics *Metrics // nil: none; safe for the drain goroutines

	pods    map[string]*runningPod // uid -> started proxy
	pending map[string]*Pod        // uid -> pod whose proxy failed to start; retried

	snapshotDone bool            // SnapshotSent seen on the current connection
	snapshotUIDs map[string]bool // pods added or kept during the current snapshot

	drains sync.WaitGroup // one goroutine per proxy being drained

	// status is the published view of pods and pending, for /config_dump: replaced whole
	// after every change by the Run goroutine, read by anyone.
	status atomic.Pointer[map[string]PodStatus]
}

// PodStatus is one pod in /config_dump's "workloadState" (ztunnel's shape).
type PodStatus struct {
	State string `json:"state"` // "Up" once its proxy runs, "Pending" while it is retried
	// Connections are an Up pod's live connections, as Client.Pods reads them; absent for a
	// pending pod.
	Connections *proxy.Connections `json:"connections,omitempty"`
	Info        WorkloadInfo       `json:"info"`

	conns func() proxy.Connections // an Up pod's proxy's; nil while pending
}

// publish replaces the status view with the current pods and sets the pod gauges.
func (s *state) publish() {
	s.metrics.setCounts(len(s.pods), len(s.pending))
	m := make(map[string]PodStatus, len(s.pods)+len(s.pending))
	for uid, r := range s.pods {
		m[uid] = PodStatus{State: "Up", Info: r.pod.Info, conns: r.proxy.Connections}
	}
	for uid, p := range s.pending {
		m[uid] = PodStatus{State: "Pending", Info: p.Info}
	}
	s.status.Store(&m)
}

func newState(f ProxyFactory, log *slog.Logger, m *Metrics) *state {
	return &state{
		factory:      f,
		log:          log,
		metrics:      m,
		pods:         make(map[string]*runningPod),
		pending:      make(map[string]*Pod),
		snapshotUIDs: make(map[string]bool),
	}
}

// resetSnapshot starts a new connection: a new snapshot is expected, pending pods are
// forgotten (the node agent sends them again).
func (s *state) resetSnapshot() {
	defer s.publish()
	s.snapshotDone = false
	clear(s.snapshotUIDs)
	for uid, p := range s.pending {
		p.Netns.Close()
		delete(s.pending, uid)
	}
}

// ready reports whether the snapshot is complete and every pod of it is served.
func (s *state) ready() bool { return s.snapshotDone && len(s.pending) == 0 }

// pendingUIDs lists the pods waiting for a retry, sorted.
func (s *state) pendingUIDs() []string {
	out := make([]string, 0, len(s.pending))
	for uid := range s.pending {
		out = append(out, uid)
	}
	sort.Strings(out)
	return out
}

// handle applies one request. It owns req.Netns. A *podError means the pod is pending; an
// error wrapping errProtocol means the connection must end.
func (s *state) handle(ctx context.Context, req Request) error {
	defer s.publish()
	switch req.Kind {
	case KindAdd:
		if req.Info == nil {
			req.Netns.Close()
			return fmt.Errorf("%w: add %s without workload_info", errProtocol, req.UID)
		}
		s.log.Info("pod received, starting proxy", "uid", req.UID, "name", req.Info.Name, "namespace", req.Info.Namespace)
		if !s.snapshotDone {
			s.snapshotUIDs[req.UID] = true
		}
		id, err := netnsIDOf(req.Netns)
		if err != nil {
			req.Netns.Close()
			return &podError{req.UID, err}
		}
		return s.add(ctx, &Pod{UID: req.UID, Info: *req.Info, NetnsID: id, Netns: req.Netns})
	case KindKeep:
		if s.snapshotDone {
			return fmt.Errorf("%w: keep %s after the snapshot", errProtocol, req.UID)
		}
		s.log.Info("pod kept by the snapshot", "uid", req.UID)
		s.snapshotUIDs[req.UID] = true
		return nil
	case KindDel:
		s.log.Info("pod deleted, draining its proxy", "uid", req.UID)
		if !s.snapshotDone {
			// Not part of the snapshot any more; a running proxy goes at reconcile.
			delete(s.snapshotUIDs, req.UID)
			s.dropPending(req.UID)
			return nil
		}
		s.del(req.UID)
		return nil
	case KindSnapshotSent:
		if s.snapshotDone {
			return fmt.Errorf("%w: second snapshot_sent", errProtocol)
		}
		for uid := range s.pods {
			if !s.snapshotUIDs[uid] {
				s.log.Info("pod not in the snapshot, draining its proxy", "uid", uid)
				s.del(uid)
			}
		}
		clear(s.snapshotUIDs)
		s.snapshotDone = true
		s.log.Info("snapshot received", "pods", len(s.pods), "pending", len(s.pending))
		return nil
	}
	return fmt.Errorf("%w: unknown request %v", errProtocol, req.Kind)
}

// add starts pod's proxy unless the same pod in the same netns already runs. The same UID in a
// new netns is a recreated sandbox: the old proxy is drained first.
func (s *state) add(ctx context.Context, pod *Pod) error {
	if r := s.pods[pod.UID]; r != nil {
		if r.pod.NetnsID == pod.NetnsID {
			pod.Netns.Close() // idempotent add: the running proxy already holds this netns
			s.dropPending(pod.UID)
			return nil
		}
		s.log.Info("pod sandbox recreated with a new netns, replacing its proxy", "uid", pod.UID)
		s.del(pod.UID)
	}
	if old := s.pending[pod.UID]; old != nil && old != pod {
		old.Netns.Close()
		delete(s.pending, pod.UID)
	}
	px, err := s.factory.Start(ctx, pod)
	if err != nil {
		s.pending[pod.UID] = pod
		return &podError{pod.UID, err}
	}
	delete(s.pending, pod.UID)
	s.pods[pod.UID] = &runningPod{pod: pod, proxy: px}
	s.metrics.proxyStarted()
	return nil
}

// retryPending tries again to start every pending pod.
func (s *state) retryPending(ctx context.Context) {
	defer s.publish()
	for _, uid := range s.pendingUIDs() {
		p := s.pending[uid]
		s.log.Info("retrying pod", "uid", uid)
		if err := s.add(ctx, p); err != nil {
			s.log.Warn("retrying pod failed", "uid", uid, "err", err)
		}
	}
}

func (s *state) dropPending(uid string) {
	if p := s.pending[uid]; p != nil {
		p.Netns.Close()
		delete(s.pending, uid)
	}
}

// del stops uid's proxy in the background, closing its connections at once, and closes its
// netns afterwards. The pod was deleted, left the mesh or got a new sandbox: whatever its
// connections still carry has lost its endpoint or its redirection, so nothing is gained by
// waiting for them (ztunnel drains such a pod in its "immediate" mode too).
func (s *state) del(uid string) { s.stop(uid, false) }

// stop removes uid's proxy and drains it in the background, gracefully (within the proxy's
// grace period) or at once.
func (s *state) stop(uid string, graceful bool) {
	s.dropPending(uid)
	r := s.pods[uid]
	if r == nil {
		return
	}
	delete(s.pods, uid)
	s.drains.Go(func() {
		ctx := context.Background()
		if !graceful {
			var cancel context.CancelFunc
			ctx, cancel = context.WithCancel(ctx)
			cancel()
		}
		if err := r.proxy.Drain(ctx); err != nil {
			s.log.Warn("pod proxy drain", "uid", uid, "err", err)
		}
		r.pod.Netns.Close()
		s.metrics.proxyStopped()
	})
}

// shutdown drains every proxy gracefully, as ztunnel itself is stopping while its pods live
// on, and waits for all drains.
func (s *state) shutdown() {
	defer s.publish()
	for _, uid := range s.pendingUIDs() {
		s.dropPending(uid)
	}
	for uid := range s.pods {
		s.stop(uid, true)
	}
	s.drains.Wait()
}
