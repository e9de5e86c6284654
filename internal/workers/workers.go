// Package workers runs short tasks on reused goroutines.
//
// A proxy starts goroutines per connection: the handler of an accepted connection or of an
// HBONE stream, a relay direction resumed from the epoll loop. A new goroutine starts with a
// 2 KiB stack, and the paths those goroutines take (policy, metrics, the access log) need
// more, so each one grew its stack at least once: a copy of the stack and a walk of its frames,
// 2-7% of a ztunnel's CPU when connections are short (S3 profiles). A goroutine that finished
// a task keeps its grown stack; Go hands the next task to one that waits idle, so neither the
// start nor the growth is paid again.
//
// At most MaxIdle goroutines wait; the rest end when their task does. Idle ones hold their
// stacks, nothing else. Go's collector shrinks a waiting worker's stack only by half per
// collection, and an idle proxy seldom collects, so the idle memory trim ends the waiting
// workers (RetireIdle) to give their stacks back at once.
package workers

import (
	"sync"
	"sync/atomic"
)

// MaxIdle bounds the goroutines that wait for a task. Set before the first Go call.
var MaxIdle int32 = 32

var (
	tasks = make(chan func()) // unbuffered: a send succeeds only when a worker waits
	idle  atomic.Int32        // workers waiting, or about to

	retireMu sync.Mutex     // one RetireIdle at a time
	retiring sync.WaitGroup // workers told to end (a nil task) that have not yet ended
)

// Go runs f on an idle worker goroutine, or on a new one when none waits. f must not be nil.
// Like a go statement it never blocks, and f's owner is whoever the caller says it is. Unlike
// one, the goroutine outlives f: f must not leave it locked to its thread
// (runtime.LockOSThread), as code that changes a thread's namespace does so that the thread
// dies with its goroutine (netutil.InNetns starts a goroutine of its own for that).
func Go(f func()) {
	select {
	case tasks <- f:
	default:
		go work(f)
	}
}

// work runs f, then waits for more while there is room among the idle workers. A nil task
// is RetireIdle's: the worker ends.
func work(f func()) {
	for {
		f()
		f = nil // let f's captures go while waiting
		if idle.Add(1) > MaxIdle {
			idle.Add(-1)
			return
		}
		f = wait()
		idle.Add(-1)
		if f == nil {
			retiring.Done()
			return
		}
	}
}

// RetireIdle ends the workers that wait for a task, at most MaxIdle of them, and returns how
// many it ended once each has taken its nil task (it is then returning). Their goroutines exit,
// which frees the stacks their tasks grew: the collection that follows (the idle memory trim's)
// returns those pages to the kernel. Tasks given to Go afterwards start new workers, which
// grow their stacks again; so it is for a process that has gone quiet, not for a busy one.
func RetireIdle() int {
	retireMu.Lock()
	defer retireMu.Unlock()
	n := 0
retire:
	for range MaxIdle {
		retiring.Add(1)
		select {
		case tasks <- nil:
			n++
		default: // no worker waits
			retiring.Done()
			break retire
		}
	}
	retiring.Wait()
	return n
}

// wait is where an idle worker waits for its next task. It stays a frame of its own so that
// goroutine counts (internal/leakcheck) recognise idle workers by name: they belong to the
// process, not to the test or connection that last used them.
//
//go:noinline
func wait() func() { return <-tasks }
