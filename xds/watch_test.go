package xds

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ztunnel-go/ztunnel/internal/syncbuf"
	"github.com/ztunnel-go/ztunnel/internal/testfile"
	"github.com/ztunnel-go/ztunnel/workload"
)

// config returns a one-workload local config with the given IP.
func config(ip string) []byte {
	return fmt.Appendf(nil, "workloads:\n- uid: w\n  namespace: default\n  workloadIps: [%q]\n", ip)
}

// runSource starts Run in a goroutine owned by the test (waited for in
// cleanup) and waits for ready.
func runSource(t *testing.T, src *LocalSource) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan struct{})
	done := make(chan error, 1)
	go func() { done <- src.Run(ctx, func() { close(ready) }) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run returned %v", err)
		}
	})
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("Run ended before ready: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("not ready")
	}
}

// waitFor polls until the workload "w" has IP want (or none when want is "").
func waitFor(t *testing.T, store *workload.Store, want string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		w := store.Snapshot().WorkloadByUID("w")
		got := ""
		if w != nil && len(w.WorkloadIPs) > 0 {
			got = w.WorkloadIPs[0].String()
		}
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("workload IP = %q, want %q", got, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestLocalSourceWatchesFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(path, config("10.0.0.1"), 0o644); err != nil {
		t.Fatal(err)
	}
	store := workload.NewStore()
	logs := &syncbuf.Buffer{}
	runSource(t, &LocalSource{Path: path, Store: store, Logger: slog.New(slog.NewTextHandler(logs, nil))})
	waitFor(t, store, "10.0.0.1")

	// In-place edit.
	if err := os.WriteFile(path, config("10.0.0.2"), 0o644); err != nil {
		t.Fatal(err)
	}
	waitFor(t, store, "10.0.0.2")

	// Invalid edit: logged, last good config kept.
	version := store.Snapshot().Version()
	if err := os.WriteFile(path, []byte("workloads:\n- uid: w\n  colour: red\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(logs.String(), "local config rejected") {
		if time.Now().After(deadline) {
			t.Fatalf("no rejection logged; logs:\n%s", logs)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if !strings.Contains(logs.String(), "colour") {
		t.Errorf("rejection log does not say why:\n%s", logs)
	}
	if got := store.Snapshot().Version(); got != version {
		t.Errorf("store changed after invalid edit (version %d -> %d)", version, got)
	}
	waitFor(t, store, "10.0.0.2")

	// Editor-style rename over the file.
	testfile.Replace(t, path, config("10.0.0.3"))
	waitFor(t, store, "10.0.0.3")

	// Removed and recreated.
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, config("10.0.0.4"), 0o644); err != nil {
		t.Fatal(err)
	}
	waitFor(t, store, "10.0.0.4")
}

// A file written often beside the config (the harness kept ztunnel's logs
// there) does not hold off a reload: before events were filtered, its writes
// kept re-arming the debounce, so an edit was never applied while the
// neighbour was busy.
func TestLocalSourceIgnoresNeighbours(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(path, config("10.0.3.1"), 0o644); err != nil {
		t.Fatal(err)
	}
	store := workload.NewStore()
	runSource(t, &LocalSource{Path: path, Store: store})
	waitFor(t, store, "10.0.3.1")

	stop := make(chan struct{})
	busy := make(chan struct{})
	go func() {
		defer close(busy)
		f, err := os.Create(filepath.Join(dir, "ztunnel.log"))
		if err != nil {
			t.Error(err)
			return
		}
		defer f.Close()
		tick := time.NewTicker(debounce / 10)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				if _, err := f.WriteString("connection complete\n"); err != nil {
					t.Error(err)
					return
				}
			}
		}
	}()
	defer func() { close(stop); <-busy }()

	if err := os.WriteFile(path, config("10.0.3.2"), 0o644); err != nil {
		t.Fatal(err)
	}
	waitFor(t, store, "10.0.3.2")
}

// TestLocalSourceConfigMapSwap reproduces how the kubelet updates a
// mounted ConfigMap: config.yaml -> ..data/config.yaml, ..data -> a
// timestamped directory, swapped by renaming a new symlink over ..data.
func TestLocalSourceConfigMapSwap(t *testing.T) {
	dir := t.TempDir()
	writeVersion := func(name string, data []byte) {
		if err := os.Mkdir(filepath.Join(dir, name), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name, "config.yaml"), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	writeVersion("..v1", config("10.0.1.1"))
	if err := os.Symlink("..v1", filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "config.yaml")
	if err := os.Symlink("..data/config.yaml", path); err != nil {
		t.Fatal(err)
	}
	store := workload.NewStore()
	runSource(t, &LocalSource{Path: path, Store: store})
	waitFor(t, store, "10.0.1.1")

	writeVersion("..v2", config("10.0.1.2"))
	if err := os.Symlink("..v2", filepath.Join(dir, "..data_tmp")); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(filepath.Join(dir, "..v1")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, store, "10.0.1.2")
}

// A symlink into another directory: edits of the target are seen.
func TestLocalSourceSymlinkElsewhere(t *testing.T) {
	real := filepath.Join(t.TempDir(), "real.yaml")
	if err := os.WriteFile(real, config("10.0.2.1"), 0o644); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.Symlink(real, path); err != nil {
		t.Fatal(err)
	}
	store := workload.NewStore()
	runSource(t, &LocalSource{Path: path, Store: store})
	waitFor(t, store, "10.0.2.1")
	testfile.Replace(t, real, config("10.0.2.2"))
	waitFor(t, store, "10.0.2.2")
}

func TestLocalSourceInline(t *testing.T) {
	store := workload.NewStore()
	runSource(t, &LocalSource{Inline: string(config("10.0.3.1")), Store: store})
	if store.Snapshot().WorkloadByAddr("", netip.MustParseAddr("10.0.3.1")) == nil {
		t.Error("inline config not applied")
	}
}

func TestLocalSourceStartErrors(t *testing.T) {
	dir := t.TempDir()
	invalid := filepath.Join(dir, "invalid.yaml")
	if err := os.WriteFile(invalid, []byte("workloads: [{uid: w, bogus: 1}]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		src  LocalSource
		want string
	}{
		{"missing file", LocalSource{Path: filepath.Join(dir, "missing.yaml")}, "no such file"},
		{"missing directory", LocalSource{Path: filepath.Join(dir, "nodir", "c.yaml")}, "no such file"},
		{"invalid file", LocalSource{Path: invalid}, "bogus"},
		{"invalid inline", LocalSource{Inline: "workloads: 3"}, "LOCAL_XDS"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.src.Store = workload.NewStore()
			readyCalled := false
			err := tt.src.Run(context.Background(), func() { readyCalled = true })
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Run = %v, want error containing %q", err, tt.want)
			}
			if readyCalled {
				t.Error("ready called despite the error")
			}
		})
	}
}
