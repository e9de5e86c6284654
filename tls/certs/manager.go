package certs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ztunnel-go/ztunnel/tls/identity"
)

const (
	// DefaultTTL is the certificate lifetime requested when
	// ManagerOptions.TTL is zero (ztunnel's SECRET_TTL default).
	DefaultTTL = 24 * time.Hour

	// InitialBackoff and MaxBackoff bound the delay between attempts after a
	// signer failure: it starts at InitialBackoff and doubles up to MaxBackoff.
	InitialBackoff = 500 * time.Millisecond
	MaxBackoff     = 150 * time.Second

	// signTimeout bounds one call to the Signer.
	signTimeout = time.Minute
	// DefaultMaxConcurrentFetches is how many signer calls may be in flight when
	// ManagerOptions.MaxConcurrentFetches is zero (ztunnel's value).
	DefaultMaxConcurrentFetches = 8

	// minRefresh is the shortest delay before renewing a certificate, so that
	// a signer handing out nearly expired certificates is not hammered.
	minRefresh = InitialBackoff
)

var (
	// ErrClosed is returned by Get after Close.
	ErrClosed = errors.New("certificate manager closed")
	// ErrForgotten is returned to callers waiting for an identity that Forget
	// dropped.
	ErrForgotten = errors.New("the identity is no longer needed")
)

// ManagerOptions configures a Manager. The zero value is usable.
type ManagerOptions struct {
	// TTL is the certificate lifetime requested from the signer. Zero means
	// DefaultTTL (24h).
	TTL time.Duration
	// Logger receives certificate issuance and renewal failures. Nil discards.
	Logger *slog.Logger
	// Now returns the current time, for validity checks and for scheduling
	// renewals. Nil means time.Now.
	Now func() time.Time
	// TLS12 allows TLS 1.2 in ServerConfig and ClientConfig (TLS12_ENABLED).
	// False means TLS 1.3 only.
	TLS12 bool
	// CompliancePolicy is COMPLIANCE_POLICY: "" (no restriction), "fips-140-2"
	// or "pqc"; see CheckCompliancePolicy.
	CompliancePolicy string
	// MaxConcurrentFetches bounds the signer calls in flight. Fetches that a Get
	// waits for go ahead of prefetches and renewals. Zero means
	// DefaultMaxConcurrentFetches (8).
	MaxConcurrentFetches int
	// CRL, when not nil, refuses peers whose chain it revokes, in ServerConfig
	// and ClientConfig handshakes (CRL_PATH).
	CRL *CRLSet
}

// Manager fetches, caches and renews workload certificates, one per identity.
// It is safe for concurrent use. Each identity in use has one refresh
// goroutine, owned by the Manager: Forget stops it and Close stops all of them
// and waits.
type Manager struct {
	// Immutable after NewManager.
	signer Signer
	ttl    time.Duration
	logger *slog.Logger
	now    func() time.Time
	tls12  bool
	policy compliance
	crl    *CRLSet // nil: no revocation checks
	slots  *fetchSlots

	ctx    context.Context         // parent of every refresh goroutine's context
	cancel context.CancelCauseFunc // cancels ctx with ErrClosed
	wg     sync.WaitGroup          // counts refresh goroutines

	// entries is a copy-on-write map, read without locks by Get; it is
	// replaced (never modified) with mu held.
	entries atomic.Pointer[map[identity.ID]*entry]
	mu      sync.Mutex // serialises writers of entries and closed
	closed  bool       // guarded by mu
}

// entry is the state of one identity.
type entry struct {
	id     identity.ID
	ctx    context.Context         // immutable; cancelled by Forget or Close
	cancel context.CancelCauseFunc // immutable
	// first is closed by the refresh goroutine once its first attempt has
	// finished, successfully or not, or when it exits.
	first chan struct{}
	// cert is the latest certificate obtained, possibly expired. It is
	// written only by the refresh goroutine and read without locks.
	cert atomic.Pointer[Certificate]
	// urgent is set while a Get waits for this entry, so its fetch goes
	// ahead of prefetches and renewals; cleared after a success.
	urgent atomic.Bool

	mu      sync.Mutex
	lastErr error // error of the latest attempt, nil after a success; guarded by mu
}

