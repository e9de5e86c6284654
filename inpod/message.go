package inpod

import (
	"errors"
	"fmt"
	"os"

	"google.golang.org/protobuf/proto"

	"github.com/ztunnel-go/ztunnel/inpod/zdspb"
)

// Kind is the type of a ZDS request.
type Kind int

// The requests istio-cni sends.
const (
	KindAdd Kind = iota + 1
	KindKeep
	KindDel
	KindSnapshotSent
)

func (k Kind) String() string {
	switch k {
	case KindAdd:
		return "add"
	case KindKeep:
		return "keep"
	case KindDel:
		return "del"
	case KindSnapshotSent:
		return "snapshot_sent"
	}
	return fmt.Sprintf("kind(%d)", int(k))
}

// WorkloadInfo is what istio-cni says about a pod.
type WorkloadInfo struct {
	Name           string `json:"name"`
	Namespace      string `json:"namespace"`
	ServiceAccount string `json:"serviceAccount"`
}

// Request is one decoded ZDS datagram.
type Request struct {
	Kind Kind
	UID  string        // add, keep, del
	Info *WorkloadInfo // add; nil when the sender left it out
	// Netns is the pod's network namespace (add only). Whoever holds the Request owns it.
	Netns *os.File
}

// maxDatagram bounds a ZDS datagram: a request is a uid and three names, far below this.
const maxDatagram = 4096

// Decode errors. A malformed datagram is answered with a NACK and ends the connection.
var (
	ErrTruncated  = errors.New("inpod: truncated datagram")
	ErrNoPayload  = errors.New("inpod: request without payload")
	ErrNoNetns    = errors.New("inpod: add without a netns descriptor")
	ErrManyFDs    = errors.New("inpod: more than one descriptor")
	ErrStrayFD    = errors.New("inpod: descriptor on a request other than add")
	ErrEmptyUID   = errors.New("inpod: empty uid")
	ErrNoWorkload = errors.New("inpod: add without workload_info")
)

// decodeRequest turns a datagram and the descriptors that came with it into a Request. It takes
// ownership of fds: on success the one descriptor of an add is in Request.Netns, every other
// descriptor (and all of them on error) is closed.
func decodeRequest(data []byte, fds []int, truncated bool) (Request, error) {
	closeAll := func() {
		for _, fd := range fds {
			closeFD(fd)
		}
	}
	if truncated {
		closeAll()
		return Request{}, ErrTruncated
	}
	var m zdspb.WorkloadRequest
	if err := proto.Unmarshal(data, &m); err != nil {
		closeAll()
		return Request{}, fmt.Errorf("inpod: decode request: %w", err)
	}
	var r Request
	switch p := m.Payload.(type) {
	case *zdspb.WorkloadRequest_Add:
		r.Kind, r.UID = KindAdd, p.Add.GetUid()
		if wi := p.Add.GetWorkloadInfo(); wi != nil {
			r.Info = &WorkloadInfo{Name: wi.GetName(), Namespace: wi.GetNamespace(), ServiceAccount: wi.GetServiceAccount()}
		}
	case *zdspb.WorkloadRequest_Keep:
		r.Kind, r.UID = KindKeep, p.Keep.GetUid()
	case *zdspb.WorkloadRequest_Del:
		r.Kind, r.UID = KindDel, p.Del.GetUid()
	case *zdspb.WorkloadRequest_SnapshotSent:
		r.Kind = KindSnapshotSent
	default:
		closeAll()
		return Request{}, ErrNoPayload
	}
	switch {
	case r.Kind == KindAdd && len(fds) == 0:
		return Request{}, ErrNoNetns
	case len(fds) > 1:
		closeAll()
		return Request{}, fmt.Errorf("%w: got %d", ErrManyFDs, len(fds))
	case r.Kind != KindAdd && len(fds) != 0:
		closeAll()
		return Request{}, fmt.Errorf("%w: %s", ErrStrayFD, r.Kind)
	case r.Kind != KindSnapshotSent && r.UID == "":
		closeAll()
		return Request{}, fmt.Errorf("%w in %s", ErrEmptyUID, r.Kind)
	}
	if r.Kind == KindAdd {
		r.Netns = os.NewFile(uintptr(fds[0]), "netns:"+r.UID)
	}
	return r, nil
}

// encodeAck encodes the answer to a request; a non-nil err makes it a NACK carrying its text.
func encodeAck(err error) []byte {
	ack := &zdspb.Ack{}
	if err != nil {
		ack.Error = err.Error()
	}
	b, _ := proto.Marshal(&zdspb.WorkloadResponse{Payload: &zdspb.WorkloadResponse_Ack{Ack: ack}})
	return b
}

// encodeHello encodes ztunnel's greeting.
func encodeHello() []byte {
	b, _ := proto.Marshal(&zdspb.ZdsHello{Version: zdspb.Version_V1})
	return b
}
