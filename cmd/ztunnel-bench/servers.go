package main

import (
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Ports of the benchmark applications, the same in every server namespace.
const (
	portEcho    = 7001 // echoes until EOF: S4 and S6 round trips, S5 idle connections
	portSource  = 7002 // writes until the client half-closes: S1, S2 and S6 bulk streams
	portOneShot = 7003 // reads one byte, answers one byte and closes first: S3
)

// sourceBuf is what the source server writes, shared read-only by every connection.
var sourceBuf = make([]byte, 256<<10)

// apps serves the three benchmark applications on listeners the harness made in server
// namespaces. Owned by the harness: close stops the accept loops and every connection and
// waits for all their goroutines.
type apps struct {
	wg sync.WaitGroup // accept loops and connection goroutines

	mu        sync.Mutex
	listeners []net.Listener        // guarded by mu
	conns     map[net.Conn]struct{} // guarded by mu
	closed    bool                  // guarded by mu
}

func newApps() *apps { return &apps{conns: map[net.Conn]struct{}{}} }

// serve runs the application of port on l.
func (a *apps) serve(l net.Listener, port int) {
	a.mu.Lock()
	a.listeners = append(a.listeners, l)
	a.mu.Unlock()
	handler := map[int]func(net.Conn){portEcho: echo, portSource: source, portOneShot: oneShot}[port]
	a.wg.Go(func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			a.mu.Lock()
			if a.closed {
				a.mu.Unlock()
				c.Close()
				return
			}
			a.conns[c] = struct{}{}
			a.mu.Unlock()
			a.wg.Go(func() {
				handler(c)
				a.mu.Lock()
				delete(a.conns, c)
				a.mu.Unlock()
				c.Close()
			})
		}
	})
}

func (a *apps) close() {
	a.mu.Lock()
	a.closed = true
	for _, l := range a.listeners {
		l.Close()
	}
	for c := range a.conns {
		c.Close()
	}
	a.mu.Unlock()
	a.wg.Wait()
}

// echo answers every read with the same bytes until EOF, then half-closes.
func echo(c net.Conn) {
	var buf [512]byte
	for {
		n, err := c.Read(buf[:])
		if n > 0 {
			if _, werr := c.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			if err == io.EOF {
				c.(*net.TCPConn).CloseWrite()
			}
			return
		}
	}
}

// source writes until the peer half-closes (then it finishes its write and closes, so the
// client can drain to EOF) or goes away.
func source(c net.Conn) {
	var stop atomic.Bool
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(func() {
		var b [64]byte
		for {
			if _, err := c.Read(b[:]); err != nil {
				stop.Store(true)
				return
			}
		}
	})
	defer c.Close() // ends the reader if the writer stopped first
	for !stop.Load() {
		if _, err := c.Write(sourceBuf); err != nil {
			return
		}
	}
}

// oneShot is one TCP_CRR transaction: one byte in, one byte out, and the server closes first
// (so TIME_WAIT stays on the server side and client ports are not exhausted).
func oneShot(c net.Conn) {
	c.SetDeadline(time.Now().Add(dialTimeout))
	var b [1]byte
	if _, err := io.ReadFull(c, b[:]); err != nil {
		return
	}
	c.Write(b[:])
}
