package boundedmap

import (
	"strconv"
	"sync"
	"testing"
)

// TestGet: a value is made once per key and shared; the map never holds more than its limit,
// and an evicted key is made again when asked for.
func TestGet(t *testing.T) {
	m := New[int, *string](4)
	made := 0
	mk := func(k int) *string { made++; s := strconv.Itoa(k); return &s }
	a := m.Get(1, mk)
	if b := m.Get(1, mk); b != a || *a != "1" || made != 1 {
		t.Fatalf("second Get(1) = %p (%q), made %d; want the first value %p, made once", b, *b, made, a)
	}
	for k := range 10 {
		m.Get(k, mk)
		if n := m.Len(); n > 4 {
			t.Fatalf("after Get(%d) the map holds %d entries, more than 4", k, n)
		}
	}
	if m.Len() != 4 {
		t.Errorf("Len = %d, want 4", m.Len())
	}
	before := made
	for k := range 10 { // at most 4 are still there
		m.Get(k, mk)
	}
	if made-before < 6 {
		t.Errorf("10 Gets after evictions made %d values, want at least 6", made-before)
	}
}

// TestConcurrentGet: concurrent Gets of one key share one value.
func TestConcurrentGet(t *testing.T) {
	m := New[string, *int](8)
	var wg sync.WaitGroup
	got := make([]*int, 16)
	for i := range got {
		wg.Go(func() { got[i] = m.Get("k", func(string) *int { return new(int) }) })
	}
	wg.Wait()
	for i, p := range got {
		if p != got[0] {
			t.Fatalf("Get %d returned %p, Get 0 %p: want one shared value", i, p, got[0])
		}
	}
}
