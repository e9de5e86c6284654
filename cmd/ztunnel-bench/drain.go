package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// Connection state left behind between S3 runs.
//
// Every finished connection leaves state in the kernel for a while: a TIME_WAIT socket (60 s,
// not tunable) in the namespace that closed first, and, in the two pods whose redirection is
// NAT (istio-cni's REDIRECT), a conntrack entry in TIME_WAIT (120 s). S3 makes thousands of
// connections a second, so each path's run finds what the paths and repetitions before it left,
// a different amount for each path and repetition. Before every S3 run the harness removes that
// state in all its namespaces and checks it is gone, so that every run starts alike.

// nsState is the connection state one namespace holds.
type nsState struct {
	inUse     int // TCP sockets other than TIME_WAIT, listeners included (sockstat "inuse")
	timeWait  int // TCP sockets in TIME_WAIT (sockstat "tw")
	conntrack int // conntrack entries of the namespace, every state; -1 when unknown
}

// drainLimits is what a drained namespace may still hold: a few TIME_WAIT sockets from
// connections whose last packets were still in flight, and the conntrack entries of live
// connections. A live connection has at least one socket in the namespace (TCP "inuse": the
// pooled HBONE connections, which S5 grows to ~95, the proxies' listeners and their own);
// a finished one has none once its TIME_WAIT socket is gone. So conntrack entries may exceed
// the sockets in use by at most extraConntrack (entries of other protocols, races).
type drainLimits struct {
	timeWait       int
	extraConntrack int
}

// s3Limits are the limits an S3 run starts within.
var s3Limits = drainLimits{timeWait: 16, extraConntrack: 16}

// drainTimeout bounds the wait for drained namespaces; a run that starts without is noted.
const drainTimeout = 5 * time.Second

// parseSockstat reads the TCP line of /proc/net/sockstat
// ("TCP: inuse 5 orphan 0 tw 4096 alloc 40 mem 3").
func parseSockstat(b []byte) (inUse, timeWait int, err error) {
	for line := range bytes.SplitSeq(b, []byte{'\n'}) {
		rest, ok := bytes.CutPrefix(line, []byte("TCP:"))
		if !ok {
			continue
		}
		f := strings.Fields(string(rest))
		if len(f)%2 != 0 {
			return 0, 0, fmt.Errorf("sockstat: odd TCP line %q", line)
		}
		inUse, timeWait = -1, -1
		for i := 0; i < len(f); i += 2 {
			var dst *int
			switch f[i] {
			case "inuse":
				dst = &inUse
			case "tw":
				dst = &timeWait
			default:
				continue
			}
			n, err := strconv.Atoi(f[i+1])
			if err != nil || n < 0 {
				return 0, 0, fmt.Errorf("sockstat: %s %q: not a count", f[i], f[i+1])
			}
			*dst = n
		}
		if inUse < 0 || timeWait < 0 {
			return 0, 0, fmt.Errorf("sockstat: TCP line without inuse and tw: %q", line)
		}
		return inUse, timeWait, nil
	}
	return 0, 0, errors.New("sockstat: no TCP line")
}

// parseCount reads a sysctl file holding one non-negative integer.
func parseCount(b []byte) (int, error) {
	n, err := strconv.Atoi(string(bytes.TrimSpace(b)))
	if err != nil || n < 0 {
		return 0, fmt.Errorf("not a count: %q", b)
	}
	return n, nil
}

// undrained returns "" when every namespace is within lim, else which ones are not and why.
// names and states are parallel; a conntrack count of -1 (unknown) passes.
func undrained(names []string, states []nsState, lim drainLimits) string {
	var out []string
	for i, s := range states {
		if s.timeWait > lim.timeWait {
			out = append(out, fmt.Sprintf("%s: %d TIME_WAIT sockets", names[i], s.timeWait))
		}
		if s.conntrack > s.inUse+lim.extraConntrack {
			out = append(out, fmt.Sprintf("%s: %d conntrack entries for %d TCP sockets", names[i], s.conntrack, s.inUse))
		}
	}
	return strings.Join(out, ", ")
}

