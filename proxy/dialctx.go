package proxy

import (
	"context"
	"time"
)

// connectCtx is the context of an upstream TCP connect: a deadline, and no cancellation. Its
// value is the deadline in Unix nanoseconds.
//
// A context.WithTimeout per connect costs the timer-backed context, its runtime timer, its Done
// channel (made when net's connect asks for it) and, under a cancellable parent, the parent's
// record of it: about half a kilobyte of garbage per connection, in the small size classes where a
// few long-lived objects keep pages resident (benchmarks/README.md, "The idle trim, again, and
// dials without a timer context (twenty-ninth session)" and "S5 at rest, and what pins the heap's
// holes (thirtieth session)"). net's connect still makes its own context.AfterFunc record, about
// 200 B, whenever Done is not nil. net's connect needs neither a timer nor a cancellable parent to
// time out: it puts a context's deadline on the socket's poll descriptor and wakes at it with "i/o
// timeout", provided the context's Done is not nil. So Done returns a channel that never closes,
// and AfterFunc (which context.AfterFunc uses in place of a goroutine watching Done) never runs its
// function. (hbone's deadlineCtx, whose Done is nil, would leave a connect without any deadline.)
//
// What this gives up: an inbound connect used to end with the HBONE connection that asked for
// it (its context was the parent). Now it goes on to the connect timeout, and its handler then
// finds the stream gone; Drain, which waits for the handlers, may wait that long for a connect
// to an address that does not answer.
type connectCtx int64

// connectDeadline returns the context of a connect that must finish within d from now.
func connectDeadline(d time.Duration) context.Context { return connectUntil(time.Now().Add(d)) }

// connectUntil returns the context of a connect that must finish by t.
func connectUntil(t time.Time) context.Context { return connectCtx(t.UnixNano()) }

// neverDone is connectCtx's Done channel. Nothing closes it.
var neverDone = make(chan struct{})

// stopNever is the stop function of connectCtx.AfterFunc: the function was never going to run.
func stopNever() bool { return true }

func (c connectCtx) Deadline() (time.Time, bool)       { return time.Unix(0, int64(c)), true }
func (connectCtx) Done() <-chan struct{}               { return neverDone }
func (connectCtx) Err() error                          { return nil }
func (connectCtx) Value(any) any                       { return nil }
func (connectCtx) AfterFunc(func()) (stop func() bool) { return stopNever }
