package workload

import (
	"errors"
	"sync"
	"sync/atomic"

	"github.com/ztunnel-go/ztunnel/internal/notify"
	"github.com/ztunnel-go/ztunnel/policy"
)

// Update is one batch of changes for Store.Apply or Store.Replace. The
// store takes ownership of every resource in it: callers must not modify a
// Workload, Service or Authorization after passing it.
type Update struct {
	Workloads       []*Workload
	RemoveWorkloads []string // by UID
	Services        []*Service
	RemoveServices  []string // by "namespace/hostname"
	Policies        []*policy.Authorization
	RemovePolicies  []string // by "namespace/name"
}

// Validate checks every resource of u without changing anything and
// returns one *ResourceError per rejected resource, joined, or nil.
func (u *Update) Validate() error {
	var errs []error
	for _, w := range u.Workloads {
		if err := validateWorkload(w); err != nil {
			errs = append(errs, err)
		}
	}
	for _, s := range u.Services {
		if err := validateService(s); err != nil {
			errs = append(errs, err)
		}
	}
	for _, p := range u.Policies {
		if err := validatePolicy(p); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func validateWorkload(w *Workload) error {
	if w == nil {
		return &ResourceError{Kind: KindWorkload, Err: errors.New("nil workload")}
	}
	if err := w.Validate(); err != nil {
		return &ResourceError{Kind: KindWorkload, Key: w.UID, Err: err}
	}
	return nil
}

func validateService(s *Service) error {
	if s == nil {
		return &ResourceError{Kind: KindService, Err: errors.New("nil service")}
	}
	if err := s.Validate(); err != nil {
		return &ResourceError{Kind: KindService, Key: s.Key(), Err: err}
	}
	return nil
}

func validatePolicy(p *policy.Authorization) error {
	if p == nil {
		return &ResourceError{Kind: KindPolicy, Err: errors.New("nil policy")}
	}
	if err := p.Validate(); err != nil {
		return &ResourceError{Kind: KindPolicy, Key: p.Key(), Err: err}
	}
	return nil
}

// Store holds the current configuration as an immutable Snapshot that
// readers load without locks; writers (one at a time) build the next
// snapshot from the current one and publish it atomically.
type Store struct {
	cur atomic.Pointer[Snapshot] // never nil after NewStore

	mu      sync.Mutex       // serialises Apply/Replace
	watches notify.Callbacks // run after each publish, under mu
}

// NewStore returns a store holding an empty snapshot (version 0).
func NewStore() *Store {
	s := &Store{}
	s.cur.Store(emptySnapshot(0))
	return s
}

// Snapshot returns the current snapshot. It never changes; call Snapshot
// again to see later updates.
func (s *Store) Snapshot() *Snapshot { return s.cur.Load() }

// Apply validates each resource of u alone, applies the valid ones (and all
// removals) as one new snapshot, and notifies subscribers. Within u,
// removals are applied before upserts, and a later resource with the same
// key replaces an earlier one. The error joins one *ResourceError per
// rejected resource (see Rejected); the rest is applied regardless.
func (s *Store) Apply(u Update) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.applyLocked(s.cur.Load(), u, false)
}

// Replace is Apply on top of an empty configuration: after it, the store
// holds exactly the valid resources of u (a local config reload).
func (s *Store) Replace(u Update) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.applyLocked(emptySnapshot(s.cur.Load().version), u, true)
}

// applyLocked publishes base+u. Unless always is set, an update with
// nothing to apply publishes nothing.
func (s *Store) applyLocked(base *Snapshot, u Update, always bool) error {
	next, err := build(base, u)
	if next == nil {
		if !always {
			return err
		}
		next = base
	}
	next.version = s.cur.Load().version + 1
	s.cur.Store(next)
	s.watches.Run()
	return err
}

// Subscribe returns a channel that receives a value after each change of
// the snapshot. Notifications coalesce (the channel holds at most one), so
// a receiver should load the current Snapshot when woken. The channel is
// never closed; cancel stops notifications and must be called when done.
func (s *Store) Subscribe() (<-chan struct{}, func()) {
	ch := make(chan struct{}, 1)
	cancel := s.OnChange(func() {
		select {
		case ch <- struct{}{}:
		default: // a notification is already pending
		}
	})
	return ch, cancel
}

// OnChange makes fn run after each change of the snapshot, for an owner that
// should not hold a goroutine to wait on Subscribe's channel. fn runs on the
// goroutine that applied the change, with the store's writer lock held so
// that changes are announced in order: it must return at once and must not
// call Apply, Replace, OnChange or a cancel (it typically starts or flags work that loads the
// current Snapshot). cancel stops the calls; once it returns no call is in
// progress or to come. It may be called more than once.
func (s *Store) OnChange(fn func()) (cancel func()) { return s.watches.Add(fn) }
