//go:build race

package rawio

import (
	"runtime"
	"unsafe"
)

// The race detector learns of the kernel's accesses to p as syscall.Read and
// syscall.Write tell it of theirs, and of the order that a write then a read
// of a descriptor put between goroutines (through ioSync, as the syscall
// package does with its own).

var ioSync int64

func raceAfterRead(p []byte) {
	if len(p) > 0 {
		runtime.RaceWriteRange(unsafe.Pointer(unsafe.SliceData(p)), len(p))
	}
	runtime.RaceAcquire(unsafe.Pointer(&ioSync))
}

func raceBeforeWrite(p []byte) {
	runtime.RaceReleaseMerge(unsafe.Pointer(&ioSync))
	if len(p) > 0 {
		runtime.RaceReadRange(unsafe.Pointer(unsafe.SliceData(p)), len(p))
	}
}
