package record

import (
	"bytes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/tls"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"hash"
	"io"
	"sync"

	"github.com/ztunnel-go/ztunnel/tls/aesgcm"
)

// suite is a TLS 1.3 cipher suite this package can run: AES-GCM with the
// hash of its key schedule.
type suite struct {
	keyLen int
	hash   func() hash.Hash
}

var suites = map[uint16]suite{
	tls.TLS_AES_128_GCM_SHA256: {keyLen: 16, hash: sha256.New},
	tls.TLS_AES_256_GCM_SHA384: {keyLen: 32, hash: sha512.New384},
}

// expandLabel is TLS 1.3's HKDF-Expand-Label (RFC 8446, section 7.1) with
// an empty context.
func (s suite) expandLabel(secret []byte, label string, length int) ([]byte, error) {
	var info []byte
	info = binary.BigEndian.AppendUint16(info, uint16(length))
	info = append(info, byte(len("tls13 ")+len(label)))
	info = append(info, "tls13 "...)
	info = append(info, label...)
	info = append(info, 0) // context length
	return hkdf.Expand(s.hash, secret, string(info), length)
}

// direction is the protection of one direction of the connection: the
// traffic secret, the AEAD and IV derived from it, and the record sequence
// number. Owned by the reader (read side) or guarded by Conn.wmu (write
// side).
type direction struct {
	suite  suite
	secret []byte
	aead   cipher.AEAD
	iv     [12]byte
	nonce  [12]byte
	seq    uint64
}

// setSecret installs a traffic secret and resets the sequence number.
func (d *direction) setSecret(s suite, secret []byte) error {
	key, err := s.expandLabel(secret, "key", s.keyLen)
	if err != nil {
		return err
	}
	iv, err := s.expandLabel(secret, "iv", 12)
	if err != nil {
		return err
	}
	aead, err := aesgcm.New(key)
	if err != nil {
		return err
	}
	d.suite, d.secret, d.aead, d.seq = s, secret, aead, 0
	copy(d.iv[:], iv)
	return nil
}

// update moves to the next traffic secret (RFC 8446, section 7.2), as a
// KeyUpdate asks.
func (d *direction) update() error {
	next, err := d.suite.expandLabel(d.secret, "traffic upd", d.suite.hash().Size())
	if err != nil {
		return err
	}
	return d.setSecret(d.suite, next)
}

// nextNonce returns the per-record nonce (the IV XORed with the sequence
// number) and advances the sequence number.
func (d *direction) nextNonce() []byte {
	d.nonce = d.iv
	var seq [8]byte
	binary.BigEndian.PutUint64(seq[:], d.seq)
	for i := range seq {
		d.nonce[4+i] ^= seq[i]
	}
	d.seq++
	return d.nonce[:]
}

// keyLog captures the TLS 1.3 application traffic secrets of one handshake
// from crypto/tls's key log (the NSS key log format) into secrets, passing
// every line on to the configuration's own KeyLogWriter, if any.
type keyLog struct {
	next io.Writer
	s    *secrets
}

// secrets are the application traffic secrets of one handshake.
type secrets struct {
	mu     sync.Mutex
	client []byte // CLIENT_TRAFFIC_SECRET_0
	server []byte // SERVER_TRAFFIC_SECRET_0
}

var errKeyLogLine = errors.New("record: malformed key log line")

func (k *keyLog) Write(line []byte) (int, error) {
	if k.next != nil {
		if _, err := k.next.Write(line); err != nil {
			return 0, err
		}
	}
	f := bytes.Fields(line)
	if len(f) != 3 {
		return 0, errKeyLogLine
	}
	var dst *[]byte
	switch string(f[0]) {
	case "CLIENT_TRAFFIC_SECRET_0":
		dst = &k.s.client
	case "SERVER_TRAFFIC_SECRET_0":
		dst = &k.s.server
	default:
		return len(line), nil
	}
	secret := make([]byte, hex.DecodedLen(len(f[2])))
	if _, err := hex.Decode(secret, f[2]); err != nil {
		return 0, errKeyLogLine
	}
	k.s.mu.Lock()
	*dst = secret
	k.s.mu.Unlock()
	return len(line), nil
}

func (s *secrets) get() (client, server []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.client, s.server
}
