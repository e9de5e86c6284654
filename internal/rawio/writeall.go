package rawio

import "syscall"

// WriteAll writes p to the non-blocking descriptor fd until it is all written, the socket is
// full or a write fails, retrying writes that a signal interrupted. It returns how many bytes
// it wrote and nil when that is all of p, syscall.EAGAIN when the socket filled first (the
// caller waits for writability and calls it again with the rest), or the failed write's error.
// It is the loop of a RawConn write callback; the callback keeps the position and the error.
func WriteAll(fd int, p []byte) (int, error) {
	done := 0
	for done < len(p) {
		n, err := Write(fd, p[done:])
		switch err {
		case nil:
			done += n
		case syscall.EINTR:
		default:
			return done, err
		}
	}
	return done, nil
}
