package certs

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/ztunnel-go/ztunnel/tls/certs/certtest"
	"github.com/ztunnel-go/ztunnel/tls/identity"
)

// testSigner wraps a Signer, counting calls, and can be made to fail, block
// or misbehave.
type testSigner struct {
	inner Signer

	mu    sync.Mutex
	times []time.Time // when each call started
	fail  error       // returned instead of signing when non-nil
	gate  chan struct{}
	// mangle, when set, rewrites the answer.
	mangle func(pems []string) []string
}

func (s *testSigner) Sign(ctx context.Context, id identity.ID, csr []byte, ttl time.Duration) ([]string, error) {
	s.mu.Lock()
	s.times = append(s.times, time.Now())
	fail, gate, mangle := s.fail, s.gate, s.mangle
	s.mu.Unlock()
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	if fail != nil {
		return nil, fail
	}
	pems, err := s.inner.Sign(ctx, id, csr, ttl)
	if err == nil && mangle != nil {
		pems = mangle(pems)
	}
	return pems, err
}

func (s *testSigner) calls() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.times)
}

func (s *testSigner) setFail(err error) {
	s.mu.Lock()
	s.fail = err
	s.mu.Unlock()
}

func newTestSigner(t *testing.T) *testSigner {
	t.Helper()
	ca, err := NewFakeCA("cluster.local")
	if err != nil {
		t.Fatal(err)
	}
	return &testSigner{inner: ca}
}

func TestGetCachesAndDedups(t *testing.T) {
	s := newTestSigner(t)
	s.gate = make(chan struct{})
	m := NewManager(s, ManagerOptions{})
	defer m.Close()

	const n = 50
	var wg sync.WaitGroup
	got := make([]*Certificate, n)
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() { got[i], errs[i] = m.Get(context.Background(), testID) })
	}
	// Let the callers pile up on the in-flight request, then release it.
	time.Sleep(50 * time.Millisecond)
	close(s.gate)
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("Get #%d: %v", i, errs[i])
		}
		if got[i] != got[0] {
			t.Fatalf("Get #%d returned another certificate", i)
		}
	}
	again, err := m.Get(context.Background(), testID)
	if err != nil || again != got[0] {
		t.Fatalf("cached Get = %p, %v; want %p", again, err, got[0])
	}
	if c := s.calls(); c != 1 {
		t.Errorf("signer called %d times, want 1", c)
	}
	c := got[0]
	if c.ID != testID || c.Leaf == nil || c.TLS.Leaf != c.Leaf || len(c.TLS.Certificate) != 1 || c.Roots == nil {
		t.Errorf("certificate = %+v, want ID, leaf, one-element chain and roots set", c)
	}
	if !c.NotBefore.Equal(c.Leaf.NotBefore) || !c.NotAfter.Equal(c.Leaf.NotAfter) {
		t.Errorf("validity %v..%v does not match the leaf", c.NotBefore, c.NotAfter)
	}
	if got := c.NotAfter.Sub(c.NotBefore); got < DefaultTTL || got > DefaultTTL+Backdate+time.Second {
		t.Errorf("lifetime %v, want DefaultTTL (%v) plus backdating", got, DefaultTTL)
	}
	// Another identity is another request.
	other := identity.ID{TrustDomain: "cluster.local", Namespace: "default", ServiceAccount: "other"}
	if _, err := m.Get(context.Background(), other); err != nil {
		t.Fatal(err)
	}
	if c := s.calls(); c != 2 {
		t.Errorf("signer called %d times after a second identity, want 2", c)
	}
}

func TestGetCallerContext(t *testing.T) {
	s := newTestSigner(t)
	s.gate = make(chan struct{})
	m := NewManager(s, ManagerOptions{})
	defer m.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := m.Get(ctx, testID); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Get with an expiring context = %v, want DeadlineExceeded", err)
	}
	// The abandoned wait does not cancel the shared request.
	close(s.gate)
	if _, err := m.Get(context.Background(), testID); err != nil {
		t.Fatal(err)
	}
	if c := s.calls(); c != 1 {
		t.Errorf("signer called %d times, want 1", c)
	}
}

