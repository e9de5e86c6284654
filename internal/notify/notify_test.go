package notify

import (
	"sync"
	"testing"
	"time"
)

// TestCallbacks: Run calls each function added once; a cancelled one is not called again, and
// a cancel waits for a Run in progress.
func TestCallbacks(t *testing.T) {
	var c Callbacks
	c.Run() // empty: nothing to call
	var a, b int
	cancelA := c.Add(func() { a++ })
	cancelB := c.Add(func() { b++ })
	c.Run()
	cancelA()
	cancelA() // harmless
	c.Run()
	if a != 1 || b != 2 {
		t.Errorf("calls a=%d b=%d, want 1 and 2", a, b)
	}

	inside, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	cancelC := c.Add(func() { once.Do(func() { close(inside); <-release }) })
	go c.Run()
	<-inside
	cancelled := make(chan struct{})
	go func() { cancelC(); close(cancelled) }()
	select {
	case <-cancelled:
		t.Fatal("cancel returned while its function ran")
	case <-time.After(50 * time.Millisecond):
	}
	close(release)
	<-cancelled
	cancelB()
}
