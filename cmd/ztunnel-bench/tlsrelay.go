package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"math/big"
	"net"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// The plain Go TLS 1.3 relay pair: the floor any Go mTLS tunnel starts from. The client side
// accepts plaintext and opens one TLS 1.3 connection per accepted connection, with a client
// certificate, to the server side, which forwards plaintext. Same certificates as ztunnel's
// (ECDSA P-256, SPIFFE URI SANs), same crypto/tls, no HTTP/2. Each side is this binary
// re-executed in a relay role inside its namespace, so that its CPU and RSS are its own.

// roleEnv names the relay role when the harness binary is re-executed.
const roleEnv = "ZTUNNEL_BENCH_ROLE"

// Relay roles.
const (
	roleTLSClient = "tls-client" // plaintext in, TLS out
	roleTLSServer = "tls-server" // TLS in, plaintext out
)

// Files in the relay certificate directory.
const (
	fileRoot       = "root.pem"
	fileClientCert = "client.pem"
	fileClientKey  = "client-key.pem"
	fileServerCert = "server.pem"
	fileServerKey  = "server-key.pem"
	serverName     = "bench-server" // DNS SAN of the server certificate, checked by the client
)

// writeRelayCerts writes a root and a client and a server leaf signed by it into dir.
func writeRelayCerts(dir string) error {
	rootKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	now := time.Now()
	rootTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "ztunnel-bench root"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(48 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	rootDER, err := x509.CreateCertificate(rand.Reader, rootTmpl, rootTmpl, &rootKey.PublicKey, rootKey)
	if err != nil {
		return err
	}
	root, err := x509.ParseCertificate(rootDER)
	if err != nil {
		return err
	}
	if err := writePEM(filepath.Join(dir, fileRoot), "CERTIFICATE", rootDER); err != nil {
		return err
	}
	for i, leaf := range []struct {
		certFile, keyFile, sa string
		usage                 x509.ExtKeyUsage
		dns                   []string
	}{
		{fileClientCert, fileClientKey, "client", x509.ExtKeyUsageClientAuth, nil},
		{fileServerCert, fileServerKey, "server", x509.ExtKeyUsageServerAuth, []string{serverName}},
	} {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return err
		}
		uri, _ := url.Parse("spiffe://cluster.local/ns/bench/sa/" + leaf.sa)
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(int64(i + 2)),
			NotBefore:    now.Add(-time.Hour),
			NotAfter:     now.Add(48 * time.Hour),
			KeyUsage:     x509.KeyUsageDigitalSignature,
			ExtKeyUsage:  []x509.ExtKeyUsage{leaf.usage},
			URIs:         []*url.URL{uri},
			DNSNames:     leaf.dns,
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, root, &key.PublicKey, rootKey)
		if err != nil {
			return err
		}
		kb, err := x509.MarshalECPrivateKey(key)
		if err != nil {
			return err
		}
		if err := writePEM(filepath.Join(dir, leaf.certFile), "CERTIFICATE", der); err != nil {
			return err
		}
		if err := writePEM(filepath.Join(dir, leaf.keyFile), "EC PRIVATE KEY", kb); err != nil {
			return err
		}
	}
	return nil
}

func writePEM(path, typ string, der []byte) error {
	return os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600)
}

// relayTLSConfig builds the TLS 1.3 mutual-authentication config of one relay side.
func relayTLSConfig(dir string, server bool) (*tls.Config, error) {
	certFile, keyFile := fileClientCert, fileClientKey
	if server {
		certFile, keyFile = fileServerCert, fileServerKey
	}
	cert, err := tls.LoadX509KeyPair(filepath.Join(dir, certFile), filepath.Join(dir, keyFile))
	if err != nil {
		return nil, err
	}
	rootPEM, err := os.ReadFile(filepath.Join(dir, fileRoot))
	if err != nil {
		return nil, err
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(rootPEM) {
		return nil, errors.New("no root certificate")
	}
	cfg := &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{cert},
	}
	if server {
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
		cfg.ClientCAs = roots
	} else {
		cfg.RootCAs = roots
		cfg.ServerName = serverName
	}
	return cfg, nil
}

// relayMapping is one listener of a relay and the address it forwards to. Proto, when set, is
// an ALPN protocol name: the client side offers it, and a server side with several mappings on
// one listening address picks the upstream by the protocol the handshake agreed on. That lets
// the pod-borne relay serve all the applications on one port, 15008, the one port istio-cni's
// in-pod rules let through to a pod without redirecting it.
type relayMapping struct{ listen, upstream, proto string }