func TestGetInvalidIdentity(t *testing.T) {
	m := NewManager(newTestSigner(t), ManagerOptions{})
	defer m.Close()
	for _, id := range []identity.ID{{}, {TrustDomain: "td", Namespace: "a/b", ServiceAccount: "c"}} {
		if _, err := m.Get(context.Background(), id); !errors.Is(err, identity.ErrInvalid) {
			t.Errorf("Get(%+v) = %v, want ErrInvalid", id, err)
		}
	}
}

func TestRefreshAtHalfLifetime(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newTestSigner(t)
		m := NewManager(s, ManagerOptions{TTL: 24 * time.Hour})
		defer m.Close()
		c1, err := m.Get(context.Background(), testID)
		if err != nil {
			t.Fatal(err)
		}
		half := c1.NotBefore.Add(c1.NotAfter.Sub(c1.NotBefore) / 2)

		time.Sleep(time.Until(half) - time.Second)
		synctest.Wait()
		if c, _ := m.Get(context.Background(), testID); c != c1 || s.calls() != 1 {
			t.Fatalf("renewed before half lifetime (%d signer calls)", s.calls())
		}
		time.Sleep(2 * time.Second)
		synctest.Wait()
		c2, err := m.Get(context.Background(), testID)
		if err != nil {
			t.Fatal(err)
		}
		if c2 == c1 || s.calls() != 2 {
			t.Fatalf("not renewed after half lifetime (%d signer calls)", s.calls())
		}
		if c2.Leaf.SerialNumber.Cmp(c1.Leaf.SerialNumber) == 0 {
			t.Error("renewed certificate has the same serial")
		}
		if c2.TLS.PrivateKey == c1.TLS.PrivateKey {
			t.Error("renewal reused the private key")
		}
		// And again half a lifetime later.
		time.Sleep(12*time.Hour + time.Minute)
		synctest.Wait()
		if got := s.calls(); got != 3 {
			t.Errorf("signer calls after two half-lives = %d, want 3", got)
		}
	})
}

func TestShortTTLRefresh(t *testing.T) {
	// A lifetime shorter than the CA's backdating: renewal is at half the
	// remaining lifetime, not immediately and not in a loop. Under synctest the
	// clock only moves when every goroutine waits, so load cannot skew it.
	synctest.Test(t, func(t *testing.T) {
		s := newTestSigner(t)
		m := NewManager(s, ManagerOptions{TTL: 2 * time.Second})
		defer m.Close()
		c1, err := m.Get(context.Background(), testID)
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(300 * time.Millisecond)
		synctest.Wait()
		if got := s.calls(); got != 1 {
			t.Fatalf("signer calls after 300ms = %d, want 1", got)
		}
		time.Sleep(1600 * time.Millisecond) // 1.9 s: renewed once, at half the remaining lifetime
		synctest.Wait()
		if got := s.calls(); got != 2 {
			t.Fatalf("signer calls within the lifetime = %d, want exactly 2 (one renewal, no loop)", got)
		}
		c2, err := m.Get(context.Background(), testID)
		if err != nil || c2 == c1 {
			t.Fatalf("no renewal within the lifetime: %v", err)
		}
		// The renewed certificate is renewed in turn about a second later, not in a tight loop.
		time.Sleep(time.Second)
		synctest.Wait()
		if got := s.calls(); got != 3 {
			t.Fatalf("signer calls after 2.9 s = %d, want 3", got)
		}
	})
}

