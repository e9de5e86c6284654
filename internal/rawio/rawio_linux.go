package rawio

import (
	"syscall"
	"unsafe"
)

// Read reads from the non-blocking descriptor fd into p.
func Read(fd int, p []byte) (int, error) {
	if raceEnabled {
		n, err := syscall.Read(fd, p)
		if err != nil {
			return 0, err
		}
		return n, nil
	}
	r, _, e := syscall.RawSyscall(syscall.SYS_READ, uintptr(fd), uintptr(unsafe.Pointer(unsafe.SliceData(p))), uintptr(len(p)))
	if e != 0 {
		return 0, e
	}
	return int(r), nil
}

// Write writes p to the non-blocking descriptor fd.
func Write(fd int, p []byte) (int, error) {
	if raceEnabled {
		n, err := syscall.Write(fd, p)
		if err != nil {
			return 0, err
		}
		return n, nil
	}
	r, _, e := syscall.RawSyscall(syscall.SYS_WRITE, uintptr(fd), uintptr(unsafe.Pointer(unsafe.SliceData(p))), uintptr(len(p)))
	if e != 0 {
		return 0, e
	}
	return int(r), nil
}

// Splice moves up to n bytes from descriptor in to descriptor out, one of them
// a pipe, with flags; SPLICE_F_NONBLOCK must be among them (it makes the
// pipe's side non-blocking; the socket's side must be already).
func Splice(in, out, n int, flags int) (int, error) {
	r, _, e := syscall.RawSyscall6(syscall.SYS_SPLICE, uintptr(in), 0, uintptr(out), 0, uintptr(n), uintptr(flags))
	if e != 0 {
		return 0, e
	}
	return int(r), nil
}
