package metrics

import (
	"bytes"
	"encoding/binary"
	"errors"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sys/unix"
)

// The process_* metrics of client_golang's process collector on Linux, read from system calls
// and /proc without procfs. Each figure means what procfs's reading of it means:
//   - process_cpu_seconds_total: user and system CPU time (getrusage; /proc/self/stat counts
//     the same time in 10 ms ticks);
//   - process_open_fds: the entries of /proc/self/fd (its size on Linux 6.2 and later);
//   - process_max_fds, process_virtual_memory_max_bytes: the soft RLIMIT_NOFILE and RLIMIT_AS
//     (unlimited is 2^64-1);
//   - process_virtual_memory_bytes, process_resident_memory_bytes: /proc/self/statm's size and
//     resident pages, which are /proc/self/stat's vsize and rss;
//   - process_start_time_seconds: the boot time plus the process's start in clock ticks,
//     read once;
//   - process_network_{receive,transmit}_bytes_total: InOctets and OutOctets of the network
//     namespace (IpExt in /proc/self/net/netstat).
//
// A figure that cannot be read is left out of that scrape; client_golang's collector would
// fail the whole scrape instead.

var (
	cpuDesc = prometheus.NewDesc("process_cpu_seconds_total",
		"Total user and system CPU time spent in seconds.", nil, nil)
	openFDsDesc  = prometheus.NewDesc("process_open_fds", "Number of open file descriptors.", nil, nil)
	maxFDsDesc   = prometheus.NewDesc("process_max_fds", "Maximum number of open file descriptors.", nil, nil)
	vsizeDesc    = prometheus.NewDesc("process_virtual_memory_bytes", "Virtual memory size in bytes.", nil, nil)
	maxVsizeDesc = prometheus.NewDesc("process_virtual_memory_max_bytes",
		"Maximum amount of virtual memory available in bytes.", nil, nil)
	rssDesc       = prometheus.NewDesc("process_resident_memory_bytes", "Resident memory size in bytes.", nil, nil)
	startTimeDesc = prometheus.NewDesc("process_start_time_seconds",
		"Start time of the process since unix epoch in seconds.", nil, nil)
	netInDesc = prometheus.NewDesc("process_network_receive_bytes_total",
		"Number of bytes received by the process over the network.", nil, nil)
	netOutDesc = prometheus.NewDesc("process_network_transmit_bytes_total",
		"Number of bytes sent by the process over the network.", nil, nil)
)

func describeProcess(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{cpuDesc, openFDsDesc, maxFDsDesc, vsizeDesc, maxVsizeDesc,
		rssDesc, startTimeDesc, netInDesc, netOutDesc} {
		ch <- d
	}
}

// userHZ is the unit of the clock-tick fields of /proc/PID/stat (USER_HZ: 100 on every Linux
// architecture Go supports, and what procfs assumes).
const userHZ = 100

// procReader reads the process figures. Owned by runtimeCollector and used under its lock.
type procReader struct {
	buf       []byte  // file contents and directory entries; grown when a file does not fit
	startTime float64 // seconds since the epoch; 0 when it could not be read (set by init)
	pageSize  float64 // immutable after init
}

func (p *procReader) init() {
	p.buf = make([]byte, 8<<10)
	p.pageSize = float64(unix.Getpagesize())
	p.startTime, _ = p.readStartTime()
}

func (p *procReader) collect(ch chan<- prometheus.Metric) {
	var ru unix.Rusage
	if unix.Getrusage(unix.RUSAGE_SELF, &ru) == nil {
		cpu := float64(ru.Utime.Sec+ru.Stime.Sec) + float64(ru.Utime.Usec+ru.Stime.Usec)/1e6
		ch <- prometheus.MustNewConstMetric(cpuDesc, prometheus.CounterValue, cpu)
	}
	if p.startTime != 0 {
		ch <- prometheus.MustNewConstMetric(startTimeDesc, prometheus.GaugeValue, p.startTime)
	}
	if n, err := p.openFDs(); err == nil {
		ch <- prometheus.MustNewConstMetric(openFDsDesc, prometheus.GaugeValue, float64(n))
	}
	var lim unix.Rlimit
	if unix.Getrlimit(unix.RLIMIT_NOFILE, &lim) == nil {
		ch <- prometheus.MustNewConstMetric(maxFDsDesc, prometheus.GaugeValue, float64(lim.Cur))
	}
	if unix.Getrlimit(unix.RLIMIT_AS, &lim) == nil {
		ch <- prometheus.MustNewConstMetric(maxVsizeDesc, prometheus.GaugeValue, float64(lim.Cur))
	}
	if size, resident, err := p.readStatm(); err == nil {
		ch <- prometheus.MustNewConstMetric(vsizeDesc, prometheus.GaugeValue, float64(size)*p.pageSize)
		ch <- prometheus.MustNewConstMetric(rssDesc, prometheus.GaugeValue, float64(resident)*p.pageSize)
	}
	if in, out, err := p.readNetOctets(); err == nil {
		ch <- prometheus.MustNewConstMetric(netInDesc, prometheus.CounterValue, float64(in))
		ch <- prometheus.MustNewConstMetric(netOutDesc, prometheus.CounterValue, float64(out))
	}
}

// readFile reads the whole of a /proc file into p.buf, growing it for a larger file, and
// returns the bytes read.
func (p *procReader) readFile(path string) ([]byte, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	defer unix.Close(fd)
	n := 0
	for {
		if n == len(p.buf) {
			p.buf = append(p.buf, make([]byte, len(p.buf))...)
		}
		m, err := unix.Read(fd, p.buf[n:])
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, err
		}
		if m == 0 {
			return p.buf[:n], nil
		}
		n += m
	}
}

