//go:build !race

package proxy

// recordRace: see record_race_test.go.
const recordRace = false