// NewManager returns a Manager that obtains certificates from s. Call Close to
// stop its background work.
func NewManager(s Signer, opts ManagerOptions) *Manager {
	m := &Manager{
		signer: s,
		ttl:    opts.TTL,
		logger: opts.Logger,
		now:    opts.Now,
		tls12:  opts.TLS12,
		crl:    opts.CRL,
		slots:  newFetchSlots(opts.MaxConcurrentFetches),
	}
	m.entries.Store(&map[identity.ID]*entry{})
	if m.ttl <= 0 {
		m.ttl = DefaultTTL
	}
	if m.logger == nil {
		m.logger = slog.New(slog.DiscardHandler)
	}
	if m.now == nil {
		m.now = time.Now
	}
	policy, err := parseCompliancePolicy(opts.CompliancePolicy)
	if err != nil {
		// Fail closed: an unknown policy gets the strictest settings.
		m.logger.Error("unknown compliance policy, applying fips-140-2", "policy", opts.CompliancePolicy, "error", err)
		policy = complianceFIPS
	}
	m.policy = policy
	m.ctx, m.cancel = context.WithCancelCause(context.Background())
	return m
}

// Get returns a valid certificate for id. The first call for an id generates
// an ECDSA P-256 key and CSR and asks the signer; concurrent callers share
// that request and later ones are served from the cache, which a background
// goroutine renews at half lifetime. If the signer fails, Get returns its
// error until a retry succeeds, except that a previously issued certificate
// keeps being served until it expires. Get never returns an expired
// certificate. ctx bounds only the wait of this caller.
func (m *Manager) Get(ctx context.Context, id identity.ID) (*Certificate, error) {
	e := (*m.entries.Load())[id]
	if e != nil {
		if c := e.cert.Load(); c != nil && c.ValidAt(m.now()) {
			return c, nil
		}
	} else {
		if err := id.Validate(); err != nil {
			return nil, fmt.Errorf("certificate for %s: %w", id, err)
		}
		var err error
		if e, err = m.start(id, true); err != nil {
			return nil, err
		}
	}
	if !e.urgent.Load() {
		e.urgent.Store(true)
		m.slots.bump(e)
	}
	select {
	case <-e.first:
	case <-ctx.Done():
		return nil, fmt.Errorf("waiting for certificate for %s: %w", id, context.Cause(ctx))
	}
	now := m.now()
	if c := e.cert.Load(); c != nil && c.ValidAt(now) {
		return c, nil
	}
	return nil, e.unavailable()
}

// current returns the cached certificate for id if it is valid, without
// waiting or starting a fetch.
func (m *Manager) current(id identity.ID) (*Certificate, error) {
	e := (*m.entries.Load())[id]
	if e == nil {
		return nil, fmt.Errorf("no certificate for %s", id)
	}
	if c := e.cert.Load(); c != nil && c.ValidAt(m.now()) {
		return c, nil
	}
	return nil, e.unavailable()
}

// Prefetch starts fetching the certificate of id in the background, at low
// priority, unless it is already held or being fetched; later Gets find it
// ready. Forget undoes it.
func (m *Manager) Prefetch(id identity.ID) error {
	if (*m.entries.Load())[id] != nil {
		return nil
	}
	if err := id.Validate(); err != nil {
		return fmt.Errorf("certificate for %s: %w", id, err)
	}
	_, err := m.start(id, false)
	return err
}

// start returns the entry of id, creating it and its refresh goroutine if
// needed; urgent says a caller is waiting for it.
func (m *Manager) start(id identity.ID, urgent bool) (*entry, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, ErrClosed
	}
	old := *m.entries.Load()
	if e := old[id]; e != nil {
		return e, nil
	}
	e := &entry{id: id, first: make(chan struct{})}
	e.urgent.Store(urgent)
	e.ctx, e.cancel = context.WithCancelCause(m.ctx)
	next := make(map[identity.ID]*entry, len(old)+1)
	maps.Copy(next, old)
	next[id] = e
	m.entries.Store(&next)
	m.wg.Add(1)
	go m.refreshLoop(e)
	return e, nil
}

