package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"sync"
	"time"
)

// The load generators. Each is bounded by a duration and a count, and stops early when ctx
// ends (every blocking call has a deadline that a ctx cancellation pulls in).

// path is one way from a client namespace to the benchmark applications.
type path struct {
	name    string
	from    *netns      // where clients dial from
	echo    string      // address of the echo application as dialed from `from`
	source  string      // address of the source application
	oneShot string      // address of the one-shot (CRR) application
	group   *proxyGroup // the processes carrying the path; nil for direct
	members []int       // indexes in group.procs of the path's proxies (CPU and RSS are theirs)
}

// pids returns the process IDs of the path's proxies as they run now.
func (p *path) pids() []int {
	var out []int
	for _, i := range p.members {
		out = append(out, p.group.procs[i].pid())
	}
	return out
}

// proxyGroup is a set of proxy processes started together, which the harness can restart
// (S5 measures fresh processes). The ztunnel pair is one group shared by two paths.
type proxyGroup struct {
	procs []*proc                                    // set by the harness at start and restart
	start func(ctx context.Context) ([]*proc, error) // starts the processes and waits until they serve
}

// abortOnDone pulls every deadline of c in when ctx ends; the returned stop undoes the hook.
func abortOnDone(ctx context.Context, c net.Conn) (stop func() bool) {
	return context.AfterFunc(ctx, func() { c.SetDeadline(time.Unix(1, 0)) })
}

// bulkResult is what a bulk run measured.
type bulkResult struct {
	bytes   int64
	elapsed time.Duration
	cpu     time.Duration // CPU of the path's proxies during the run
	// idle is the share of the host's CPU time, in percent, that no task used during the run: a
	// path whose stages wait on each other (wake-ups, windows) leaves the vCPUs idle, one
	// bound by CPU does not.
	idle float64
}

