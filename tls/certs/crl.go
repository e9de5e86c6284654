package certs

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/binary"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math/big"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/ztunnel-go/ztunnel/internal/notify"
)

// ErrRevoked is returned (wrapped) by a handshake whose peer presented a revoked certificate.
var ErrRevoked = errors.New("certificate revoked")

// CRLSet holds the certificate revocation lists of one file (CRL_PATH), as ztunnel enforces
// them: a peer's chain is refused when a list issued by the issuer of one of its certificates,
// and signed by it, names that certificate's serial number. A certificate no list speaks for
// passes (its status is unknown, which is allowed), and lists past their next update still
// count. The file holds PEM "X509 CRL" blocks (other blocks are skipped) or one DER list; an
// empty file revokes nothing.
//
// The lists are read at NewCRLSet and again by Watch when the file changes; handshakes read the
// current ones without a lock. Each reload that parses advances Generation and closes the
// channel Changed returned, so that the owners of established connections can re-check them
// (Manager.Revoked); this package keeps no connection.
type CRLSet struct {
	path  string
	log   *slog.Logger
	lists atomic.Pointer[crlState]
	// gen counts the reloads that parsed; it advances after lists is stored.
	gen atomic.Uint64
	// changed is closed, and replaced, by each reload that parsed, which then runs watches;
	// both under mu.
	mu      sync.Mutex
	changed chan struct{}
	watches notify.Callbacks
	// seen is the file as it was when Reload last read it (parsed or not), taken before the
	// read: Watch reloads when the file differs from it, so that no change made after a read
	// is missed, whenever Watch starts.
	seen atomic.Pointer[fileStamp]
}

// NewCRLSet reads the lists in path. A file that does not exist yet (a volume mounted later)
// revokes nothing until Watch finds it; a file that cannot be read or parsed is an error.
func NewCRLSet(path string, log *slog.Logger) (*CRLSet, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &CRLSet{path: path, log: log, changed: make(chan struct{})}
	s.lists.Store(&crlState{})
	if err := s.Reload(); err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
		log.Warn("the certificate revocation list does not exist yet: nothing is revoked until it does", "path", path)
	}
	return s, nil
}

// Reload reads the file again and, when it parses, makes its lists the current ones; on error
// the current ones stay.
func (s *CRLSet) Reload() error {
	st := stamp(s.path)
	s.seen.Store(&st)
	data, err := os.ReadFile(s.path)
	if err != nil {
		return err
	}
	lists, err := parseCRLs(data)
	if err != nil {
		return fmt.Errorf("%s: %w", s.path, err)
	}
	s.lists.Store(newCRLState(lists))
	s.gen.Add(1)
	s.mu.Lock()
	close(s.changed)
	s.changed = make(chan struct{})
	s.watches.Run()
	s.mu.Unlock()
	return nil
}

// Len returns how many lists are current.
func (s *CRLSet) Len() int { return len(s.lists.Load().lists) }

// Generation counts the reloads that parsed. It advances after the new lists are current, so
// a connection whose handshake began when Generation was g, and which its owner made visible
// to its re-checks before finding Generation still g, was verified with lists that are not
// older than those the next Changed announces.
func (s *CRLSet) Generation() uint64 { return s.gen.Load() }

// Changed returns a channel closed by the next reload that parses.
func (s *CRLSet) Changed() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.changed
}

// OnChange makes fn run after each reload that parses, for an owner that should not hold a
// goroutine to wait on Changed. fn runs on the reloading goroutine with the set's lock held, in
// reload order: it must return at once and must not call Changed, OnChange or a cancel. cancel stops the
// calls; once it returns no call is in progress or to come.
func (s *CRLSet) OnChange(fn func()) (cancel func()) { return s.watches.Add(fn) }

// crlState is one generation of lists, with the certificates they name indexed by issuer and
// serial number: MayRevoke answers from the index, without a signature check.
type crlState struct {
	lists   []*x509.RevocationList
	revoked map[string]struct{} // revokedKey of each entry of each list
}

func newCRLState(lists []*x509.RevocationList) *crlState {
	st := &crlState{lists: lists, revoked: make(map[string]struct{})}
	for _, l := range lists {
		for _, e := range l.RevokedCertificateEntries {
			if e.SerialNumber != nil {
				st.revoked[string(appendRevokedKey(nil, l.RawIssuer, e.SerialNumber))] = struct{}{}
			}
		}
	}
	return st
}

