package rawio

import (
	"syscall"
	"unsafe"
)

// Read reads from the non-blocking descriptor fd into p. bulk says the last
// read of fd that returned bytes returned at least Bulk: the call is made raw
// then.
func Read(fd int, p []byte, bulk bool) (int, error) {
	if !bulk {
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
	raceAfterRead(p[:r])
	return int(r), nil
}

// Write writes p to the non-blocking descriptor fd, raw when p holds at least
// Bulk bytes.
func Write(fd int, p []byte) (int, error) {
	if len(p) < Bulk {
		n, err := syscall.Write(fd, p)
		if err != nil {
			return 0, err
		}
		return n, nil
	}
	raceBeforeWrite(p)
	r, _, e := syscall.RawSyscall(syscall.SYS_WRITE, uintptr(fd), uintptr(unsafe.Pointer(unsafe.SliceData(p))), uintptr(len(p)))
	if e != 0 {
		return 0, e
	}
	return int(r), nil
}

// Splice moves up to n bytes from descriptor in to descriptor out, one of them
// a pipe, with flags (SPLICE_F_NONBLOCK makes the pipe's side non-blocking;
// the socket's side must be already). bulk says the call is expected to move
// at least Bulk bytes (into a pipe: the previous splice from in did; out of
// one: n is that large); the call is made raw then.
func Splice(in, out, n int, flags int, bulk bool) (int, error) {
	trap := syscall.Syscall6
	if bulk {
		trap = syscall.RawSyscall6
	}
	r, _, e := trap(syscall.SYS_SPLICE, uintptr(in), 0, uintptr(out), 0, uintptr(n), uintptr(flags))
	if e != 0 {
		return 0, e
	}
	return int(r), nil
}
