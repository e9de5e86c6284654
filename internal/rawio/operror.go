package rawio

import (
	"net"
	"os"
)

// WriteError is the error net.Conn's Write returns for the system call error
// errno met writing to c's socket: the shape callers of a raw write from a
// RawConn callback give back, so that errors.Is and the messages stay those
// of the net package.
func WriteError(c net.Conn, errno error) error {
	return &net.OpError{Op: "write", Net: "tcp", Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: os.NewSyscallError("write", errno)}
}
