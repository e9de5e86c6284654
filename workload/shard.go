package workload

import (
	"encoding/binary"
	"hash/maphash"
	"net/netip"
)

// shardBits sets the number of shards of every index (2^shardBits). With
// 256 shards an index of 10,000 entries has ~40 per shard, so cloning the
// shards an incremental update touches costs a few microseconds, while the
// 2 KiB shard table an update copies per index stays negligible.
const (
	shardBits = 8
	numShards = 1 << shardBits
)

var hashSeed = maphash.MakeSeed()

// shards is a persistent hash map split into numShards Go maps. A published
// shards value is immutable; a shardWriter produces the next version by
// copying only the shards it writes to. Reads are one hash and one map
// lookup, with no allocation and no locks.
type shards[K comparable, V any] struct {
	m *[numShards]map[K]V // nil means empty
}

func (s shards[K, V]) get(k K, h uint64) (V, bool) {
	var zero V
	if s.m == nil {
		return zero, false
	}
	v, ok := s.m[h&(numShards-1)][k]
	return v, ok
}

// each calls f for every entry, in no particular order.
func (s shards[K, V]) each(f func(K, V)) {
	if s.m == nil {
		return
	}
	for _, m := range s.m {
		for k, v := range m {
			f(k, v)
		}
	}
}

func (s shards[K, V]) len() int {
	n := 0
	if s.m != nil {
		for _, m := range s.m {
			n += len(m)
		}
	}
	return n
}

// shardWriter builds the next version of a shards map. It is owned by the
// single writer of an Apply and discarded after finish.
type shardWriter[K comparable, V any] struct {
	next  *[numShards]map[K]V
	owned [numShards / 64]uint64 // bit i: next[i] is a private copy we may mutate
}

func newShardWriter[K comparable, V any](prev shards[K, V]) *shardWriter[K, V] {
	w := &shardWriter[K, V]{next: new([numShards]map[K]V)}
	if prev.m != nil {
		*w.next = *prev.m
	}
	return w
}

func (w *shardWriter[K, V]) get(k K, h uint64) (V, bool) {
	v, ok := w.next[h&(numShards-1)][k]
	return v, ok
}

// shard returns shard i ready for mutation, cloning it on first write.
func (w *shardWriter[K, V]) shard(i uint64) map[K]V {
	word, bit := i/64, uint64(1)<<(i%64)
	if w.owned[word]&bit == 0 {
		old := w.next[i]
		m := make(map[K]V, len(old)+1)
		for k, v := range old {
			m[k] = v
		}
		w.next[i] = m
		w.owned[word] |= bit
	}
	return w.next[i]
}

func (w *shardWriter[K, V]) set(k K, h uint64, v V) {
	w.shard(h & (numShards - 1))[k] = v
}

func (w *shardWriter[K, V]) del(k K, h uint64) {
	i := h & (numShards - 1)
	if _, ok := w.next[i][k]; !ok {
		return
	}
	delete(w.shard(i), k)
}

func (w *shardWriter[K, V]) finish() shards[K, V] {
	return shards[K, V]{m: w.next}
}

// Keys and their hashes.

func hashString(s string) uint64 { return maphash.String(hashSeed, s) }

// addrKey is an IP within a network, the key of the address indexes.
type addrKey struct {
	network string
	ip      netip.Addr
}

func hashAddr(network string, ip netip.Addr) uint64 {
	a := ip.As16()
	h := binary.LittleEndian.Uint64(a[:8])*0x9e3779b97f4a7c15 ^ binary.LittleEndian.Uint64(a[8:])
	h ^= h >> 29
	h *= 0xbf58476d1ce4e5b9
	h ^= h >> 32
	if network != "" {
		h ^= hashString(network)
	}
	return h
}

// nameKey is a namespace and a name.
type nameKey struct {
	namespace, name string
}

func hashName(namespace, name string) uint64 {
	return hashString(namespace)*31 ^ hashString(name)
}
