package policy

import (
	"cmp"
	"hash/maphash"
	"log/slog"
	"slices"
	"strings"
)

// Target is the destination workload of an inbound connection.
type Target struct {
	// Namespace is the workload's namespace; the Namespace-scoped policies of that namespace
	// apply.
	Namespace string
	// Policies are the keys ("ns/name") of the policies selecting the workload, from its
	// authorizationPolicies. WorkloadSelector-scoped policies apply only through this list;
	// keys the Set does not hold are skipped.
	Policies []string
}

// Decision is the outcome of Set.Evaluate.
type Decision struct {
	// Allow is the verdict.
	Allow bool
	// Policy is the key of the policy that decided: the first matching DENY policy, or the
	// first matching ALLOW policy. It is empty when the default decided.
	Policy string
	// Reason is a short text for logs, in ztunnel's words.
	Reason string
	// DryRun reports what dry-run policies would have done; it never affects Allow.
	DryRun DryRun
}

// DryRun reports dry-run policy matches, which are only logged.
type DryRun struct {
	// Deny is the key of the first dry-run DENY policy that matched, or "".
	Deny string
	// Allow is the key of the first dry-run ALLOW policy that matched, or "". Dry-run ALLOW
	// policies are only looked at when no enforced DENY policy matched.
	Allow string
	// NoAllowMatched is set when no enforced ALLOW policy applies, dry-run ALLOW policies do,
	// and none of them matched: enforcing them would reject the connection.
	NoAllowMatched bool
}

// Reasons given by Evaluate when no single policy decided.
const (
	ReasonNoAllowPolicies = "no allow policies, allow"
	ReasonNotAllowed      = "allow policies exist, but none allowed"
)

// LogValue renders the decision as log attributes. It allocates only when a log line is
// written.
func (d Decision) LogValue() slog.Value {
	attrs := make([]slog.Attr, 0, 5)
	attrs = append(attrs, slog.Bool("allow", d.Allow), slog.String("reason", d.Reason))
	if d.Policy != "" {
		attrs = append(attrs, slog.String("policy", d.Policy))
	}
	if d.DryRun.Deny != "" {
		attrs = append(attrs, slog.String("dry_run_deny", d.DryRun.Deny))
	}
	if d.DryRun.Allow != "" {
		attrs = append(attrs, slog.String("dry_run_allow", d.DryRun.Allow))
	}
	if d.DryRun.NoAllowMatched {
		attrs = append(attrs, slog.Bool("dry_run_no_allow_matched", true))
	}
	return slog.GroupValue(attrs...)
}

// entry is a stored policy with the strings Evaluate returns, computed once so that Evaluate
// does not allocate. Immutable.
type entry struct {
	a           *Authorization
	key         string
	denyReason  string // "explicitly denied by: <key>"
	allowReason string // "allowed by: <key>"
}

func newEntry(a *Authorization) *entry {
	k := a.Key()
	return &entry{a: a, key: k, denyReason: "explicitly denied by: " + k, allowReason: "allowed by: " + k}
}

func compareEntries(x, y *entry) int { return cmp.Compare(x.key, y.key) }

// bucket holds what the Set knows about one namespace. Immutable once its Set is published.
type bucket struct {
	// byName holds the policies whose key is "<namespace>/<name>", by name, any scope.
	byName map[string]*entry
	// scoped is the Namespace-scoped policies of this namespace, sorted by key.
	scoped []*entry
}

// shards spreads namespaces over independent maps, so that an update copies only the maps of
// the shards it touches.
const shards = 64

var shardSeed = maphash.MakeSeed()

func shardOf(ns string) int { return int(maphash.String(shardSeed, ns) % shards) }

// Set is an immutable, indexed collection of policies keyed by "namespace/name". Any number of
// goroutines may use a Set at once; With returns a new Set sharing every part the update did
// not touch. The zero Set and a nil *Set are empty.
type Set struct {
	shards [shards]map[string]*bucket // namespace -> bucket; never written once published
	global []*entry                   // Global-scoped policies, sorted by key
	n      int
}

// NewSet returns a Set holding the given policies. When two have the same key the later one
// wins.
func NewSet(p ...*Authorization) *Set { return (*Set)(nil).With(p, nil) }

// splitKey splits "ns/name" at the first '/'.
func splitKey(key string) (ns, name string, ok bool) {
	return strings.Cut(key, "/")
}