// appendRevokedKey appends the index key of serial under the issuer name issuer: the name's
// length, the name, the serial's sign and magnitude.
func appendRevokedKey(b, issuer []byte, serial *big.Int) []byte {
	b = binary.AppendUvarint(b, uint64(len(issuer)))
	b = append(append(b, issuer...), byte(serial.Sign()+1))
	n := (serial.BitLen() + 7) / 8
	b = slices.Grow(b, n)[:len(b)+n]
	serial.FillBytes(b[len(b)-n:])
	return b
}

// named reports whether a list of st names cert under the name of cert's issuer (signatures
// unchecked). It allocates nothing for the usual key sizes.
func (st *crlState) named(cert *x509.Certificate) bool {
	if len(st.revoked) == 0 || cert.SerialNumber == nil {
		return false
	}
	var buf [512]byte
	_, ok := st.revoked[string(appendRevokedKey(buf[:0], cert.RawIssuer, cert.SerialNumber))]
	return ok
}

// MayRevoke reports whether a current list names a certificate of chain (any order) under the
// name of its issuer. It checks no signature: false means Check would pass any verified chain
// made of these certificates, true that Check must decide.
func (s *CRLSet) MayRevoke(chain []*x509.Certificate) bool {
	st := s.lists.Load()
	for _, c := range chain {
		if st.named(c) {
			return true
		}
	}
	return false
}

// parseCRLs parses a file's lists: PEM when it has a PEM header, else one DER list.
func parseCRLs(data []byte) ([]*x509.RevocationList, error) {
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, nil
	}
	var ders [][]byte
	if bytes.Contains(data, []byte("-----BEGIN")) { // text around the blocks is allowed
		for rest := data; ; {
			var b *pem.Block
			if b, rest = pem.Decode(rest); b == nil {
				break
			}
			if b.Type == "X509 CRL" {
				ders = append(ders, b.Bytes)
			}
		}
	} else {
		ders = [][]byte{data}
	}
	lists := make([]*x509.RevocationList, 0, len(ders))
	for i, der := range ders {
		l, err := x509.ParseRevocationList(der)
		if err != nil {
			return nil, fmt.Errorf("revocation list %d: %w", i+1, err)
		}
		lists = append(lists, l)
	}
	return lists, nil
}

// Check reports (ErrRevoked) whether a certificate of chain, a verified chain from the peer's
// certificate to a trust anchor, is revoked by a current list. The anchor itself is not
// checked: no list speaks for it.
func (s *CRLSet) Check(chain []*x509.Certificate) error {
	st := s.lists.Load()
	for i := 0; i+1 < len(chain); i++ {
		cert, issuer := chain[i], chain[i+1]
		if !st.named(cert) {
			continue // no list names it: no signature to check, no entries to scan
		}
		for _, l := range st.lists {
			if !bytes.Equal(l.RawIssuer, cert.RawIssuer) || l.CheckSignatureFrom(issuer) != nil {
				continue // not this certificate's issuer's list
			}
			for _, e := range l.RevokedCertificateEntries {
				if e.SerialNumber.Cmp(cert.SerialNumber) == 0 {
					return fmt.Errorf("%w: serial %x of %q", ErrRevoked, cert.SerialNumber, cert.Subject.String())
				}
			}
		}
	}
	return nil
}

// Watch reloads the lists whenever the file differs from what Reload last read (its size,
// modification time or inode: a Kubernetes volume swaps a symbolic link), checking every
// interval, until ctx ends. A file that does not parse is logged once and the current lists
// stay.
func (s *CRLSet) Watch(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if stamp(s.path) == *s.seen.Load() {
			continue
		}
		if err := s.Reload(); err != nil {
			s.log.Warn("certificate revocation list not reloaded; the previous one stays", "path", s.path, "err", err)
			continue
		}
		s.log.Info("certificate revocation list reloaded", "path", s.path, "lists", s.Len())
	}
}

// fileStamp is what tells that a file changed.
type fileStamp struct {
	size, mtime int64 // mtime in ns
	ino         uint64
	ok          bool
}

func stamp(path string) fileStamp {
	fi, err := os.Stat(path)
	if err != nil {
		return fileStamp{}
	}
	st := fileStamp{size: fi.Size(), mtime: fi.ModTime().UnixNano(), ok: true}
	if sys, ok := fi.Sys().(*syscall.Stat_t); ok {
		st.ino = uint64(sys.Ino)
	}
	return st
}
