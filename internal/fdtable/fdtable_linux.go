package fdtable

import (
	"bytes"
	"fmt"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// Reserve grows the descriptor table to at least n slots, or to the soft RLIMIT_NOFILE when
// that is lower (no descriptor at or above it can be opened, so no slot above it is ever
// used). It opens one descriptor at the top of that range and closes it again, so it leaves
// no descriptor open. A table already as large is left as it is.
func Reserve(n int) error {
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		return os.NewSyscallError("getrlimit", err)
	}
	if lim.Cur < uint64(n) {
		n = int(lim.Cur)
	}
	if n <= 0 {
		return nil
	}
	fd, err := unix.Eventfd(0, unix.EFD_CLOEXEC)
	if err != nil {
		return os.NewSyscallError("eventfd", err)
	}
	// F_DUPFD takes the lowest free descriptor at or above its argument, so the table must
	// grow to hold n-1 unless it already does.
	top, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, n-1)
	unix.Close(fd)
	if err != nil {
		return fmt.Errorf("reserving %d descriptor slots: %w", n, os.NewSyscallError("fcntl", err))
	}
	unix.Close(top)
	return nil
}

// SizeOf returns the number of slots in the descriptor table of process pid (FDSize in
// /proc/<pid>/status).
func SizeOf(pid int) (int, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, err
	}
	return parseFDSize(b)
}

// parseFDSize reads the FDSize line of a /proc/<pid>/status file.
func parseFDSize(status []byte) (int, error) {
	for line := range bytes.SplitSeq(status, []byte{'\n'}) {
		v, ok := bytes.CutPrefix(line, []byte("FDSize:"))
		if !ok {
			continue
		}
		n, err := strconv.Atoi(string(bytes.TrimSpace(v)))
		if err != nil || n < 0 {
			return 0, fmt.Errorf("status: malformed FDSize line %q", line)
		}
		return n, nil
	}
	return 0, fmt.Errorf("status: no FDSize line")
}
