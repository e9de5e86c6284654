// Package zdstest is a ZDS server that plays istio-cni's node agent for tests and the demo: it
// listens on a unix SOCK_SEQPACKET socket, gives every ztunnel that connects a snapshot of the
// pods it knows (each AddWorkload carrying the pod's netns descriptor, opened from a path such
// as /var/run/netns/<name>), then forwards Add and Del to every connected ztunnel, waiting for
// each answer and recording it.
package zdstest

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"

	"github.com/ztunnel-go/ztunnel/inpod/zdspb"
)

// Pod is a pod the server announces.
type Pod struct {
	UID                             string
	Name, Namespace, ServiceAccount string
	// NetnsPath is opened for each Add and its descriptor passed by SCM_RIGHTS.
	NetnsPath string
}

// Ack is one recorded answer from a ztunnel.
type Ack struct {
	Conn  int    // connection number, from 1, in accept order
	Kind  string // "add", "del" or "snapshot_sent"
	UID   string
	Error string // empty for an ACK, the reason for a NACK
}

// ackTimeout bounds the wait for one answer.
const ackTimeout = 10 * time.Second

// Server is the fake node agent. Its methods are safe for concurrent use.
type Server struct {
	log *slog.Logger
	l   *net.UnixListener

	mu     sync.Mutex
	order  []string       // pod UIDs in announce order; guarded by mu
	pods   map[string]Pod // guarded by mu
	conns  map[int]*conn  // connections past their hello, which receive live requests; guarded by mu
	all    map[int]*conn  // every accepted connection, closed by Close; guarded by mu
	acks   []Ack          // guarded by mu
	nconns int            // guarded by mu
	closed bool           // guarded by mu

	wg sync.WaitGroup // accept loop and per-connection snapshot goroutines
}

// conn is one ztunnel connection; mu serialises request/answer exchanges on it.
type conn struct {
	id int
	mu sync.Mutex
	uc *net.UnixConn
}

// Listen removes a stale socket at path, listens there and starts accepting.
func Listen(path string, log *slog.Logger) (*Server, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	os.Remove(path)
	l, err := net.ListenUnix("unixpacket", &net.UnixAddr{Name: path, Net: "unixpacket"})
	if err != nil {
		return nil, fmt.Errorf("zdstest: listen %s: %w", path, err)
	}
	s := &Server{log: log, l: l, pods: make(map[string]Pod), conns: make(map[int]*conn), all: make(map[int]*conn)}
	s.wg.Go(s.acceptLoop)
	return s, nil
}

func (s *Server) acceptLoop() {
	for {
		uc, err := s.l.AcceptUnix()
		if err != nil {
			return
		}
		s.mu.Lock()
		s.nconns++
		c := &conn{id: s.nconns, uc: uc}
		s.all[c.id] = c
		s.mu.Unlock()
		s.wg.Go(func() { s.handshake(c) })
	}
}

// handshake reads the hello and sends the snapshot. Live requests reach c only after it.
func (s *Server) handshake(c *conn) {
	buf := make([]byte, 1024)
	c.uc.SetReadDeadline(time.Now().Add(ackTimeout))
	n, err := c.uc.Read(buf)
	var hello zdspb.ZdsHello
	if err == nil {
		err = proto.Unmarshal(buf[:n], &hello)
	}
	if err != nil || hello.Version != zdspb.Version_V1 {
		s.log.Warn("zdstest: bad hello", "conn", c.id, "err", err, "version", hello.Version)
		c.uc.Close()
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		c.uc.Close()
		return
	}
	pods := make([]Pod, 0, len(s.order))
	for _, uid := range s.order {
		pods = append(pods, s.pods[uid])
	}
	s.conns[c.id] = c
	s.mu.Unlock()
	for _, p := range pods {
		if err := s.exchange(c, "add", p.UID, addRequest(p), p.NetnsPath); err != nil {
			s.drop(c, err)
			return
		}
	}
	if err := s.exchange(c, "snapshot_sent", "", &zdspb.WorkloadRequest{Payload: &zdspb.WorkloadRequest_SnapshotSent{SnapshotSent: &zdspb.SnapshotSent{}}}, ""); err != nil {
		s.drop(c, err)
	}
}

func addRequest(p Pod) *zdspb.WorkloadRequest {
	return &zdspb.WorkloadRequest{Payload: &zdspb.WorkloadRequest_Add{Add: &zdspb.AddWorkload{
		Uid:          p.UID,
		WorkloadInfo: &zdspb.WorkloadInfo{Name: p.Name, Namespace: p.Namespace, ServiceAccount: p.ServiceAccount},
	}}}
}

