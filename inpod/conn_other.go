//go:build !linux

package inpod

import (
	"context"
	"net"
	"os"

	"github.com/ztunnel-go/ztunnel/netutil"
)

var oobSize = 64

func dialZDS(ctx context.Context, path string) (*net.UnixConn, error) {
	return nil, netutil.ErrUnsupported
}

func readRequest(uc *net.UnixConn, buf, oob []byte) (Request, error) {
	return Request{}, netutil.ErrUnsupported
}

func parseRights(oob []byte) ([]int, error) { return nil, netutil.ErrUnsupported }

func closeFD(fd int) {}

// NetnsID identifies a network namespace (Linux only).
type NetnsID struct {
	Dev, Ino uint64
}

func netnsIDOf(f *os.File) (NetnsID, error) { return NetnsID{}, netutil.ErrUnsupported }
