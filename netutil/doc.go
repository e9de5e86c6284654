// Package netutil is the Linux socket plumbing of the proxy: socket options
// (SO_MARK, IP_TRANSPARENT, IP_FREEBIND, SO_REUSEPORT, TCP_NODELAY and
// keepalive) applied through net.ListenConfig and net.Dialer, the original
// destination of a redirected connection (SO_ORIGINAL_DST), running code inside
// another network namespace, the byte relay between two connections
// (zero-copy splice between two TCP sockets, pooled buffers otherwise), and
// the epoll loop in which idle sockets wait without a goroutine: relay
// directions, readers (ReadPark) and serving loops of listeners and datagram
// sockets (IdleLoop).
//
// The platform-specific parts live in *_linux.go files. On other systems the
// same API compiles but every operation that needs Linux returns
// ErrUnsupported, so the rest of the module builds and vets everywhere.
package netutil
