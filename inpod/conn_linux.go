package inpod

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"

	"golang.org/x/sys/unix"
)

// oobSize leaves room for several descriptors, so that a sender passing two is seen passing two
// (and NACKed) rather than silently truncated.
var oobSize = unix.CmsgSpace(8 * 4)

// dialZDS connects to istio-cni's SOCK_SEQPACKET socket.
func dialZDS(ctx context.Context, path string) (*net.UnixConn, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "unixpacket", path)
	if err != nil {
		return nil, err
	}
	return c.(*net.UnixConn), nil
}

// readRequest reads one datagram into buf (and its ancillary data into oob) and decodes it. A
// zero-length datagram is the peer's orderly close (io.EOF), as for any SOCK_SEQPACKET socket.
// Transport errors are returned as they are; decoding errors are the ones of decodeRequest.
// Descriptors received with a datagram are never leaked.
func readRequest(uc *net.UnixConn, buf, oob []byte) (Request, error) {
	n, oobn, flags, _, err := uc.ReadMsgUnix(buf, oob)
	if err != nil {
		return Request{}, err
	}
	fds, perr := parseRights(oob[:oobn])
	if n == 0 && len(fds) == 0 && perr == nil {
		return Request{}, io.EOF
	}
	if perr != nil {
		for _, fd := range fds {
			unix.Close(fd)
		}
		return Request{}, perr
	}
	return decodeRequest(buf[:n], fds, flags&(unix.MSG_TRUNC|unix.MSG_CTRUNC) != 0)
}

// parseRights returns every descriptor carried by SCM_RIGHTS messages in oob.
func parseRights(oob []byte) ([]int, error) {
	if len(oob) == 0 {
		return nil, nil
	}
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return nil, fmt.Errorf("inpod: control message: %w", err)
	}
	var fds []int
	for _, m := range msgs {
		if m.Header.Level != unix.SOL_SOCKET || m.Header.Type != unix.SCM_RIGHTS {
			continue
		}
		if len(m.Data)%4 != 0 {
			// x/sys's ParseUnixRights indexes past its slice on such input; the kernel never
			// sends it, but a parser must not panic.
			return fds, fmt.Errorf("inpod: SCM_RIGHTS payload of %d bytes", len(m.Data))
		}
		got, err := unix.ParseUnixRights(&m)
		if err != nil {
			return fds, fmt.Errorf("inpod: SCM_RIGHTS: %w", err)
		}
		fds = append(fds, got...)
	}
	return fds, nil
}

func closeFD(fd int) { unix.Close(fd) }

// NetnsID identifies a network namespace: the device and inode of its nsfs file. Two
// descriptors of the same namespace have equal IDs; a pod sandbox recreated under the same UID
// gets a new one.
type NetnsID struct {
	Dev, Ino uint64
}

// netnsIDOf returns the identity of the namespace (or any file) f refers to.
func netnsIDOf(f *os.File) (NetnsID, error) {
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return NetnsID{}, fmt.Errorf("inpod: fstat netns: %w", os.NewSyscallError("fstat", err))
	}
	return NetnsID{Dev: uint64(st.Dev), Ino: st.Ino}, nil
}
