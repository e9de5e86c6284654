//go:build !race

package rawio

// raceEnabled: built with the race detector.
const raceEnabled = false
