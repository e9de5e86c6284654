// Package procfs parses the size and count fields of Linux's /proc files: the harness reads
// other processes' memory with it, tests their own, and internal/fdtable the descriptor
// table's size.
package procfs

import (
	"bytes"
	"fmt"
	"strconv"
)

// KBField returns the value of the first line of b starting with key, a size in kB as
// /proc/<pid>/status and smaps_rollup write them ("Rss:   1234 kB"), in bytes. what names the
// file in errors.
func KBField(b []byte, what, key string) (int64, error) {
	f, line, err := fieldWords(b, what, key)
	if err != nil {
		return 0, err
	}
	if len(f) != 2 || string(f[1]) != "kB" {
		return 0, fmt.Errorf("%s: malformed %s line %q", what, key, line)
	}
	kb, err := strconv.ParseInt(string(f[0]), 10, 64)
	if err != nil || kb < 0 || kb > 1<<40 {
		return 0, fmt.Errorf("%s: %s %q", what, key, f[0])
	}
	return kb << 10, nil
}

// CountField returns the value of the first line of b starting with key, a count without a
// unit as /proc/<pid>/status writes some ("FDSize:\t256", "Threads:\t12"). what names the file
// in errors.
func CountField(b []byte, what, key string) (int64, error) {
	f, line, err := fieldWords(b, what, key)
	if err != nil {
		return 0, err
	}
	if len(f) != 1 {
		return 0, fmt.Errorf("%s: malformed %s line %q", what, key, line)
	}
	n, err := strconv.ParseInt(string(f[0]), 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("%s: %s %q", what, key, f[0])
	}
	return n, nil
}

// fieldWords returns the words after key on the first line of b starting with key, and the line.
func fieldWords(b []byte, what, key string) ([][]byte, []byte, error) {
	for line := range bytes.SplitSeq(b, []byte{'\n'}) {
		if rest, ok := bytes.CutPrefix(line, []byte(key)); ok {
			return bytes.Fields(rest), line, nil
		}
	}
	return nil, nil, fmt.Errorf("%s: no %s line", what, key)
}
