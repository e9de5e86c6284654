package procfs

import "testing"

func TestCountField(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
		ok   bool
	}{
		{"Name:\tztunnel\nFDSize:\t16384\nGid:\t0\n", 16384, true},
		{"FDSize: 64", 64, true},
		{"Name:\tztunnel\n", 0, false},
		{"FDSize:\tmany\n", 0, false},
		{"FDSize:\t-1\n", 0, false},
		{"FDSize:\t64 kB\n", 0, false},
	} {
		got, err := CountField([]byte(tc.in), "status", "FDSize:")
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("CountField(%q) = %d, %v; want %d, ok %v", tc.in, got, err, tc.want, tc.ok)
		}
	}
}

func TestKBField(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
		ok   bool
	}{
		{"Name:\tztunnel\nVmRSS:\t    1234 kB\n", 1234 << 10, true},
		{"VmRSS:\t1234\n", 0, false},
		{"VmRSS:\t-1 kB\n", 0, false},
		{"Name:\tztunnel\n", 0, false},
	} {
		got, err := KBField([]byte(tc.in), "status", "VmRSS:")
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("KBField(%q) = %d, %v; want %d, ok %v", tc.in, got, err, tc.want, tc.ok)
		}
	}
}
