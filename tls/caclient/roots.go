package caclient

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"

	"google.golang.org/grpc/credentials"
)

// fileRootCreds are the transport credentials of a connection to istiod whose roots come from a
// file (XDS_ROOT_CA / CA_ROOT_CA, by default the istio-ca-root-cert ConfigMap mounted at
// ./var/run/secrets/istio/root-cert.pem). The file is read again at every handshake, so when
// the mesh's root is rotated (the kubelet swaps the ConfigMap's contents in place), the next
// connection to istiod, and gRPC's every reconnection, verify with the new roots; the Rust
// ztunnel likewise builds a new channel from the file on each xDS connection and after the CA
// root file changed. A read that fails, or finds no certificate, keeps the last good roots and
// logs why: a half-written or deleted file must not cut a node off from istiod.
//
// Safe for concurrent use: gRPC may handshake several connections at once.
type fileRootCreds struct {
	path string
	log  *slog.Logger

	mu     sync.Mutex
	base   *tls.Config                      // everything but RootCAs; replaced (OverrideServerName), never modified
	pem    []byte                           // the file's contents creds were built from
	creds  credentials.TransportCredentials // TLS with the roots of pem
	badKey string                           // what was last logged as unusable; "" when the file is fine
}

// newFileRootCreds reads path once; an unreadable file or one without a certificate is an error
// here, at start-up.
func newFileRootCreds(path string, base *tls.Config, log *slog.Logger) (*fileRootCreds, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("root certificate: %w", err)
	}
	c := &fileRootCreds{path: path, base: base, log: log}
	if err := c.use(data); err != nil {
		return nil, err
	}
	return c, nil
}

// use builds the credentials for the PEM roots in data. Called with mu held, or before c is
// shared.
func (c *fileRootCreds) use(data []byte) error {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(data) {
		return fmt.Errorf("root certificate (file %s): no PEM certificate found", c.path)
	}
	cfg := c.base.Clone()
	cfg.RootCAs = pool
	c.pem, c.creds = data, credentials.NewTLS(cfg)
	return nil
}

// current returns the credentials for the file's contents now, or the last good ones.
func (c *fileRootCreds) current() credentials.TransportCredentials {
	data, rerr := os.ReadFile(c.path)
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case rerr != nil:
		c.report("read: "+rerr.Error(), rerr)
	case bytes.Equal(data, c.pem):
		c.badKey = ""
	default:
		if err := c.use(data); err != nil {
			c.report("pem: "+string(data), err)
			break
		}
		c.badKey = ""
		c.log.Info("root certificate file changed: new connections to istiod verify with its roots", "path", c.path)
	}
	return c.creds
}

// report logs that the file cannot be used now, once for each distinct failure in a row.
func (c *fileRootCreds) report(key string, err error) {
	if key == c.badKey {
		return
	}
	c.badKey = key
	c.log.Warn("cannot use the root certificate file; keeping the roots read before", "path", c.path, "err", err)
}

// ClientHandshake implements credentials.TransportCredentials.
func (c *fileRootCreds) ClientHandshake(ctx context.Context, authority string, raw net.Conn) (net.Conn, credentials.AuthInfo, error) {
	return c.current().ClientHandshake(ctx, authority, raw)
}

// ServerHandshake implements credentials.TransportCredentials; these are client credentials.
func (c *fileRootCreds) ServerHandshake(net.Conn) (net.Conn, credentials.AuthInfo, error) {
	return nil, nil, errors.New("caclient: root file credentials are for clients only")
}

// Info implements credentials.TransportCredentials.
func (c *fileRootCreds) Info() credentials.ProtocolInfo {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.creds.Info()
}

// Clone implements credentials.TransportCredentials: an independent copy with the same state.
func (c *fileRootCreds) Clone() credentials.TransportCredentials {
	c.mu.Lock()
	defer c.mu.Unlock()
	return &fileRootCreds{path: c.path, base: c.base, log: c.log, pem: c.pem, creds: c.creds.Clone(), badKey: c.badKey}
}

// OverrideServerName implements credentials.TransportCredentials (deprecated in gRPC, unused by
// it): it changes the name verified from now on.
func (c *fileRootCreds) OverrideServerName(name string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	base := c.base.Clone()
	base.ServerName = name
	c.base = base
	return c.use(c.pem)
}