func (s *Set) lookup(key string) *entry {
	ns, name, ok := splitKey(key)
	if !ok {
		return nil
	}
	b := s.shards[shardOf(ns)][ns]
	if b == nil {
		return nil
	}
	return b.byName[name]
}

// Get returns the policy stored under key, or nil.
func (s *Set) Get(key string) *Authorization {
	if s == nil {
		return nil
	}
	if e := s.lookup(key); e != nil {
		return e.a
	}
	return nil
}

// Len returns the number of policies in the set.
func (s *Set) Len() int {
	if s == nil {
		return 0
	}
	return s.n
}

// All returns every policy, sorted by key. The slice is the caller's; the policies are shared.
func (s *Set) All() []*Authorization {
	if s == nil {
		return nil
	}
	es := make([]*entry, 0, s.n)
	for _, sh := range s.shards {
		for _, b := range sh {
			for _, e := range b.byName {
				es = append(es, e)
			}
		}
	}
	slices.SortFunc(es, compareEntries)
	out := make([]*Authorization, len(es))
	for i, e := range es {
		out[i] = e.a
	}
	return out
}

// With returns a Set with the policies under the keys in remove deleted and then the policies
// in upsert added or replaced (so a key in both ends up present). s is not modified; the new
// Set copies only the namespaces, shards and scope indexes the update touches.
func (s *Set) With(upsert []*Authorization, remove []string) *Set {
	w := writer{next: &Set{}, copied: map[*bucket]bool{}}
	if s != nil {
		*w.next = *s
	}
	for _, key := range remove {
		w.remove(key)
	}
	for _, a := range upsert {
		if a == nil {
			continue
		}
		w.remove(a.Key())
		w.insert(newEntry(a))
	}
	w.prune()
	return w.next
}

// writer builds one new Set. It owns every map, bucket and slice it has copied (recorded in
// the fields below) and may modify those in place; everything else is shared with the old Set.
type writer struct {
	next         *Set
	shardCopied  [shards]bool
	copied       map[*bucket]bool // buckets created or copied by this writer
	touched      []string         // namespaces whose buckets may have become empty
	globalCopied bool
}

// bucket returns a writable bucket for ns, creating it when create is set; nil otherwise.
func (w *writer) bucket(ns string, create bool) *bucket {
	i := shardOf(ns)
	sh := w.next.shards[i]
	b := sh[ns]
	if b == nil && !create {
		return nil
	}
	if !w.shardCopied[i] {
		nsh := make(map[string]*bucket, len(sh)+1)
		for k, v := range sh {
			nsh[k] = v
		}
		w.next.shards[i] = nsh
		w.shardCopied[i] = true
		sh = nsh
	}
	if b != nil && w.copied[b] {
		return b
	}
	nb := &bucket{byName: make(map[string]*entry, 1)}
	if b != nil {
		nb.byName = make(map[string]*entry, len(b.byName)+1)
		for k, v := range b.byName {
			nb.byName[k] = v
		}
		nb.scoped = slices.Clone(b.scoped)
	}
	sh[ns] = nb
	w.copied[nb] = true
	w.touched = append(w.touched, ns)
	return nb
}

func (w *writer) writableGlobal() {
	if !w.globalCopied {
		w.next.global = slices.Clone(w.next.global)
		w.globalCopied = true
	}
}

func (w *writer) remove(key string) {
	ns, name, ok := splitKey(key)
	if !ok || w.next.lookup(key) == nil {
		return
	}
	b := w.bucket(ns, false)
	old := b.byName[name]
	delete(b.byName, name)
	w.next.n--
	switch old.a.Scope {
	case ScopeGlobal:
		w.writableGlobal()
		w.next.global = deleteSorted(w.next.global, old)
	case ScopeNamespace:
		sb := w.bucket(old.a.Namespace, false)
		sb.scoped = deleteSorted(sb.scoped, old)
	}
}

func (w *writer) insert(e *entry) {
	ns, name, ok := splitKey(e.key)
	if !ok {
		return // unreachable: a key always holds '/'
	}
	b := w.bucket(ns, true)
	b.byName[name] = e
	w.next.n++
	switch e.a.Scope {
	case ScopeGlobal:
		w.writableGlobal()
		w.next.global = insertSorted(w.next.global, e)
	case ScopeNamespace:
		sb := w.bucket(e.a.Namespace, true)
		sb.scoped = insertSorted(sb.scoped, e)
	}
}