// parseMappings parses "listen=upstream[@proto],listen=upstream[@proto]".
func parseMappings(s string) ([]relayMapping, error) {
	var out []relayMapping
	for part := range strings.SplitSeq(s, ",") {
		l, u, ok := strings.Cut(part, "=")
		u, proto, hasProto := strings.Cut(u, "@")
		if !ok || l == "" || u == "" || (hasProto && proto == "") {
			return nil, fmt.Errorf("mapping %q: want listen=upstream or listen=upstream@proto", part)
		}
		out = append(out, relayMapping{l, u, proto})
	}
	return out, nil
}

// relayListener is one listening address of a relay and what it forwards to: one upstream, or
// on the server side one per ALPN protocol.
type relayListener struct {
	addr     string
	cfg      *tls.Config       // the role's config, with NextProtos when protocols are used
	upstream string            // the only upstream, when no protocol is named
	byProto  map[string]string // upstream by ALPN protocol, when protocols are named
}

// groupMappings gathers the mappings by listening address, in the order first named, and
// checks that each address can tell its upstreams apart: a client side forwards one address to
// one upstream; a server side may forward several, each under its own protocol.
func groupMappings(maps []relayMapping, cfg *tls.Config, server bool) ([]*relayListener, error) {
	var out []*relayListener
	index := map[string]*relayListener{}
	for _, m := range maps {
		l := index[m.listen]
		if l == nil {
			l = &relayListener{addr: m.listen, cfg: cfg.Clone()}
			index[m.listen] = l
			out = append(out, l)
		} else if !server {
			return nil, fmt.Errorf("listen address %s named twice: a client side forwards it to one upstream", m.listen)
		}
		switch {
		case m.proto == "" && (l.upstream != "" || l.byProto != nil):
			return nil, fmt.Errorf("listen address %s: several upstreams need a protocol each", m.listen)
		case m.proto == "":
			l.upstream = m.upstream
		case !server:
			l.upstream = m.upstream
			l.cfg.NextProtos = []string{m.proto}
		case l.upstream != "":
			return nil, fmt.Errorf("listen address %s: several upstreams need a protocol each", m.listen)
		default:
			if l.byProto == nil {
				l.byProto = map[string]string{}
			}
			if _, dup := l.byProto[m.proto]; dup {
				return nil, fmt.Errorf("listen address %s: protocol %q named twice", m.listen, m.proto)
			}
			l.byProto[m.proto] = m.upstream
			l.cfg.NextProtos = append(l.cfg.NextProtos, m.proto)
		}
	}
	return out, nil
}

// relayArgs are a relay role's command line.
type relayArgs struct {
	certs string // directory of the relay certificates
	maps  []relayMapping
	opts  sockOpts
}

// parseRelayArgs parses a relay role's command line; an error names the flag at fault.
func parseRelayArgs(role string, args []string) (relayArgs, error) {
	fs := flag.NewFlagSet(role, flag.ContinueOnError)
	certs := fs.String("certs", "", "directory of the relay certificates")
	mapFlag := fs.String("map", "", "listen=upstream[@proto][,listen=upstream[@proto]...]")
	mark := fs.Uint("mark", 0, "SO_MARK of the connections it dials (0: none)")
	mss := fs.Int("mss", 0, "TCP_MAXSEG of every socket it opens, 88 to 65535 (0: what the route gives)")
	if err := fs.Parse(args); err != nil {
		return relayArgs{}, err
	}
	maps, err := parseMappings(*mapFlag)
	switch {
	case err != nil:
		return relayArgs{}, err
	case *mark > math.MaxUint32:
		return relayArgs{}, fmt.Errorf("-mark %d: out of range", *mark)
	case *mss != 0 && (*mss < 88 || *mss > 65535):
		return relayArgs{}, fmt.Errorf("-mss %d: out of range (88 to 65535, or 0)", *mss)
	}
	return relayArgs{certs: *certs, maps: maps, opts: sockOpts{mark: uint32(*mark), mss: *mss}}, nil
}

