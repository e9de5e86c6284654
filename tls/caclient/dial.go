// Package caclient talks to istiod over gRPC: it implements certs.Signer with
// istiod's CA service (istio.v1.auth.IstioCertificateService/CreateCertificate)
// and provides the TLS, bearer-token and header plumbing that the CA client and
// the xDS client share (Dial).
package caclient

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials"

	"github.com/ztunnel-go/ztunnel/config"
)

// DialConfig says how to reach one istiod endpoint (xDS or CA).
type DialConfig struct {
	// Address is XDS_ADDRESS or CA_ADDRESS: "https://host:port" or "host:port"; required.
	Address string
	// RootCert verifies the server's certificate (XDS_ROOT_CA / CA_ROOT_CA).
	RootCert config.RootCert
	// AltHostname, when set, is the name verified in the server's certificate instead of
	// Address's host (ALT_XDS_HOSTNAME / ALT_CA_HOSTNAME).
	AltHostname string
	// Auth is the bearer token source (AUTH_TOKEN); a token file is re-read on every RPC, so
	// every new stream presents the current token. Its ClusterID goes in the "clusterid"
	// header. The zero value sends no token.
	Auth config.Auth
	// Headers are extra gRPC metadata sent on every RPC (XDS_HEADER_* / CA_HEADER_*).
	Headers map[string]string
	// Mark, when not zero, is set as SO_MARK on the connection's socket (PACKET_MARK), so
	// that a proxy running inside a pod's network namespace reaches istiod without being
	// captured by its own redirection rules.
	Mark uint32
	// Log receives the warnings of a root certificate file that cannot be used after a
	// change; nil means slog.Default().
	Log *slog.Logger
	// MinBackoff and MaxBackoff bound gRPC's reconnection backoff of the underlying
	// connection. Zero means gRPC's defaults.
	MinBackoff, MaxBackoff time.Duration
}

// Target splits an istiod address into the gRPC dial target and the host name
// to verify. A scheme other than https (or none) is an error: istiod is only
// spoken to over TLS.
func Target(address string) (target, host string, err error) {
	a := address
	if strings.Contains(a, "://") {
		u, err := url.Parse(a)
		if err != nil {
			return "", "", fmt.Errorf("address %q: %w", address, err)
		}
		if u.Scheme != "https" {
			return "", "", fmt.Errorf("address %q: scheme %q is not supported (want https)", address, u.Scheme)
		}
		a = u.Host
	}
	h, _, err := net.SplitHostPort(a)
	if err != nil {
		return "", "", fmt.Errorf("address %q: %w", address, err)
	}
	return a, h, nil
}

// TLSConfig builds the client TLS configuration: the roots of RootCert and the
// server name AltHostname, else host.
func (d *DialConfig) TLSConfig(host string) (*tls.Config, error) {
	cfg := d.baseTLSConfig(host)
	switch d.RootCert.Kind {
	case config.RootCertSystem:
		// nil RootCAs: the system pool.
	case config.RootCertPEM, config.RootCertFile:
		data := d.RootCert.PEM
		if d.RootCert.Kind == config.RootCertFile {
			var err error
			if data, err = os.ReadFile(d.RootCert.Path); err != nil {
				return nil, fmt.Errorf("root certificate: %w", err)
			}
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(data) {
			return nil, fmt.Errorf("root certificate (%s): no PEM certificate found", d.RootCert)
		}
		cfg.RootCAs = pool
	default:
		return nil, fmt.Errorf("root certificate: unknown kind %d", d.RootCert.Kind)
	}
	return cfg, nil
}

// baseTLSConfig is TLSConfig without the roots.
func (d *DialConfig) baseTLSConfig(host string) *tls.Config {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: host}
	if d.AltHostname != "" {
		cfg.ServerName = d.AltHostname
	}
	return cfg
}

// Dial returns a client connection to the address. It does not block: gRPC
// connects on first use and reconnects by itself.
func (d *DialConfig) Dial(opts ...grpc.DialOption) (*grpc.ClientConn, error) {
	target, host, err := Target(d.Address)
	if err != nil {
		return nil, err
	}
	var creds credentials.TransportCredentials
	if d.RootCert.Kind == config.RootCertFile {
		// Read at every handshake: a rotated root reaches the next connection.
		log := d.Log
		if log == nil {
			log = slog.Default()
		}
		if creds, err = newFileRootCreds(d.RootCert.Path, d.baseTLSConfig(host), log); err != nil {
			return nil, err
		}
	} else {
		tc, err := d.TLSConfig(host)
		if err != nil {
			return nil, err
		}
		creds = credentials.NewTLS(tc)
	}
	all := []grpc.DialOption{
		grpc.WithTransportCredentials(creds),
		grpc.WithPerRPCCredentials(&tokenCreds{auth: d.Auth, headers: d.Headers}),
	}
	if d.Mark != 0 {
		dialer := &net.Dialer{Control: markControl(d.Mark)}
		all = append(all, grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
			return dialer.DialContext(ctx, "tcp", addr)
		}))
	}
	if d.MinBackoff > 0 || d.MaxBackoff > 0 {
		bc := backoff.DefaultConfig
		if d.MinBackoff > 0 {
			bc.BaseDelay = d.MinBackoff
		}
		if d.MaxBackoff > 0 {
			bc.MaxDelay = d.MaxBackoff
		}
		all = append(all, grpc.WithConnectParams(grpc.ConnectParams{Backoff: bc, MinConnectTimeout: 5 * time.Second}))
	}
	all = append(all, opts...)
	cc, err := grpc.NewClient("dns:///"+target, all...)
	if err != nil {
		return nil, fmt.Errorf("dialing %s: %w", d.Address, err)
	}
	return cc, nil
}

// tokenCreds attaches the bearer token, cluster id and extra headers to every RPC.
// Immutable.
type tokenCreds struct {
	auth    config.Auth
	headers map[string]string
}

// GetRequestMetadata implements credentials.PerRPCCredentials. A token file is
// read on each call, so a rotated token is picked up by the next stream.
func (t *tokenCreds) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	md := make(map[string]string, len(t.headers)+2)
	for k, v := range t.headers {
		md[k] = v
	}
	var token string
	switch t.auth.Kind {
	case config.AuthTokenFile:
		b, err := os.ReadFile(t.auth.Path)
		if err != nil {
			return nil, fmt.Errorf("reading token: %w", err)
		}
		token = strings.TrimSpace(string(b))
		if token == "" {
			return nil, errors.New("token file " + t.auth.Path + " is empty")
		}
	case config.AuthStaticToken:
		token = t.auth.Token()
	}
	if token != "" {
		md["authorization"] = "Bearer " + token
	}
	if t.auth.ClusterID != "" {
		md["clusterid"] = t.auth.ClusterID
	}
	return md, nil
}

// RequireTransportSecurity implements credentials.PerRPCCredentials.
func (t *tokenCreds) RequireTransportSecurity() bool { return true }