func TestSignerOutage(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newTestSigner(t)
		m := NewManager(s, ManagerOptions{TTL: time.Hour})
		defer m.Close()
		c1, err := m.Get(context.Background(), testID)
		if err != nil {
			t.Fatal(err)
		}
		outage := errors.New("istiod unreachable")
		s.setFail(outage)

		// Renewal starts failing at half lifetime; the certificate stays.
		refresh := refreshAt(c1, time.Now())
		time.Sleep(time.Until(refresh) + 20*time.Minute)
		synctest.Wait()
		c, err := m.Get(context.Background(), testID)
		if err != nil || c != c1 {
			t.Fatalf("Get during outage = %v, %v; want the current certificate", c, err)
		}
		if got := m.Dump()[0].State; got != "Available" {
			t.Errorf("state during outage = %q, want Available", got)
		}

		// Retries back off 500ms, 1s, 2s ... 150s.
		s.mu.Lock()
		times := append([]time.Time(nil), s.times[1:]...)
		s.mu.Unlock()
		want := InitialBackoff
		for i := 1; i < len(times); i++ {
			if got := times[i].Sub(times[i-1]); got != want {
				t.Fatalf("retry %d after %v, want %v (attempts at %v)", i, got, want, times)
			}
			want = min(2*want, MaxBackoff)
		}
		if want != MaxBackoff {
			t.Errorf("backoff never reached %v in 20 minutes (%d attempts)", MaxBackoff, len(times))
		}

		// Past expiry, Get fails closed.
		time.Sleep(time.Until(c1.NotAfter) + time.Second)
		synctest.Wait()
		if c, err := m.Get(context.Background(), testID); err == nil || !errors.Is(err, outage) || !strings.Contains(err.Error(), "expired") {
			t.Fatalf("Get after expiry = %v, %v; want an expiry error wrapping the signer's", c, err)
		}
		if got := m.Dump()[0].State; !strings.HasPrefix(got, "Unavailable: ") || !strings.Contains(got, outage.Error()) {
			t.Errorf("state after expiry = %q, want Unavailable with the signer's error", got)
		}

		// The signer recovers: within one maximal backoff a certificate is back.
		s.setFail(nil)
		time.Sleep(MaxBackoff + time.Second)
		synctest.Wait()
		c3, err := m.Get(context.Background(), testID)
		if err != nil || c3 == c1 {
			t.Fatalf("Get after recovery = %v, %v", c3, err)
		}
	})
}

func TestFirstFetchFailure(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newTestSigner(t)
		boom := errors.New("boom")
		s.setFail(boom)
		m := NewManager(s, ManagerOptions{})
		defer m.Close()
		if _, err := m.Get(context.Background(), testID); !errors.Is(err, boom) {
			t.Fatalf("Get = %v, want the signer's error", err)
		}
		// Fail fast while the retry is pending: no new request.
		if _, err := m.Get(context.Background(), testID); !errors.Is(err, boom) {
			t.Fatalf("second Get = %v, want the signer's error", err)
		}
		if got := s.calls(); got != 1 {
			t.Errorf("signer calls = %d, want 1", got)
		}
		s.setFail(nil)
		time.Sleep(InitialBackoff)
		synctest.Wait()
		if _, err := m.Get(context.Background(), testID); err != nil {
			t.Fatalf("Get after the retry: %v", err)
		}
	})
}

func TestBadSignerAnswers(t *testing.T) {
	other, err := NewFakeCA("cluster.local")
	if err != nil {
		t.Fatal(err)
	}
	otherID := identity.ID{TrustDomain: "cluster.local", Namespace: "default", ServiceAccount: "someone-else"}
	tests := []struct {
		name    string
		mangle  func(t *testing.T, s Signer, pems []string) []string
		wantErr string
	}{
		{"wrong SAN", func(t *testing.T, s Signer, _ []string) []string {
			_, pems := signFor(t, s, otherID, time.Hour)
			return pems
		}, "is for " + otherID.String() + ", want " + testID.String()},
		{"another key", func(t *testing.T, s Signer, _ []string) []string {
			_, pems := signFor(t, s, testID, time.Hour)
			return pems
		}, "public key"},
		{"leaf only", func(t *testing.T, _ Signer, pems []string) []string { return pems[:1] }, "want the leaf"},
		{"garbage root", func(t *testing.T, _ Signer, pems []string) []string { return []string{pems[0], "garbage"} }, "root"},
		{"garbage leaf", func(t *testing.T, _ Signer, pems []string) []string { return []string{"garbage", pems[1]} }, "certificate 0"},
		{"no SAN", func(t *testing.T, _ Signer, pems []string) []string {
			return []string{string(certtest.CertPEM(other.Roots()[0])), pems[1]}
		}, "no spiffe"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newTestSigner(t)
			s.mangle = func(pems []string) []string { return tt.mangle(t, s.inner, pems) }
			m := NewManager(s, ManagerOptions{})
			defer m.Close()
			c, err := m.Get(context.Background(), testID)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Get = %v, %v; want error containing %q", c, err, tt.wantErr)
			}
		})
	}
}