// runRelay is the main function of a relay role: it listens on every mapping, prints "ready"
// on stdout, and relays until SIGTERM or SIGINT. It returns the exit status.
func runRelay(role string, args []string) int {
	a, err := parseRelayArgs(role, args)
	var r *relay
	if err == nil {
		r, err = startRelay(role, a.certs, a.maps, a.opts)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "ztunnel-bench %s: %v\n", role, err)
		return 2
	}
	fmt.Println("ready")
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	<-sig
	r.close()
	return 0
}

// startRelay listens on every mapping of a relay role and serves them until close.
func startRelay(role, certs string, maps []relayMapping, opts sockOpts) (*relay, error) {
	if role != roleTLSClient && role != roleTLSServer {
		return nil, fmt.Errorf("unknown role %q", role)
	}
	server := role == roleTLSServer
	cfg, err := relayTLSConfig(certs, server)
	if err != nil {
		return nil, err
	}
	lns, err := groupMappings(maps, cfg, server)
	if err != nil {
		return nil, err
	}
	r := &relay{server: server, conns: map[net.Conn]struct{}{}}
	r.dialer = net.Dialer{Timeout: dialTimeout, Control: opts.control(true)}
	lc := net.ListenConfig{Control: opts.control(false)}
	for _, rl := range lns {
		l, err := lc.Listen(context.Background(), "tcp", rl.addr)
		if err != nil {
			r.close()
			return nil, err
		}
		r.listeners = append(r.listeners, l)
		r.wg.Go(func() { r.serve(l, rl) })
	}
	return r, nil
}

// relay is one side of the TLS relay pair.
type relay struct {
	server    bool           // TLS on the accepted side (true) or on the dialed side
	dialer    net.Dialer     // for upstreams; set before serving starts
	listeners []net.Listener // set before serving starts; closed by close
	wg        sync.WaitGroup // accept loops and connection goroutines; close waits for them

	mu     sync.Mutex
	conns  map[net.Conn]struct{} // guarded by mu: open connections, closed by close
	closed bool                  // guarded by mu
}

func (r *relay) track(c net.Conn) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return false
	}
	r.conns[c] = struct{}{}
	return true
}

func (r *relay) untrack(c net.Conn) {
	r.mu.Lock()
	delete(r.conns, c)
	r.mu.Unlock()
}

func (r *relay) close() {
	r.mu.Lock()
	r.closed = true
	for c := range r.conns {
		c.Close()
	}
	r.mu.Unlock()
	for _, l := range r.listeners {
		l.Close()
	}
	r.wg.Wait()
}

func (r *relay) serve(l net.Listener, rl *relayListener) {
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		r.wg.Go(func() { r.handle(c, rl) })
	}
}

// handle relays one connection: handshake or dial the other side, then copy both ways with
// half-close until both directions end.
func (r *relay) handle(down net.Conn, rl *relayListener) {
	if !r.track(down) {
		down.Close()
		return
	}
	defer r.untrack(down)
	defer down.Close()
	upstream := rl.upstream
	if r.server {
		tc := tls.Server(down, rl.cfg)
		tc.SetDeadline(time.Now().Add(dialTimeout))
		if err := tc.Handshake(); err != nil {
			return
		}
		tc.SetDeadline(time.Time{})
		down = tc
		if rl.byProto != nil {
			// crypto/tls fails the handshake when the client offers protocols and none is
			// ours; a client that offers none gets no upstream here.
			if upstream = rl.byProto[tc.ConnectionState().NegotiatedProtocol]; upstream == "" {
				return
			}
		}
	}
	up, err := r.dialer.Dial("tcp", upstream)
	if err != nil {
		return
	}
	if !r.track(up) {
		up.Close()
		return
	}
	defer r.untrack(up)
	defer up.Close()
	if !r.server {
		tc := tls.Client(up, rl.cfg)
		tc.SetDeadline(time.Now().Add(dialTimeout))
		if err := tc.Handshake(); err != nil {
			return
		}
		tc.SetDeadline(time.Time{})
		up = tc
	}
	var wg sync.WaitGroup
	wg.Go(func() { copyHalf(up, down) })
	copyHalf(down, up)
	wg.Wait()
}

// copyHalf copies src to dst until EOF, then half-closes dst (close_notify on TLS, FIN on TCP).
func copyHalf(dst, src net.Conn) {
	_, err := io.Copy(dst, src)
	if err != nil {
		dst.Close()
		src.Close()
		return
	}
	if cw, ok := dst.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
	}
}
