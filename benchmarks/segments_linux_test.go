package benchmarks

import (
	"context"
	"io"
	"net"
	"strconv"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// BenchmarkLoopbackSegments moves bytes over one loopback TCP connection in loopback's own
// segments and in the 1448-byte segments that the HBONE path's connections inside a pod run in
// (an application there advertises an MSS of 1460, since it sees its peer's pod address, which
// routes over the pod's interface: benchmarks/README.md, "The segment size inside the pods").
// Besides the throughput it reports the CPU time of the whole process (both ends of the
// connection, user and system) per GiB.
func BenchmarkLoopbackSegments(b *testing.B) {
	for _, mss := range []int{0, 1460} {
		name := "mss=loopback"
		if mss != 0 {
			name = "mss=" + strconv.Itoa(mss)
		}
		b.Run(name, func(b *testing.B) { benchSegments(b, mss) })
	}
}

func benchSegments(b *testing.B, mss int) {
	control := func(_, _ string, c syscall.RawConn) error {
		if mss == 0 {
			return nil
		}
		var serr error
		if err := c.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_MAXSEG, mss) }); err != nil {
			return err
		}
		return serr
	}
	lc := net.ListenConfig{Control: control}
	l, err := lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	read := make(chan error, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			read <- err
			return
		}
		defer c.Close()
		_, err = io.CopyBuffer(io.Discard, c, make([]byte, 64<<10))
		read <- err
	}()
	d := net.Dialer{Control: control, Timeout: 10 * time.Second}
	c, err := d.Dial("tcp", l.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	buf := make([]byte, 64<<10)
	b.SetBytes(int64(len(buf)))
	b.ReportAllocs()
	cpu0 := processCPU()
	for b.Loop() { // the timer runs inside the loop only
		if _, err := c.Write(buf); err != nil {
			b.Fatal(err)
		}
	}
	c.Close()
	if err := <-read; err != nil {
		b.Fatal(err)
	}
	gib := float64(b.N) * float64(len(buf)) / (1 << 30)
	b.ReportMetric((processCPU()-cpu0).Seconds()/gib, "cpu-s/GiB")
}

// processCPU is the user and system time of the process so far.
func processCPU() time.Duration {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
