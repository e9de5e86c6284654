package fdtable

import (
	"os"
	"testing"

	"golang.org/x/sys/unix"
)

func tableSize(t *testing.T) int {
	t.Helper()
	n, err := SizeOf(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func openFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

func softLimit(t *testing.T) uint64 {
	t.Helper()
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	return lim.Cur
}

// TestReserve: the table holds the slots asked for, and no descriptor is left open.
func TestReserve(t *testing.T) {
	before := tableSize(t)
	want := 4 * before
	if lim := softLimit(t); uint64(want) > lim {
		t.Skipf("the soft RLIMIT_NOFILE (%d) is under %d: nothing to grow the table (%d slots) into", lim, want, before)
	}
	open := openFDs(t)
	if err := Reserve(want); err != nil {
		t.Fatal(err)
	}
	if got := tableSize(t); got < want {
		t.Errorf("table after Reserve(%d): %d slots (%d before)", want, got, before)
	}
	if got := openFDs(t); got != open {
		t.Errorf("%d descriptors open after Reserve, %d before", got, open)
	}
	// A table already large enough stays as it is.
	size := tableSize(t)
	if err := Reserve(want / 2); err != nil {
		t.Fatal(err)
	}
	if got := tableSize(t); got != size {
		t.Errorf("Reserve(%d) of a table of %d slots: %d slots", want/2, size, got)
	}
}

// TestReserveWithinLimit: a reservation above the soft RLIMIT_NOFILE stops at it instead of
// failing (F_DUPFD refuses a descriptor at or above the limit).
func TestReserveWithinLimit(t *testing.T) {
	var old unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &old); err != nil {
		t.Fatal(err)
	}
	limit := uint64(2 * tableSize(t))
	if limit > old.Max {
		t.Skipf("the hard RLIMIT_NOFILE (%d) is under %d", old.Max, limit)
	}
	if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &unix.Rlimit{Cur: limit, Max: old.Max}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Setrlimit(unix.RLIMIT_NOFILE, &old) })
	if err := Reserve(int(4 * limit)); err != nil {
		t.Fatalf("Reserve above the soft limit %d: %v", limit, err)
	}
	if got := tableSize(t); uint64(got) < limit {
		t.Errorf("table after Reserve above the soft limit %d: %d slots", limit, got)
	}
}