// bulk downloads from the source application over streams parallel connections for d and
// counts what arrived. Proxy CPU is read just before the reads start and just after they end.
// Then each connection is half-closed and drained to EOF, or, when abrupt, closed with data
// still in flight.
func bulk(ctx context.Context, p *path, streams int, d time.Duration, abrupt bool) (bulkResult, error) {
	conns := make([]*net.TCPConn, 0, streams)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for range streams {
		c, err := p.from.dial(ctx, p.source)
		if err != nil {
			return bulkResult{}, err
		}
		conns = append(conns, c)
	}
	cpu0, err := sumCPU(p.pids())
	if err != nil {
		return bulkResult{}, err
	}
	host0, err := readHostCPU()
	if err != nil {
		return bulkResult{}, err
	}
	start := time.Now()
	deadline := start.Add(d)
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		total int64
		errs  []error
	)
	for _, c := range conns {
		c.SetReadDeadline(deadline)
		stop := abortOnDone(ctx, c)
		wg.Go(func() {
			defer stop()
			buf := make([]byte, 256<<10)
			var n int64
			for {
				m, err := c.Read(buf)
				n += int64(m)
				if err != nil {
					mu.Lock()
					total += n
					if !errors.Is(err, os.ErrDeadlineExceeded) {
						errs = append(errs, fmt.Errorf("bulk read after %d bytes: %w", n, err))
					}
					mu.Unlock()
					return
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	host1, err := readHostCPU()
	if err != nil {
		return bulkResult{}, err
	}
	cpu1, err := sumCPU(p.pids())
	if err != nil {
		return bulkResult{}, err
	}
	if !abrupt {
		// End like a well-behaved client: half-close, and read (uncounted) what is still in
		// flight until the server's EOF, so no stream is torn down with data buffered in a proxy.
		var dw sync.WaitGroup
		for _, c := range conns {
			dw.Go(func() {
				c.SetReadDeadline(time.Now().Add(dialTimeout))
				c.CloseWrite()
				io.Copy(io.Discard, c)
			})
		}
		dw.Wait()
	}
	if err := ctx.Err(); err != nil {
		return bulkResult{}, err
	}
	if len(errs) > 0 {
		return bulkResult{}, errors.Join(errs...)
	}
	return bulkResult{bytes: total, elapsed: elapsed, cpu: cpu1 - cpu0, idle: idlePercent(host0, host1)}, nil
}

// maxRRSamples bounds the latency samples one run keeps (16 MiB of durations).
const maxRRSamples = 2 << 20

// rr runs 1-byte request/response on one connection for d (after a short warm-up) and returns
// every round-trip time, sorted, and the CPU the path's proxies used from the end of the
// warm-up to the last round trip.
func rr(ctx context.Context, p *path, d time.Duration) ([]time.Duration, time.Duration, error) {
	c, err := p.from.dial(ctx, p.echo)
	if err != nil {
		return nil, 0, err
	}
	defer c.Close()
	stop := abortOnDone(ctx, c)
	defer stop()
	c.SetDeadline(time.Now().Add(d + dialTimeout))
	var b [1]byte
	trip := func() error {
		if _, err := c.Write(b[:]); err != nil {
			return err
		}
		_, err := io.ReadFull(c, b[:])
		return err
	}
	for range 20 {
		if err := trip(); err != nil {
			return nil, 0, fmt.Errorf("rr warm-up: %w", err)
		}
	}
	cpu0, err := sumCPU(p.pids())
	if err != nil {
		return nil, 0, err
	}
	samples := make([]time.Duration, 0, 1<<16)
	end := time.Now().Add(d)
	for len(samples) < maxRRSamples {
		t0 := time.Now()
		if t0.After(end) {
			break
		}
		if err := trip(); err != nil {
			return nil, 0, fmt.Errorf("rr after %d round trips: %w", len(samples), err)
		}
		samples = append(samples, time.Since(t0))
	}
	cpu1, err := sumCPU(p.pids())
	if err != nil {
		return nil, 0, err
	}
	slices.Sort(samples)
	return samples, cpu1 - cpu0, nil
}

// percentile returns the q-quantile (0..1) of sorted samples, nearest rank.
func percentile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(q*float64(len(sorted))+0.5) - 1
	i = max(0, min(i, len(sorted)-1))
	return sorted[i]
}

// maxCRRErrors is how many failed transactions a CRR run tolerates before it gives up.
const maxCRRErrors = 10

// crrResult is what a CRR run measured.
type crrResult struct {
	done    int           // completed transactions
	elapsed time.Duration // time taken
	cpu     time.Duration // CPU of the path's proxies during the run
}

// crr opens new connections one after another for d, each carrying one 1-byte request and
// its response, and returns the completed transactions, the time taken and the proxies' CPU.
// The whole loop runs on one thread inside the client namespace, so that each dial is a plain
// socket call.
func crr(ctx context.Context, p *path, d time.Duration) (crrResult, error) {
	var r crrResult
	cpu0, err := sumCPU(p.pids())
	if err != nil {
		return r, err
	}
	err = p.from.do(func() error {
		dialer := net.Dialer{Timeout: dialTimeout}
		var failures []error
		start := time.Now()
		end := start.Add(d)
		var b [1]byte
		for time.Now().Before(end) && ctx.Err() == nil {
			if err := crrOnce(ctx, &dialer, p.oneShot, b[:]); err != nil {
				if failures = append(failures, err); len(failures) > maxCRRErrors {
					return fmt.Errorf("crr: %d failures after %d transactions: %w", len(failures), r.done, errors.Join(failures...))
				}
				continue
			}
			r.done++
		}
		r.elapsed = time.Since(start)
		return ctx.Err()
	})
	if err != nil {
		return r, err
	}
	cpu1, err := sumCPU(p.pids())
	r.cpu = cpu1 - cpu0
	return r, err
}

func crrOnce(ctx context.Context, d *net.Dialer, addr string, b []byte) error {
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(dialTimeout))
	if _, err := c.Write(b); err != nil {
		return err
	}
	if _, err := io.ReadFull(c, b); err != nil {
		return err
	}
	// The server closes first; wait for its FIN so the transaction is complete end to end.
	if n, err := c.Read(b); n != 0 || err != io.EOF {
		return fmt.Errorf("crr: want EOF after the answer, got %d bytes, %v", n, err)
	}
	return nil
}

// holdIdle opens n connections through the path, each proven end to end by one echoed byte,
// and returns them open. It stops early at ctx's end or after timeout.
func holdIdle(ctx context.Context, p *path, n int, timeout time.Duration) ([]net.Conn, error) {
	conns := make([]net.Conn, 0, n)
	err := p.from.do(func() error {
		dialer := net.Dialer{Timeout: dialTimeout}
		end := time.Now().Add(timeout)
		var b [1]byte
		for len(conns) < n {
			if err := ctx.Err(); err != nil {
				return err
			}
			if time.Now().After(end) {
				return fmt.Errorf("idle: only %d of %d connections open after %v", len(conns), n, timeout)
			}
			c, err := dialer.DialContext(ctx, "tcp", p.echo)
			if err != nil {
				return fmt.Errorf("idle: connection %d: %w", len(conns), err)
			}
			conns = append(conns, c)
			c.SetDeadline(time.Now().Add(dialTimeout))
			if _, err := c.Write(b[:]); err != nil {
				return fmt.Errorf("idle: connection %d: %w", len(conns), err)
			}
			if _, err := io.ReadFull(c, b[:]); err != nil {
				return fmt.Errorf("idle: connection %d: %w", len(conns), err)
			}
			c.SetDeadline(time.Time{})
		}
		return nil
	})
	if err != nil {
		closeAll(conns)
		return nil, err
	}
	return conns, nil
}

func closeAll(conns []net.Conn) {
	for _, c := range conns {
		c.Close()
	}
}
