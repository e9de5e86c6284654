package netutil

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/ztunnel-go/ztunnel/internal/procfs"
)

// BenchmarkIdleSocketFootprint measures the resident memory a process holds per idle accepted
// TCP socket in two forms: as the *net.TCPConn the relay keeps today, and as a bare
// descriptor, the form an idle direction could take if the relay detached its sockets from
// Go's net package while parked (the netFD, its addresses, the netpoller descriptor and the
// finalizer record are the difference). Each op starts a fresh process (this test binary with
// footprintChildEnv set: see TestMain) that accepts footprintBatch() connections dialed from
// here, so memory a previous form left to the runtime's free lists is not reused; run it
// alone, e.g.
// `go test -run '^$' -bench IdleSocketFootprint -benchtime 3x ./netutil`.
func BenchmarkIdleSocketFootprint(b *testing.B) {
	batch := footprintBatch()
	if batch == 0 {
		b.Skip("SKIP: RLIMIT_NOFILE leaves room for fewer than 500 sockets per process")
	}
	for _, form := range []string{"tcpconn", "fd"} {
		b.Run(form, func(b *testing.B) {
			var perSocket float64
			for range b.N {
				perSocket += footprintOf(b, form, batch)
			}
			b.ReportMetric(perSocket/float64(b.N), "B/socket")
		})
	}
}

const (
	// maxFootprintBatch is the most sockets the child holds: enough that a socket's share
	// stands out of the page-sized steps RSS moves in. The file limit may lower it.
	maxFootprintBatch = 4000
	// footprintChildEnv names the form the child keeps its sockets in;
	// footprintBatchEnv how many sockets it accepts.
	footprintChildEnv = "NETUTIL_FOOTPRINT_CHILD"
	footprintBatchEnv = "NETUTIL_FOOTPRINT_BATCH"
)

// footprintBatch is the sockets one child holds: maxFootprintBatch, or fewer when the file
// limit (Go raises the soft limit to the hard one at start) leaves less room; 0 when it
// leaves too little for a figure worth reading.
func footprintBatch() int {
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		return 0
	}
	n := min(maxFootprintBatch, int(min(lim.Cur, 1<<20))-100)
	if n < 500 {
		return 0
	}
	return n
}

// footprintOf runs one child holding batch sockets in form and returns its RSS added per
// socket.
func footprintOf(b *testing.B, form string, batch int) float64 {
	b.Helper()
	cmd := exec.Command(os.Args[0]) // TestMain runs the child
	cmd.Env = append(os.Environ(), footprintChildEnv+"="+form, footprintBatchEnv+"="+strconv.Itoa(batch))
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	defer cmd.Wait()
	defer stdin.Close() // the child exits when its stdin closes
	out := bufio.NewReader(stdout)
	addr, err := out.ReadString('\n')
	if err != nil {
		b.Fatalf("child: %v", err)
	}
	conns := make([]net.Conn, 0, batch)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for range batch {
		c, err := net.Dial("tcp", strings.TrimSpace(addr))
		if err != nil {
			b.Fatal(err)
		}
		conns = append(conns, c)
	}
	line, err := out.ReadString('\n')
	if err != nil {
		b.Fatalf("child: %v", err)
	}
	v, err := strconv.ParseFloat(strings.TrimSpace(line), 64)
	if err != nil {
		b.Fatalf("child printed %q: %v", line, err)
	}
	return v
}

// TestMain runs the package's tests, or, with footprintChildEnv set, only the child of
// BenchmarkIdleSocketFootprint.
func TestMain(m *testing.M) {
	if form := os.Getenv(footprintChildEnv); form != "" {
		if err := footprintChild(form); err != nil {
			fmt.Fprintln(os.Stderr, "footprint child:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// footprintChild prints its listener's address, accepts the batch of connections asked and
// keeps each in form, prints the RSS added per socket, and waits for its stdin to close.
func footprintChild(form string) error {
	batch, err := strconv.Atoi(os.Getenv(footprintBatchEnv))
	if err != nil || batch <= 0 {
		return fmt.Errorf("%s=%q: want a positive count", footprintBatchEnv, os.Getenv(footprintBatchEnv))
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	defer ln.Close()
	before, err := settledRSS()
	if err != nil {
		return err
	}
	fmt.Println(ln.Addr())
	var keep []net.Conn
	var fds []int
	defer func() {
		for _, c := range keep {
			c.Close()
		}
		for _, fd := range fds {
			unix.Close(fd)
		}
	}()
	for range batch {
		c, err := ln.Accept()
		if err != nil {
			return err
		}
		if form == "tcpconn" {
			keep = append(keep, c)
			continue
		}
		// Detach: a duplicate descriptor outlives the *net.TCPConn, whose Close releases
		// its netpoller registration and objects but not the socket.
		raw, err := c.(*net.TCPConn).SyscallConn()
		if err != nil {
			return err
		}
		var fd int
		var derr error
		if err := raw.Control(func(s uintptr) { fd, derr = unix.FcntlInt(s, unix.F_DUPFD_CLOEXEC, 0) }); err != nil {
			return err
		}
		c.Close()
		if derr != nil {
			return derr
		}
		fds = append(fds, fd)
	}
	after, err := settledRSS()
	if err != nil {
		return err
	}
	fmt.Println(float64(after-before) / float64(batch))
	_, err = io.Copy(io.Discard, os.Stdin)
	return err
}

// settledRSS collects, returns free pages to the system and reads the process's VmRSS.
func settledRSS() (int, error) {
	runtime.GC()
	debug.FreeOSMemory()
	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, err
	}
	rss, err := procfs.KBField(status, "/proc/self/status", "VmRSS:")
	return int(rss), err
}
