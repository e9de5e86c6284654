package main

import (
	"runtime/debug"
	"testing"
)

func TestSetGCPercent(t *testing.T) {
	old := debug.SetGCPercent(100)
	t.Cleanup(func() { debug.SetGCPercent(old) })

	setGCPercent(func(string) (string, bool) { return "", false })
	if got := debug.SetGCPercent(100); got != defaultGCPercent {
		t.Errorf("GOGC unset: the runtime's target is %d, want %d", got, defaultGCPercent)
	}

	// An operator's GOGC (applied by the runtime at start, here by hand) is left as it is.
	debug.SetGCPercent(200)
	setGCPercent(func(name string) (string, bool) { return "200", name == "GOGC" })
	if got := debug.SetGCPercent(100); got != 200 {
		t.Errorf("GOGC=200: the runtime's target is %d, want 200", got)
	}
	debug.SetGCPercent(-1) // GOGC=off
	setGCPercent(func(name string) (string, bool) { return "off", name == "GOGC" })
	if got := debug.SetGCPercent(100); got != -1 {
		t.Errorf("GOGC=off: the runtime's target is %d, want -1", got)
	}
}
