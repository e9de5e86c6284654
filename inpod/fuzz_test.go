package inpod

import (
	"testing"

	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"

	"github.com/ztunnel-go/ztunnel/inpod/zdspb"
)

// FuzzDecodeRequest feeds arbitrary datagrams to the decoder: it must never panic, and a
// successful decode must be one of the four requests with the invariants the state machine
// relies on.
func FuzzDecodeRequest(f *testing.F) {
	for _, m := range []proto.Message{add("pod-uid"), keep("k"), del("d"), snapshotSent, &zdspb.WorkloadRequest{}} {
		b, _ := proto.Marshal(m)
		f.Add(b, false)
	}
	f.Add([]byte{0xff, 0x01}, false)
	f.Add([]byte{0x2a, 0x00}, true)
	f.Fuzz(func(t *testing.T, data []byte, truncated bool) {
		r, err := decodeRequest(data, nil, truncated)
		if err != nil {
			return
		}
		if truncated {
			t.Fatal("truncated datagram accepted")
		}
		switch r.Kind {
		case KindAdd:
			t.Fatal("add accepted without a descriptor")
		case KindKeep, KindDel:
			if r.UID == "" {
				t.Fatal("empty uid accepted")
			}
		case KindSnapshotSent:
		default:
			t.Fatalf("unknown kind %v", r.Kind)
		}
	})
}

// FuzzParseRights feeds arbitrary ancillary data to the SCM_RIGHTS parser.
func FuzzParseRights(f *testing.F) {
	f.Add(unix.UnixRights(0))
	f.Add(unix.UnixRights(0, 1))
	f.Add([]byte{})
	f.Add([]byte{1, 2, 3})
	f.Fuzz(func(t *testing.T, oob []byte) {
		fds, _ := parseRights(oob)
		_ = fds // never closed: they are the fuzz input's numbers, not descriptors we own
	})
}
