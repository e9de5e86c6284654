// Package testfile changes files in tests the way the files a ztunnel watches change in a
// cluster.
package testfile

import (
	"os"
	"testing"
)

// Replace replaces the file at path with one holding data in one step: it writes a temporary
// file beside it and renames it over path, as the kubelet swaps a mounted ConfigMap or Secret
// and as editors save. A watcher polling path never reads it half written (os.WriteFile
// truncates first, so a poll in between would read an empty file).
func Replace(t testing.TB, path string, data []byte) {
	t.Helper()
	tmp := path + ".new"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}