var errFormat = errors.New("unexpected format")

// readStatm returns the process's size and resident set in pages.
func (p *procReader) readStatm() (size, resident uint64, err error) {
	b, err := p.readFile("/proc/self/statm")
	if err != nil {
		return 0, 0, err
	}
	f1, rest := nextField(b)
	f2, _ := nextField(rest)
	size, err1 := parseUint(f1)
	resident, err2 := parseUint(f2)
	if err1 != nil || err2 != nil {
		return 0, 0, errFormat
	}
	return size, resident, nil
}

// readStartTime returns when the process started, in seconds since the epoch: the boot time
// (btime in /proc/stat) plus the start time in clock ticks after boot (the 22nd field of
// /proc/self/stat).
func (p *procReader) readStartTime() (float64, error) {
	b, err := p.readFile("/proc/self/stat")
	if err != nil {
		return 0, err
	}
	// The second field, the command name in parentheses, may hold spaces and parentheses: the
	// fields after it start after the last ')'. The field after it is the 3rd.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, errFormat
	}
	rest := b[i+1:]
	var f []byte
	for range 22 - 2 {
		f, rest = nextField(rest)
	}
	ticks, err := parseUint(f)
	if err != nil {
		return 0, errFormat
	}
	b, err = p.readFile("/proc/stat")
	if err != nil {
		return 0, err
	}
	for len(b) > 0 {
		var line []byte
		line, b, _ = bytes.Cut(b, []byte{'\n'})
		if v, ok := bytes.CutPrefix(line, []byte("btime ")); ok {
			btime, err := parseUint(bytes.TrimSpace(v))
			if err != nil {
				return 0, errFormat
			}
			return float64(btime) + float64(ticks)/userHZ, nil
		}
	}
	return 0, errFormat
}

// readNetOctets returns InOctets and OutOctets of the network namespace.
func (p *procReader) readNetOctets() (in, out uint64, err error) {
	b, err := p.readFile("/proc/self/net/netstat")
	if err != nil {
		return 0, 0, err
	}
	return parseNetOctets(b)
}

// parseNetOctets finds InOctets and OutOctets in the IpExt lines of /proc/PID/net/netstat: a
// line of names and then a line of values.
func parseNetOctets(b []byte) (in, out uint64, err error) {
	prefix := []byte("IpExt:")
	var names []byte
	for len(b) > 0 {
		var line []byte
		line, b, _ = bytes.Cut(b, []byte{'\n'})
		rest, ok := bytes.CutPrefix(line, prefix)
		if !ok {
			continue
		}
		if names == nil {
			names = rest
			continue
		}
		values := rest
		found := 0
		for len(names) > 0 && len(values) > 0 {
			var name, value []byte
			name, names = nextField(names)
			value, values = nextField(values)
			switch string(name) {
			case "InOctets":
				in, err = parseUint(value)
				found++
			case "OutOctets":
				out, err = parseUint(value)
				found++
			}
			if err != nil {
				return 0, 0, errFormat
			}
		}
		if found != 2 {
			return 0, 0, errFormat
		}
		return in, out, nil
	}
	return 0, 0, errFormat
}

// openFDs counts the process's open descriptors: the size of /proc/self/fd where the kernel
// reports it (Linux 6.2 and later), else its entries, counted from the raw directory records
// without making a name of each. Only the second way counts the descriptor that lists the
// directory, as procfs's two ways do.
func (p *procReader) openFDs() (int, error) {
	var st unix.Stat_t
	if err := unix.Stat("/proc/self/fd", &st); err == nil && st.Size > 0 {
		return int(st.Size), nil
	}
	return p.countEntries("/proc/self/fd")
}

// countEntries counts the entries of the directory dir other than "." and "..", with the
// directory's own descriptor open while it does.
func (p *procReader) countEntries(dir string) (int, error) {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return 0, err
	}
	defer unix.Close(fd)
	n := 0
	for {
		m, err := unix.Getdents(fd, p.buf)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return 0, err
		}
		if m == 0 {
			return n, nil
		}
		n += countDirents(p.buf[:m])
	}
}

// countDirents counts the entries of a buffer of linux_dirent64 records other than "." and
// "..". A record is an 8-byte inode, an 8-byte offset, a 2-byte record length, a type byte
// and the name, NUL-terminated.
func countDirents(b []byte) int {
	const nameOff = 19
	n := 0
	for len(b) >= nameOff {
		reclen := int(binary.NativeEndian.Uint16(b[16:18]))
		if reclen < nameOff || reclen > len(b) {
			break
		}
		name := b[nameOff:reclen]
		if i := bytes.IndexByte(name, 0); i >= 0 {
			name = name[:i]
		}
		if string(name) != "." && string(name) != ".." {
			n++
		}
		b = b[reclen:]
	}
	return n
}

// nextField returns the first space-separated field of b and what follows it.
func nextField(b []byte) (field, rest []byte) {
	b = bytes.TrimLeft(b, " \t\n")
	i := bytes.IndexAny(b, " \t\n")
	if i < 0 {
		return b, nil
	}
	return b[:i], b[i:]
}

// parseUint parses a decimal number without making a string of it.
func parseUint(b []byte) (uint64, error) {
	if len(b) == 0 || len(b) > 20 {
		return 0, errFormat
	}
	var n uint64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, errFormat
		}
		d := uint64(c - '0')
		if n > (1<<64-1-d)/10 {
			return 0, errFormat
		}
		n = n*10 + d
	}
	return n, nil
}