// unavailable explains why e has no valid certificate.
func (e *entry) unavailable() error {
	e.mu.Lock()
	err := e.lastErr
	e.mu.Unlock()
	if c := e.cert.Load(); c != nil {
		if err == nil {
			err = errors.New("not renewed yet")
		}
		return fmt.Errorf("certificate for %s expired at %s: %w", e.id, c.NotAfter.UTC().Format(time.RFC3339), err)
	}
	if err == nil {
		if err = context.Cause(e.ctx); err == nil {
			err = errors.New("not fetched yet")
		}
	}
	return fmt.Errorf("certificate for %s unavailable: %w", e.id, err)
}

func (e *entry) setErr(err error) {
	e.mu.Lock()
	e.lastErr = err
	e.mu.Unlock()
}

// refreshLoop obtains and renews the certificate of e until e.ctx ends. It is
// owned by the Manager (m.wg).
func (m *Manager) refreshLoop(e *entry) {
	defer m.wg.Done()
	firstDone := false
	markFirst := func() {
		if !firstDone {
			firstDone = true
			close(e.first)
		}
	}
	defer markFirst()

	var backoff time.Duration // 0 while the signer is healthy
	timer := time.NewTimer(0)
	<-timer.C
	defer timer.Stop()
	for {
		if err := m.slots.acquire(e.ctx, e); err != nil {
			return // forgotten or closed
		}
		c, err := m.fetch(e.ctx, e.id)
		m.slots.release()
		if e.ctx.Err() != nil {
			return
		}
		now := m.now()
		var wait time.Duration
		if err == nil {
			e.cert.Store(c)
			e.setErr(nil)
			e.urgent.Store(false)
			backoff = 0
			at := refreshAt(c, now)
			wait = max(at.Sub(now), minRefresh)
			m.logger.Info("certificate issued", "identity", e.id.String(),
				"expiration", c.NotAfter, "refresh_at", now.Add(wait))
		} else {
			e.setErr(err)
			if backoff == 0 {
				backoff = InitialBackoff
			} else {
				backoff = min(2*backoff, MaxBackoff)
			}
			wait = backoff
			if cur := e.cert.Load(); cur != nil && cur.ValidAt(now) {
				wait = min(wait, cur.NotAfter.Sub(now))
				m.logger.Warn("certificate renewal failed; keeping the current certificate",
					"identity", e.id.String(), "error", err, "expiration", cur.NotAfter, "retry_in", wait)
			} else {
				m.logger.Warn("certificate fetch failed", "identity", e.id.String(), "error", err, "retry_in", wait)
			}
		}
		markFirst()
		timer.Reset(wait)
		select {
		case <-e.ctx.Done():
			return
		case <-timer.C:
		}
	}
}

// fetch generates a key and CSR for id and has them signed.
func (m *Manager) fetch(ctx context.Context, id identity.ID) (*Certificate, error) {
	key, err := newKey()
	if err != nil {
		return nil, fmt.Errorf("generating key for %s: %w", id, err)
	}
	csr, err := newCSR(key, id)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", id, err)
	}
	ctx, cancel := context.WithTimeout(ctx, signTimeout)
	defer cancel()
	pems, err := m.signer.Sign(ctx, id, csr, m.ttl)
	if err != nil {
		return nil, fmt.Errorf("signing certificate for %s: %w", id, err)
	}
	return newCertificate(id, key, pems, m.now())
}

// Forget stops refreshing the certificate of id and drops it. Callers
// waiting for its first certificate get ErrForgotten. The refresh goroutine
// exits on its own; Close waits for it.
func (m *Manager) Forget(id identity.ID) {
	m.mu.Lock()
	old := *m.entries.Load()
	e := old[id]
	if e != nil {
		next := maps.Clone(old)
		delete(next, id)
		m.entries.Store(&next)
	}
	m.mu.Unlock()
	if e != nil {
		e.cancel(ErrForgotten)
	}
}

// Close stops all background work and waits for it. Get fails with ErrClosed
// afterwards. Close is idempotent.
func (m *Manager) Close() error {
	m.mu.Lock()
	m.closed = true
	m.entries.Store(&map[identity.ID]*entry{})
	m.mu.Unlock()
	m.cancel(ErrClosed)
	m.wg.Wait()
	return nil
}
