package metrics

import (
	"math"
	"os"
	"path/filepath"
	"strconv"
	"testing"
)

// TestOpenFDs: process_open_fds follows the descriptors the process opens and closes, by the
// directory's size and by counting its records (the path of kernels before 6.2), including
// with a buffer that takes a few records per read.
func TestOpenFDs(t *testing.T) {
	var p procReader
	p.init()
	count := func() (int, int) {
		t.Helper()
		n, err := p.openFDs()
		if err != nil {
			t.Fatal(err)
		}
		m, err := p.countEntries("/proc/self/fd")
		if err != nil {
			t.Fatal(err)
		}
		return n, m
	}
	n0, m0 := count()
	var files []*os.File
	for range 40 {
		f, err := os.Open(os.DevNull)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, f)
	}
	n1, m1 := count()
	if n1-n0 != 40 || m1-m0 != 40 {
		t.Errorf("40 files opened: open_fds %d -> %d, entries counted %d -> %d", n0, n1, m0, m1)
	}
	for _, f := range files {
		f.Close()
	}
	if n2, m2 := count(); n2 != n0 || m2 != m0 {
		t.Errorf("after closing them: open_fds %d, entries %d, want %d, %d", n2, m2, n0, m0)
	}

	dir := t.TempDir()
	for i := range 300 {
		if err := os.WriteFile(filepath.Join(dir, "entry-with-a-longer-name-"+strconv.Itoa(i)), nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	p.buf = make([]byte, 256)
	if n, err := p.countEntries(dir); err != nil || n != 300 {
		t.Errorf("countEntries of 300 files, 256-byte buffer = %d, %v", n, err)
	}
}

func TestParseNetOctets(t *testing.T) {
	const netstat = "TcpExt: SyncookiesSent SyncookiesRecv\nTcpExt: 0 3\n" +
		"IpExt: InNoRoutes InTruncatedPkts InMcastPkts OutMcastPkts InBcastPkts OutBcastPkts InOctets OutOctets InMcastOctets\n" +
		"IpExt: 0 0 0 0 0 0 77174270512 76835084679 0\n" +
		"MPTcpExt: MPCapableSYNRX\nMPTcpExt: 0\n"
	in, out, err := parseNetOctets([]byte(netstat))
	if err != nil || in != 77174270512 || out != 76835084679 {
		t.Errorf("parseNetOctets = %d, %d, %v", in, out, err)
	}
	for _, bad := range []string{
		"",
		"IpExt: InOctets OutOctets\n",            // no values
		"IpExt: InOctets OutOctets\nIpExt: 12\n", // a value short
		"IpExt: InOctets InMcastPkts\nIpExt: 12 4\n",  // no OutOctets
		"IpExt: InOctets OutOctets\nIpExt: 12 -4\n",   // not a number
		"TcpExt: InOctets OutOctets\nTcpExt: 12 14\n", // another protocol's
	} {
		if in, out, err := parseNetOctets([]byte(bad)); err == nil {
			t.Errorf("parseNetOctets(%q) = %d, %d, want an error", bad, in, out)
		}
	}
}

func TestParseUint(t *testing.T) {
	for in, want := range map[string]uint64{"0": 0, "42": 42, "18446744073709551615": math.MaxUint64} {
		if got, err := parseUint([]byte(in)); err != nil || got != want {
			t.Errorf("parseUint(%q) = %d, %v, want %d", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "-1", "1.5", "18446744073709551616", "99999999999999999999", "0x10"} {
		if got, err := parseUint([]byte(bad)); err == nil {
			t.Errorf("parseUint(%q) = %d, want an error", bad, got)
		}
	}
}

// BenchmarkOpenFDs counts 10,000 open descriptors from /proc/self/fd's records, as
// process_open_fds does where the directory's size is not the count (before Linux 6.2),
// against listing their names as procfs does there.
func BenchmarkOpenFDs(b *testing.B) {
	var files []*os.File
	for range 10000 {
		f, err := os.Open(os.DevNull)
		if err != nil {
			b.Skipf("opening 10,000 descriptors: %v", err)
		}
		files = append(files, f)
	}
	defer func() {
		for _, f := range files {
			f.Close()
		}
	}()
	b.Run("records", func(b *testing.B) {
		var p procReader
		p.init()
		b.ReportAllocs()
		for b.Loop() {
			if n, err := p.countEntries("/proc/self/fd"); err != nil || n < 10000 {
				b.Fatal(n, err)
			}
		}
	})
	b.Run("names", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			d, err := os.Open("/proc/self/fd")
			if err != nil {
				b.Fatal(err)
			}
			names, err := d.Readdirnames(-1)
			d.Close()
			if err != nil || len(names) < 10000 {
				b.Fatal(len(names), err)
			}
		}
	})
}