// state reads n's connection state from the kernel, on a thread inside n: /proc/thread-self/net
// and /proc/sys/net are the namespace of the reading thread.
func (n *netns) state() (nsState, error) {
	var s nsState
	err := n.do(func() error {
		b, err := os.ReadFile("/proc/thread-self/net/sockstat")
		if err != nil {
			return err
		}
		if s.inUse, s.timeWait, err = parseSockstat(b); err != nil {
			return err
		}
		b, err = os.ReadFile("/proc/sys/net/netfilter/nf_conntrack_count")
		switch {
		case errors.Is(err, fs.ErrNotExist):
			s.conntrack = -1 // no conntrack in this kernel
			return nil
		case err != nil:
			return err
		}
		s.conntrack, err = parseCount(b)
		return err
	})
	if err != nil {
		return s, fmt.Errorf("connection state of %s: %w", n.name, err)
	}
	return s, nil
}

// clearTimeWait removes n's TIME_WAIT sockets (ss -K: SOCK_DESTROY through sock_diag, which
// the kernel implements for TIME_WAIT sockets by ending their wait early).
func (n *netns) clearTimeWait() error {
	_, err := n.run("ss", "-K", "-t", "-n", "state", "time-wait")
	return err
}

// clearConntrack deletes n's conntrack entries of finished TCP connections (TIME_WAIT and
// CLOSE); entries of live connections, whose NAT the redirection needs, stay.
func (n *netns) clearConntrack(bin string) error {
	for _, st := range []string{"TIME_WAIT", "CLOSE"} {
		out, err := n.run(bin, "-D", "-p", "tcp", "--state", st)
		// conntrack exits 1 when nothing matched ("0 flow entries have been deleted").
		if err != nil && !strings.Contains(out, " 0 flow entries") {
			return err
		}
	}
	return nil
}

// resetConnState removes the connection state earlier runs left in every harness namespace
// and waits until it reads back within lim, at most drainTimeout. It returns the total
// TIME_WAIT sockets and conntrack entries found before the reset. Namespaces still above the
// limits at the timeout become a note, not an error; the run goes on.
func (h *harness) resetConnState(ctx context.Context, lim drainLimits) (tw, ct int, err error) {
	nets := h.topo.nets
	names := make([]string, len(nets))
	for i, n := range nets {
		names[i] = strings.TrimPrefix(n.name, h.topo.prefix+"-")
	}
	read := func() ([]nsState, error) {
		states := make([]nsState, len(nets))
		for i, n := range nets {
			var err error
			if states[i], err = n.state(); err != nil {
				return nil, err
			}
		}
		return states, nil
	}
	states, err := read()
	if err != nil {
		return 0, 0, err
	}
	for _, s := range states {
		tw += s.timeWait
		ct += max(s.conntrack, 0)
	}
	if h.conntrackBin == "" && !h.conntrackChecked {
		h.conntrackChecked = true
		bin, lerr := exec.LookPath("conntrack")
		h.conntrackBin = bin
		if lerr != nil {
			h.note("conntrack (Debian package conntrack) is not installed: S3 runs start with the " +
				"conntrack entries of finished connections that earlier runs left in the redirected pods")
		}
	}
	if h.conntrackBin == "" {
		lim.extraConntrack = int(^uint(0) >> 1) // it cannot be cleared, so do not wait for it
	}
	deadline := time.Now().Add(drainTimeout)
	for {
		for i, n := range nets {
			if states[i].timeWait > 0 {
				if err := n.clearTimeWait(); err != nil {
					return tw, ct, err
				}
			}
			if states[i].conntrack > 0 && h.conntrackBin != "" {
				if err := n.clearConntrack(h.conntrackBin); err != nil {
					return tw, ct, err
				}
			}
		}
		if states, err = read(); err != nil {
			return tw, ct, err
		}
		left := undrained(names, states, lim)
		if left == "" {
			return tw, ct, nil
		}
		if time.Now().After(deadline) {
			h.note(fmt.Sprintf("S3 run started after %v without drained namespaces: %s", drainTimeout, left))
			return tw, ct, nil
		}
		select {
		case <-ctx.Done():
			return tw, ct, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}