// prune drops the buckets this writer left empty.
func (w *writer) prune() {
	for _, ns := range w.touched {
		i := shardOf(ns)
		if b := w.next.shards[i][ns]; b != nil && len(b.byName) == 0 && len(b.scoped) == 0 {
			delete(w.next.shards[i], ns)
		}
	}
}

func insertSorted(l []*entry, e *entry) []*entry {
	i, _ := slices.BinarySearchFunc(l, e, compareEntries)
	return slices.Insert(l, i, e)
}

func deleteSorted(l []*entry, e *entry) []*entry {
	i, found := slices.BinarySearchFunc(l, e, compareEntries)
	if found && l[i] == e {
		return slices.Delete(l, i, i+1)
	}
	return l
}

// Evaluate decides whether the connection c to the workload t is allowed, following Istio's
// order: a matching (enforced) DENY policy rejects; if no enforced ALLOW policy applies the
// connection is allowed; if one matches it is allowed; otherwise it is rejected. Dry-run
// policies only fill Decision.DryRun.
//
// The policies that apply are, in this order: the Namespace-scoped policies of t.Namespace,
// the Global-scoped policies, and the policies t.Policies lists (keys the Set lacks are
// skipped). When several policies of the same kind match, the first in that order is reported.
//
// Evaluate does not allocate, and its cost depends only on the policies that apply to t.
func (s *Set) Evaluate(t Target, c *Conn) Decision {
	var sub subject
	sub.init(c)

	var (
		nsBucket *bucket // the bucket of t.Namespace, reused for the keys t.Policies lists in it
		global   []*entry
	)
	if s != nil {
		nsBucket = s.shards[shardOf(t.Namespace)][t.Namespace]
		global = s.global
	}

	var (
		deny       *entry // first matching enforced DENY
		allow      *entry // first matching enforced ALLOW
		haveAllow  bool   // an enforced ALLOW applies
		dryDeny    *entry // first matching dry-run DENY
		dryAllow   *entry // first matching dry-run ALLOW
		haveDryAll bool   // a dry-run ALLOW applies
	)
	visit := func(e *entry) {
		a := e.a
		switch {
		case a.Action == ActionDeny && a.DryRun:
			if dryDeny == nil && a.matches(&sub) {
				dryDeny = e
			}
		case a.Action == ActionDeny:
			if deny == nil && a.matches(&sub) {
				deny = e
			}
		case a.Action == ActionAllow && a.DryRun:
			haveDryAll = true
			if deny == nil && dryAllow == nil && a.matches(&sub) {
				dryAllow = e
			}
		case a.Action == ActionAllow:
			haveAllow = true
			if deny == nil && allow == nil && a.matches(&sub) {
				allow = e
			}
		}
	}
	if nsBucket != nil {
		for _, e := range nsBucket.scoped {
			visit(e)
		}
	}
	for _, e := range global {
		visit(e)
	}
	if s != nil {
		for _, k := range t.Policies {
			ns, name, ok := splitKey(k)
			if !ok {
				continue
			}
			var e *entry
			if ns == t.Namespace {
				if nsBucket != nil {
					e = nsBucket.byName[name]
				}
			} else if b := s.shards[shardOf(ns)][ns]; b != nil {
				e = b.byName[name]
			}
			if e != nil {
				visit(e)
			}
		}
	}

	var d Decision
	if dryDeny != nil {
		d.DryRun.Deny = dryDeny.key
	}
	if deny != nil {
		d.Policy, d.Reason = deny.key, deny.denyReason
		return d
	}
	// No enforced DENY matched, so every dry-run ALLOW was looked at (as ztunnel does, only
	// in this case).
	if dryAllow != nil {
		d.DryRun.Allow = dryAllow.key
	}
	d.DryRun.NoAllowMatched = !haveAllow && haveDryAll && dryAllow == nil
	switch {
	case !haveAllow:
		d.Allow, d.Reason = true, ReasonNoAllowPolicies
	case allow != nil:
		d.Allow, d.Policy, d.Reason = true, allow.key, allow.allowReason
	default:
		d.Reason = ReasonNotAllowed
	}
	return d
}
