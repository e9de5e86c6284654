package hbone

import (
	"math/rand/v2"
	"slices"
	"testing"
)

// TestStreamSetAgainstMap runs random adds (ascending ids, as a connection makes them, with
// an occasional id out of order), removes and lookups against a map, and checks after each
// step that the set holds the same streams, in order of id.
func TestStreamSetAgainstMap(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var set streamSet
	model := map[uint32]*Stream{}
	next := uint32(1)
	for step := range 20000 {
		switch op := rng.IntN(10); {
		case op < 5 && len(model) < 300:
			id := next
			if rng.IntN(20) == 0 && next > 40 {
				id = next - 2*uint32(1+rng.IntN(20)) // below the last: must sort in
				if model[id] != nil {
					continue
				}
			} else {
				next += 2
			}
			s := &Stream{id: id}
			set.add(s)
			model[id] = s
		case op < 9 && len(model) > 0:
			keys := make([]uint32, 0, len(model))
			for id := range model {
				keys = append(keys, id)
			}
			slices.Sort(keys)
			id := keys[rng.IntN(len(keys))]
			if other := (&Stream{id: id}); set.remove(other) {
				t.Fatalf("step %d: remove of another stream with id %d succeeded", step, id)
			}
			if !set.remove(model[id]) {
				t.Fatalf("step %d: remove of stream %d failed", step, id)
			}
			if set.remove(model[id]) {
				t.Fatalf("step %d: second remove of stream %d succeeded", step, id)
			}
			delete(model, id)
		default:
			id := uint32(rng.IntN(int(next) + 2))
			if got, want := set.get(id), model[id]; got != want {
				t.Fatalf("step %d: get(%d) = %p, want %p", step, id, got, want)
			}
		}
		if set.len() != len(model) {
			t.Fatalf("step %d: len %d, want %d", step, set.len(), len(model))
		}
		all := set.all()
		if !slices.IsSortedFunc(all, func(a, b *Stream) int { return int(a.id) - int(b.id) }) {
			t.Fatalf("step %d: streams out of order", step)
		}
		for _, s := range all {
			if model[s.id] != s {
				t.Fatalf("step %d: set holds stream %d that the model does not", step, s.id)
			}
		}
	}
}

// TestStreamSetGivesMemoryBack checks that a set that once held many streams does not keep
// their room when they go, and that takeAll leaves it empty and hands over every stream.
func TestStreamSetGivesMemoryBack(t *testing.T) {
	var set streamSet
	streams := make([]*Stream, 200)
	for i := range streams {
		streams[i] = &Stream{id: uint32(2*i + 1)}
		set.add(streams[i])
	}
	if c := cap(set.s); c < 200 {
		t.Fatalf("capacity %d after 200 adds", c)
	}
	for _, s := range streams[:198] {
		set.remove(s)
	}
	if c := cap(set.s); c > minStreamSetShrink {
		t.Errorf("capacity %d with 2 streams left, want at most %d", c, minStreamSetShrink)
	}
	if got := set.all(); len(got) != 2 || got[0] != streams[198] || got[1] != streams[199] {
		t.Errorf("left %v, want the last two streams", got)
	}
	taken := set.takeAll()
	if len(taken) != 2 || set.len() != 0 || set.get(streams[199].id) != nil {
		t.Errorf("takeAll: got %d streams, %d left in the set", len(taken), set.len())
	}
}

// BenchmarkStreamSetGet is the lookup every frame makes, on a connection with 100 streams:
// of the newest stream (its first frames) and of one in the middle (a bulk transfer's).
func BenchmarkStreamSetGet(b *testing.B) {
	var set streamSet
	for i := range 100 {
		set.add(&Stream{id: uint32(2*i + 1)})
	}
	for _, bc := range []struct {
		name string
		id   uint32
	}{{"newest", 199}, {"middle", 101}} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if set.get(bc.id) == nil {
					b.Fatal("not found")
				}
			}
		})
	}
}
