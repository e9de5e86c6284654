package app

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ztunnel-go/ztunnel/config"
	"github.com/ztunnel-go/ztunnel/inpod/zdstest"
	"github.com/ztunnel-go/ztunnel/internal/leakcheck"
)

// TestRunNoGoroutineLeak runs a shared-mode App (local config, FAKE_CA, a fake istio-cni with no
// pods, the admin, stats and readiness servers on ephemeral loopback ports) until it is ready,
// then cancels it: once Run returned, every goroutine it started has ended.
func TestRunNoGoroutineLeak(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "zds.sock")
	zds, err := zdstest.Listen(sock, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Skipf("no fake istio-cni here: %v", err)
	}
	defer zds.Close()
	cfg := loopbackConfig(t, map[string]string{"PROXY_MODE": "shared", "INPOD_UDS": sock}, 0)

	base := leakcheck.Baseline()
	a, err := New(cfg, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	deadline := time.Now().Add(10 * time.Second)
	for len(a.ready.Pending()) > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("not ready: %v", a.ready.Pending())
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
	leakcheck.Wait(t, base)
}

// TestRunPortTakenFails: when a server cannot listen after the configuration loaded (the port is
// taken), Run returns an error naming the server promptly instead of hanging on goroutines that
// only its own cancellation ends.
func TestRunPortTakenFails(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	port := uint16(taken.Addr().(*net.TCPAddr).Port)
	cfg := loopbackConfig(t, nil, port)
	base := leakcheck.Baseline()
	a, err := New(cfg, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- a.Run(context.Background()) }()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "readiness") {
			t.Fatalf("Run = %v, want an error naming the readiness server", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run hung when the readiness port was taken")
	}
	leakcheck.Wait(t, base)
}

// loopbackConfig is a configuration with a FAKE_CA, an empty local config, no istiod and every
// server on loopback (ephemeral ports; readinessPort when not 0), plus extra's variables.
func loopbackConfig(t testing.TB, extra map[string]string, readinessPort uint16) *config.Config {
	t.Helper()
	env := map[string]string{
		"XDS_ADDRESS": "", "CA_ADDRESS": "", "FAKE_CA": "true", "LOCAL_XDS": "workloads: []", "RUST_LOG": "error",
	}
	for k, v := range extra {
		env[k] = v
	}
	cfg, err := config.FromEnv(func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	if err != nil {
		t.Fatal(err)
	}
	lo := netip.MustParseAddr("127.0.0.1")
	cfg.Listen.Admin = config.Address{IP: lo}
	cfg.Listen.Stats = config.Address{IP: lo}
	cfg.Listen.Readiness = config.Address{IP: lo, Port: readinessPort}
	return cfg
}
