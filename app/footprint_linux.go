package app

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// pageOutImage asks the kernel (madvise MADV_PAGEOUT) to reclaim the resident pages of the
// executable's read-only mappings: code, read-only data, the symbol and line tables. They are
// clean and file-backed; the kernel skips pages another process maps too (a second ztunnel of
// the same file), and any page used later is read back from the file. The writable data
// mapping is left alone. It returns the bytes of mappings advised.
func pageOutImage() (int, error) {
	exe, err := os.Readlink("/proc/self/exe")
	if err != nil {
		return 0, err
	}
	maps, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		return 0, err
	}
	total := 0
	sc := bufio.NewScanner(bytes.NewReader(maps))
	for sc.Scan() {
		f := bytes.Fields(sc.Bytes())
		if len(f) < 6 || string(f[5]) != exe || bytes.IndexByte(f[1], 'w') >= 0 {
			continue
		}
		lo, hi, ok := bytes.Cut(f[0], []byte("-"))
		if !ok {
			continue
		}
		start, err1 := strconv.ParseUint(string(lo), 16, 64)
		end, err2 := strconv.ParseUint(string(hi), 16, 64)
		if err1 != nil || err2 != nil || end <= start {
			continue
		}
		if _, _, e := unix.Syscall(unix.SYS_MADVISE, uintptr(start), uintptr(end-start), unix.MADV_PAGEOUT); e != 0 {
			return total, fmt.Errorf("madvise %x-%x: %w", start, end, e)
		}
		total += int(end - start)
	}
	return total, sc.Err()
}
