package certs

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/ztunnel-go/ztunnel/tls/identity"
)

// orderSigner records the order of Sign calls and holds each until released.
type orderSigner struct {
	inner   Signer
	mu      sync.Mutex
	order   []string
	active  int
	peak    int
	started chan string
	release chan struct{}
}

func (s *orderSigner) Sign(ctx context.Context, id identity.ID, csr []byte, ttl time.Duration) ([]string, error) {
	s.mu.Lock()
	s.order = append(s.order, id.ServiceAccount)
	s.active++
	s.peak = max(s.peak, s.active)
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.active--
		s.mu.Unlock()
	}()
	s.started <- id.ServiceAccount
	select {
	case <-s.release:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return s.inner.Sign(ctx, id, csr, ttl)
}

func newOrderSigner(t *testing.T) *orderSigner {
	ca, err := NewFakeCA("cluster.local")
	if err != nil {
		t.Fatal(err)
	}
	return &orderSigner{inner: ca, started: make(chan string, 100), release: make(chan struct{})}
}

func sa(name string) identity.ID {
	return identity.ID{TrustDomain: "cluster.local", Namespace: "ns", ServiceAccount: name}
}

func TestRealTimeFetchesGoFirst(t *testing.T) {
	s := newOrderSigner(t)
	m := NewManager(s, ManagerOptions{MaxConcurrentFetches: 1})
	defer m.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	defer wg.Wait()
	get := func(name string) {
		wg.Go(func() {
			if _, err := m.Get(ctx, sa(name)); err != nil {
				t.Errorf("Get(%s): %v", name, err)
			}
		})
	}
	get("first") // takes the only slot
	if got := <-s.started; got != "first" {
		t.Fatalf("first fetch = %s", got)
	}
	for _, name := range []string{"pre1", "pre2"} {
		if err := m.Prefetch(sa(name)); err != nil {
			t.Fatal(err)
		}
	}
	waitQueued(t, m, 0, 2)
	get("realtime")
	waitQueued(t, m, 1, 2)
	// A Get for a queued prefetch promotes it behind the earlier real-time one.
	get("pre2")
	waitQueued(t, m, 2, 1)

	want := []string{"first", "realtime", "pre2", "pre1"}
	for i := range want {
		if i > 0 {
			if got := <-s.started; got != want[i] {
				t.Fatalf("fetch %d = %s, want %s (order so far %v)", i, got, want[i], s.order)
			}
		}
		s.release <- struct{}{}
	}
	if s.peak != 1 {
		t.Errorf("peak concurrent fetches = %d, want 1", s.peak)
	}
}

// waitQueued waits until the slots have the given numbers of waiters.
func waitQueued(t *testing.T, m *Manager, urgent, background int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		m.slots.mu.Lock()
		u, b := len(m.slots.urgent), len(m.slots.background)
		m.slots.mu.Unlock()
		if u == urgent && b == background {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("queued urgent %d background %d, want %d and %d", u, b, urgent, background)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestAtMostEightFetches(t *testing.T) {
	s := newOrderSigner(t)
	m := NewManager(s, ManagerOptions{})
	defer m.Close()
	const n = 20
	for i := range n {
		if err := m.Prefetch(sa("p" + string(rune('a'+i)))); err != nil {
			t.Fatal(err)
		}
	}
	for range DefaultMaxConcurrentFetches {
		<-s.started
	}
	waitQueued(t, m, 0, n-DefaultMaxConcurrentFetches)
	for range n - DefaultMaxConcurrentFetches {
		s.release <- struct{}{}
		<-s.started
	}
	for range DefaultMaxConcurrentFetches {
		s.release <- struct{}{}
	}
	if s.peak != DefaultMaxConcurrentFetches {
		t.Errorf("peak concurrent fetches = %d, want %d", s.peak, DefaultMaxConcurrentFetches)
	}
	// Prefetched certificates are served from the cache.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := m.Get(ctx, sa("pa")); err != nil {
		t.Fatal(err)
	}
	if len(s.order) != n {
		t.Errorf("%d signer calls, want %d", len(s.order), n)
	}
}

func TestForgetQueuedPrefetch(t *testing.T) {
	s := newOrderSigner(t)
	m := NewManager(s, ManagerOptions{MaxConcurrentFetches: 1})
	defer m.Close()
	m.Prefetch(sa("a"))
	<-s.started
	m.Prefetch(sa("b"))
	waitQueued(t, m, 0, 1)
	m.Forget(sa("b"))
	waitQueued(t, m, 0, 0)
	s.release <- struct{}{}
	m.Prefetch(sa("c"))
	if got := <-s.started; got != "c" {
		t.Errorf("next fetch = %s, want c (b was forgotten)", got)
	}
	s.release <- struct{}{}
}