func TestExpiredAnswerRejected(t *testing.T) {
	// A clock two days ahead of the CA sees its 24h certificates as expired.
	future := func() time.Time { return time.Now().Add(48 * time.Hour) }
	m := NewManager(newTestSigner(t), ManagerOptions{Now: future})
	defer m.Close()
	if c, err := m.Get(context.Background(), testID); err == nil || !strings.Contains(err.Error(), "expired") {
		t.Fatalf("Get = %v, %v; want an expired-certificate error", c, err)
	}
}

func TestInjectedClock(t *testing.T) {
	var now atomic.Pointer[time.Time]
	start := time.Now()
	now.Store(&start)
	m := NewManager(newTestSigner(t), ManagerOptions{TTL: time.Hour, Now: func() time.Time { return *now.Load() }})
	defer m.Close()
	c, err := m.Get(context.Background(), testID)
	if err != nil {
		t.Fatal(err)
	}
	later := c.NotAfter.Add(-time.Second)
	now.Store(&later)
	if got, err := m.Get(context.Background(), testID); err != nil || got != c {
		t.Fatalf("Get one second before expiry = %v, %v", got, err)
	}
	expired := c.NotAfter
	now.Store(&expired)
	if got, err := m.Get(context.Background(), testID); err == nil || !strings.Contains(err.Error(), "expired") {
		t.Fatalf("Get at expiry = %v, %v; want an expiry error", got, err)
	}
	if _, err := m.current(testID); err == nil {
		t.Error("current() returned an expired certificate")
	}
}

func TestForgetAndClose(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newTestSigner(t)
		s.gate = make(chan struct{})
		m := NewManager(s, ManagerOptions{})
		errc := make(chan error, 1)
		go func() {
			_, err := m.Get(context.Background(), testID)
			errc <- err
		}()
		synctest.Wait()
		if d := m.Dump(); len(d) != 1 || d[0].State != "Initializing" {
			t.Fatalf("Dump while fetching = %+v, want one Initializing entry", d)
		}
		m.Forget(testID)
		if err := <-errc; !errors.Is(err, ErrForgotten) {
			t.Fatalf("Get interrupted by Forget = %v, want ErrForgotten", err)
		}
		if d := m.Dump(); len(d) != 0 {
			t.Fatalf("Dump after Forget = %+v, want nothing", d)
		}
		close(s.gate)
		if _, err := m.Get(context.Background(), testID); err != nil {
			t.Fatalf("Get after Forget: %v", err)
		}
		if err := m.Close(); err != nil {
			t.Fatal(err)
		}
		if _, err := m.Get(context.Background(), testID); !errors.Is(err, ErrClosed) {
			t.Fatalf("Get after Close = %v, want ErrClosed", err)
		}
		if err := m.Close(); err != nil {
			t.Fatalf("second Close: %v", err)
		}
		// synctest.Test fails if a refresh goroutine outlives Close.
	})
}

