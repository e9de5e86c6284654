package fdtable

import (
	"fmt"
	"os"
	"strconv"

	"golang.org/x/sys/unix"

	"github.com/ztunnel-go/ztunnel/internal/procfs"
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
	path := "/proc/" + strconv.Itoa(pid) + "/status"
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	n, err := procfs.CountField(b, path, "FDSize:")
	return int(n), err
}
