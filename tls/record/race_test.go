//go:build race

package record

// raceEnabled: sync.Pool drops items at random under the race detector, so
// allocation budgets are not checked.
const raceEnabled = true