func TestDump(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		root := certtest.NewCA(t, "root")
		dir := t.TempDir()
		root.NewIntermediate(t, "intermediate").WriteCACerts(t, dir, true)
		ca, err := LoadLocalCA(dir)
		if err != nil {
			t.Fatal(err)
		}
		failing := identity.ID{TrustDomain: "td", Namespace: "ns", ServiceAccount: "failing"}
		pending := identity.ID{TrustDomain: "td", Namespace: "ns", ServiceAccount: "pending"}
		gate := make(chan struct{})
		s := SignerFunc(func(ctx context.Context, id identity.ID, csr []byte, ttl time.Duration) ([]string, error) {
			switch id {
			case failing:
				return nil, errors.New("denied")
			case pending:
				<-gate
			}
			return ca.Sign(ctx, id, csr, ttl)
		})
		m := NewManager(s, ManagerOptions{TTL: 7 * time.Hour})
		defer m.Close()
		defer close(gate)
		c, err := m.Get(context.Background(), testID)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := m.Get(context.Background(), failing); err == nil {
			t.Fatal("Get for the failing identity succeeded")
		}
		go m.Get(context.Background(), pending)
		synctest.Wait()

		b, err := json.Marshal(m.Dump())
		if err != nil {
			t.Fatal(err)
		}
		var got []map[string]any
		if err := json.Unmarshal(b, &got); err != nil {
			t.Fatal(err)
		}
		if len(got) != 3 {
			t.Fatalf("Dump has %d entries, want 3: %s", len(got), b)
		}
		// Sorted by identity string.
		wantIDs := []string{testID.String(), failing.String(), pending.String()}
		wantStates := []string{"Available", "Unavailable: ", "Initializing"}
		for i := range got {
			if got[i]["identity"] != wantIDs[i] {
				t.Errorf("entry %d identity = %v, want %s", i, got[i]["identity"], wantIDs[i])
			}
			if st, _ := got[i]["state"].(string); !strings.HasPrefix(st, wantStates[i]) {
				t.Errorf("entry %d state = %q, want %q", i, st, wantStates[i])
			}
			for _, k := range []string{"certChain", "rootCerts"} {
				if _, ok := got[i][k].([]any); !ok {
					t.Errorf("entry %d %s = %v, want a JSON array", i, k, got[i][k])
				}
			}
		}
		if st := got[1]["state"].(string); !strings.Contains(st, "denied") {
			t.Errorf("failing state %q does not carry the signer's error", st)
		}

		chain := got[0]["certChain"].([]any)
		roots := got[0]["rootCerts"].([]any)
		if len(chain) != 2 || len(roots) != 1 {
			t.Fatalf("available entry has %d chain and %d root certificates, want 2 and 1", len(chain), len(roots))
		}
		leaf := chain[0].(map[string]any)
		wantLeaf := map[string]any{
			"pem":            base64.StdEncoding.EncodeToString(certtest.CertPEM(c.Leaf)),
			"serialNumber":   c.Leaf.SerialNumber.String(),
			"validFrom":      "1999-12-31T23:59:00Z", // synctest's epoch minus Backdate
			"expirationTime": "2000-01-01T07:00:00Z",
		}
		for k, want := range wantLeaf {
			if leaf[k] != want {
				t.Errorf("leaf %s = %v, want %v", k, leaf[k], want)
			}
		}
		if len(leaf) != len(wantLeaf) {
			t.Errorf("leaf entry has keys %v, want exactly %v", leaf, wantLeaf)
		}
		rootPEM, _ := base64.StdEncoding.DecodeString(roots[0].(map[string]any)["pem"].(string))
		if string(rootPEM) != string(certtest.CertPEM(root.Cert)) {
			t.Error("rootCerts[0] is not the root")
		}
	})
}

func TestGetCachedAllocs(t *testing.T) {
	m := NewManager(newTestSigner(t), ManagerOptions{})
	defer m.Close()
	ctx := context.Background()
	if _, err := m.Get(ctx, testID); err != nil {
		t.Fatal(err)
	}
	if n := testing.AllocsPerRun(100, func() { _, _ = m.Get(ctx, testID) }); n != 0 {
		t.Errorf("cached Get allocates %v times, want 0", n)
	}
}

func BenchmarkGetCached(b *testing.B) {
	ca, err := NewFakeCA("cluster.local")
	if err != nil {
		b.Fatal(err)
	}
	m := NewManager(ca, ManagerOptions{})
	defer m.Close()
	ctx := context.Background()
	if _, err := m.Get(ctx, testID); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := m.Get(ctx, testID); err != nil {
				panic(fmt.Sprint(err))
			}
		}
	})
}
