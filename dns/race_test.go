//go:build race

package dns

// raceEnabled: the race detector allocates and sync.Pool drops items at
// random under it, so allocation budgets are not checked.
const raceEnabled = true
