package hbone

// streamSet is a connection's open streams, sorted by stream id. Its owner is the conn,
// and it is guarded by conn.mu.
//
// A pooled connection carries up to 100 streams (a server accepts up to 200), and each one
// is looked up on every frame of its own. A Go map of 100 entries holds about 2.2 KB (tables
// of 8-slot groups, kept below seven eighths full, never shrunk); a slice of pointers holds
// 1 KB and gives its memory back when the streams go. Stream ids only grow on a connection
// (RFC 9113 5.1.1: the client allocates them in order, and a server accepts only ids above the
// last it saw), so add appends, and a lookup is a binary search over at most 200 entries.
type streamSet struct {
	s []*Stream // ascending by id; no nil entries
}

// minStreamSetShrink is the capacity below which remove never reallocates the slice: a
// handful of pointers is not worth the copy.
const minStreamSetShrink = 16

// len returns the number of open streams.
func (m *streamSet) len() int { return len(m.s) }

// search returns the index of the first stream whose id is not below id.
func (m *streamSet) search(id uint32) int {
	lo, hi := 0, len(m.s)
	for lo < hi {
		mid := int(uint(lo+hi) >> 1)
		if m.s[mid].id < id {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	return lo
}

// get returns the open stream with this id, or nil.
func (m *streamSet) get(id uint32) *Stream {
	if n := len(m.s); n > 0 && m.s[n-1].id == id { // the newest: a stream's first frames
		return m.s[n-1]
	}
	if i := m.search(id); i < len(m.s) && m.s[i].id == id {
		return m.s[i]
	}
	return nil
}

// add inserts s, whose id no open stream has. Ids arrive in ascending order, so this is an
// append; an id below the last one is placed where it sorts all the same.
func (m *streamSet) add(s *Stream) {
	if n := len(m.s); n == 0 || m.s[n-1].id < s.id {
		m.s = append(m.s, s)
		return
	}
	i := m.search(s.id)
	m.s = append(m.s, nil)
	copy(m.s[i+1:], m.s[i:])
	m.s[i] = s
}

// remove deletes s if it is the set's stream with its id, and reports whether it was. When
// the set has fallen to a quarter of its capacity, the slice is reallocated at half, so a
// connection that once carried many streams does not keep their room.
func (m *streamSet) remove(s *Stream) bool {
	i := m.search(s.id)
	if i == len(m.s) || m.s[i] != s {
		return false
	}
	n := len(m.s)
	copy(m.s[i:], m.s[i+1:])
	m.s[n-1] = nil
	m.s = m.s[:n-1]
	if c := cap(m.s); c > minStreamSetShrink && len(m.s) <= c/4 {
		m.s = append(make([]*Stream, 0, c/2), m.s...)
	}
	return true
}

// all returns the open streams in ascending order of id. The slice is the set's own: the
// caller reads it under conn.mu and must not keep it.
func (m *streamSet) all() []*Stream { return m.s }

// takeAll empties the set and returns what it held; the caller owns the slice.
func (m *streamSet) takeAll() []*Stream {
	s := m.s
	m.s = nil
	return s
}
