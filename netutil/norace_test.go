//go:build !race

package netutil_test

const raceEnabled = false