// exchange sends one request (with the netns at netnsPath when set) and records the answer.
// c.mu must be held.
func (s *Server) exchange(c *conn, kind, uid string, req *zdspb.WorkloadRequest, netnsPath string) error {
	b, err := proto.Marshal(req)
	if err != nil {
		return err
	}
	var oob []byte
	if netnsPath != "" {
		f, err := os.Open(netnsPath)
		if err != nil {
			return fmt.Errorf("zdstest: open netns: %w", err)
		}
		defer f.Close()
		oob = unix.UnixRights(int(f.Fd()))
	}
	if _, _, err := c.uc.WriteMsgUnix(b, oob, nil); err != nil {
		return fmt.Errorf("zdstest: send %s: %w", kind, err)
	}
	buf := make([]byte, 1024)
	c.uc.SetReadDeadline(time.Now().Add(ackTimeout))
	n, err := c.uc.Read(buf)
	if err != nil {
		return fmt.Errorf("zdstest: answer to %s %s: %w", kind, uid, err)
	}
	var resp zdspb.WorkloadResponse
	if err := proto.Unmarshal(buf[:n], &resp); err != nil || resp.GetAck() == nil {
		return fmt.Errorf("zdstest: bad answer to %s %s: %v", kind, uid, err)
	}
	a := Ack{Conn: c.id, Kind: kind, UID: uid, Error: resp.GetAck().GetError()}
	s.mu.Lock()
	s.acks = append(s.acks, a)
	s.mu.Unlock()
	if a.Error != "" {
		return &NackError{Ack: a}
	}
	return nil
}

// NackError is a NACK received from a ztunnel.
type NackError struct{ Ack Ack }

func (e *NackError) Error() string {
	return fmt.Sprintf("zdstest: conn %d NACKed %s %s: %s", e.Ack.Conn, e.Ack.Kind, e.Ack.UID, e.Ack.Error)
}

// drop forgets a connection after a transport error (a NACK keeps it).
func (s *Server) drop(c *conn, err error) {
	var nack *NackError
	if errors.As(err, &nack) {
		s.log.Warn("zdstest: NACK", "err", err)
		return
	}
	s.log.Warn("zdstest: dropping connection", "conn", c.id, "err", err)
	s.mu.Lock()
	delete(s.conns, c.id)
	s.mu.Unlock()
	c.uc.Close()
}

// broadcast runs one exchange on every connection and joins the errors.
func (s *Server) broadcast(kind, uid string, req *zdspb.WorkloadRequest, netnsPath string) error {
	s.mu.Lock()
	conns := make([]*conn, 0, len(s.conns))
	for _, c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	var errs []error
	for _, c := range conns {
		c.mu.Lock()
		err := s.exchange(c, kind, uid, req, netnsPath)
		c.mu.Unlock()
		if err != nil {
			s.drop(c, err)
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Add announces p to every connected ztunnel (and to later ones in their snapshot). It returns
// the NACKs and transport errors it got.
func (s *Server) Add(p Pod) error {
	s.mu.Lock()
	if _, ok := s.pods[p.UID]; !ok {
		s.order = append(s.order, p.UID)
	}
	s.pods[p.UID] = p
	s.mu.Unlock()
	return s.broadcast("add", p.UID, addRequest(p), p.NetnsPath)
}

// Del withdraws a pod from every connected ztunnel.
func (s *Server) Del(uid string) error {
	s.mu.Lock()
	delete(s.pods, uid)
	for i, u := range s.order {
		if u == uid {
			s.order = append(s.order[:i], s.order[i+1:]...)
			break
		}
	}
	s.mu.Unlock()
	return s.broadcast("del", uid, &zdspb.WorkloadRequest{Payload: &zdspb.WorkloadRequest_Del{Del: &zdspb.DelWorkload{Uid: uid}}}, "")
}

// Acks returns every answer received so far.
func (s *Server) Acks() []Ack {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Ack(nil), s.acks...)
}

// Synced reports how many connections have acknowledged a snapshot_sent.
func (s *Server) Synced() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	seen := map[int]bool{}
	for _, a := range s.acks {
		if a.Kind == "snapshot_sent" && a.Error == "" && s.conns[a.Conn] != nil {
			seen[a.Conn] = true
		}
	}
	return len(seen)
}

// Close stops listening, closes every connection (as a restarting node agent would) and
// waits for the server's goroutines.
func (s *Server) Close() error {
	s.mu.Lock()
	s.closed = true
	conns := s.all
	s.all = make(map[int]*conn)
	s.conns = make(map[int]*conn)
	s.mu.Unlock()
	err := s.l.Close()
	for _, c := range conns {
		c.uc.Close()
	}
	s.wg.Wait()
	return err
}
