// Package procfs parses the size fields of Linux's /proc files: the harness reads other
// processes' memory with it, and tests their own.
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
	for line := range bytes.SplitSeq(b, []byte{'\n'}) {
		rest, ok := bytes.CutPrefix(line, []byte(key))
		if !ok {
			continue
		}
		f := bytes.Fields(rest)
		if len(f) != 2 || string(f[1]) != "kB" {
			return 0, fmt.Errorf("%s: malformed %s line %q", what, key, line)
		}
		kb, err := strconv.ParseInt(string(f[0]), 10, 64)
		if err != nil || kb < 0 || kb > 1<<40 {
			return 0, fmt.Errorf("%s: %s %q", what, key, f[0])
		}
		return kb << 10, nil
	}
	return 0, fmt.Errorf("%s: no %s line", what, key)
}
