package hbone

import (
	"os"
	"testing"

	"github.com/ztunnel-go/ztunnel/internal/workers"
)

// TestMain keeps no idle workers in this package's tests: the pool tests run inside
// testing/synctest bubbles, where a goroutine started outside the bubble (an idle worker left
// by an earlier test) must not run the bubble's tasks.
func TestMain(m *testing.M) {
	workers.MaxIdle = 0
	os.Exit(m.Run())
}
