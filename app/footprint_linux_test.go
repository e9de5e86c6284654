package app

import (
	"bufio"
	"bytes"
	"errors"
	"os"
	"strconv"
	"testing"

	"golang.org/x/sys/unix"
)

// imageRSS sums the resident kB of this process's read-only mappings of its own executable,
// from /proc/self/smaps.
func imageRSS(t *testing.T) int {
	t.Helper()
	exe, err := os.Readlink("/proc/self/exe")
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile("/proc/self/smaps")
	if err != nil {
		t.Fatal(err)
	}
	total, in := 0, false
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := bytes.Fields(sc.Bytes())
		switch {
		case len(f) >= 5 && bytes.IndexByte(f[0], '-') > 0 && !bytes.HasSuffix(f[0], []byte(":")):
			in = len(f) >= 6 && string(f[5]) == exe && bytes.IndexByte(f[1], 'w') < 0
		case in && len(f) >= 2 && string(f[0]) == "Rss:":
			kb, err := strconv.Atoi(string(f[1]))
			if err != nil {
				t.Fatalf("smaps line %q: %v", sc.Text(), err)
			}
			total += kb
		}
	}
	return total
}

// TestPageOutImage checks that the executable's resident read-only pages shrink once advised
// out: the test binary has run its package initialisation and the testing framework, so a few
// MiB of it are resident before.
func TestPageOutImage(t *testing.T) {
	before := imageRSS(t)
	n, err := pageOutImage()
	if errors.Is(err, unix.EINVAL) {
		t.Skipf("this kernel has no MADV_PAGEOUT: %v", err)
	}
	if err != nil {
		t.Fatalf("pageOutImage: %v", err)
	}
	after := imageRSS(t)
	t.Logf("advised %d KiB of mappings; resident image %d KiB -> %d KiB", n>>10, before, after)
	if n == 0 {
		t.Fatal("no read-only mapping of the executable found in /proc/self/maps")
	}
	if before < 1024 {
		t.Fatalf("only %d KiB of the image resident before: the measure is broken", before)
	}
	if after > before/2 {
		t.Errorf("resident image after paging out = %d KiB, want at most half of %d KiB", after, before)
	}
}
