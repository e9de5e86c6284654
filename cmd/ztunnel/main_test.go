package main

import (
	"runtime/debug"
	"runtime/metrics"
	"testing"
)

// runtimePercent reads the collector's target as the runtime holds it.
func runtimePercent() int {
	s := []metrics.Sample{{Name: "/gc/gogc:percent"}}
	metrics.Read(s)
	return int(s[0].Value.Uint64())
}

func TestStartGCTarget(t *testing.T) {
	old := debug.SetGCPercent(100)
	t.Cleanup(func() { debug.SetGCPercent(old) })

	// GOGC unset: the tuner sets the target, within ztunnel's bounds.
	tu := startGCTarget(func(string) (string, bool) { return "", false })
	if tu == nil {
		t.Fatal("GOGC unset: no tuner started")
	}
	got := tu.Stop()
	if got < gcMinPercent || got > gcMaxPercent || runtimePercent() != got {
		t.Errorf("GOGC unset: the tuner set %d and the runtime holds %d, want the same, within [%d, %d]",
			got, runtimePercent(), gcMinPercent, gcMaxPercent)
	}

	// An operator's GOGC (applied by the runtime at start, here by hand) is left as it is.
	debug.SetGCPercent(200)
	if tu := startGCTarget(func(name string) (string, bool) { return "200", name == "GOGC" }); tu != nil {
		tu.Stop()
		t.Error("GOGC=200: a tuner started")
	}
	if got := runtimePercent(); got != 200 {
		t.Errorf("GOGC=200: the runtime's target is %d, want 200", got)
	}
	debug.SetGCPercent(-1) // GOGC=off
	if tu := startGCTarget(func(name string) (string, bool) { return "off", name == "GOGC" }); tu != nil {
		tu.Stop()
		t.Error("GOGC=off: a tuner started")
	}
	if got := debug.SetGCPercent(100); got != -1 {
		t.Errorf("GOGC=off: the runtime's target is %d, want -1", got)
	}
}
