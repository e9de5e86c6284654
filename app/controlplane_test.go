package app

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/ztunnel-go/ztunnel/tls/identity"
	"github.com/ztunnel-go/ztunnel/workload"
)

// prefetchRecorder records Prefetch and Forget calls.
type prefetchRecorder struct {
	mu   sync.Mutex
	held map[string]bool
	log  []string
}

func (r *prefetchRecorder) Prefetch(id identity.ID) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.held[id.ServiceAccount] = true
	r.log = append(r.log, "+"+id.ServiceAccount)
	return nil
}

func (r *prefetchRecorder) Forget(id identity.ID) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.held, id.ServiceAccount)
	r.log = append(r.log, "-"+id.ServiceAccount)
}

func (r *prefetchRecorder) snapshot() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.log)
}

func TestPrefetchLocal(t *testing.T) {
	store := workload.NewStore()
	rec := &prefetchRecorder{held: map[string]bool{}}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { prefetchLocal(ctx, store, rec, "node1") })
	defer func() { cancel(); wg.Wait() }()

	wl := func(uid, node, sa string, p workload.InboundProtocol) *workload.Workload {
		return &workload.Workload{UID: uid, Name: uid, Namespace: "ns", Node: node, ServiceAccount: sa, Protocol: p}
	}
	steps := []struct {
		name string
		u    workload.Update
		want []string
	}{
		{"local HBONE workloads are prefetched once per identity", workload.Update{Workloads: []*workload.Workload{
			wl("a1", "node1", "a", workload.ProtocolHBONE), wl("a2", "node1", "a", workload.ProtocolHBONE),
			wl("b1", "node2", "b", workload.ProtocolHBONE), wl("c1", "node1", "c", workload.ProtocolTCP),
		}}, []string{"+a"}},
		{"one of two workloads leaves", workload.Update{RemoveWorkloads: []string{"a1"}}, []string{"+a"}},
		{"the last one leaves", workload.Update{RemoveWorkloads: []string{"a2"}}, []string{"+a", "-a"}},
	}
	for _, st := range steps {
		if err := store.Apply(st.u); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(5 * time.Second)
		for !slices.Equal(rec.snapshot(), st.want) {
			if time.Now().After(deadline) {
				t.Fatalf("%s: calls %v, want %v", st.name, rec.snapshot(), st.want)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
}
