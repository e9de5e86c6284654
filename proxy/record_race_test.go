//go:build race

package proxy

// recordRace is true in builds with the race detector, whose instrumentation moves some
// values to the heap: allocation budgets do not hold there.
const recordRace = true
