// Package aesgcm is AES-GCM (NIST SP 800-38D) with 12-byte nonces and
// 16-byte tags, the AEAD of TLS 1.3's AES suites, for the record layer.
//
// On amd64 CPUs with VAES and VPCLMULQDQ it runs its own assembly, which
// encrypts and hashes many blocks per loop in wide registers: sixteen in
// 512-bit registers where the CPU has AVX-512 (asm_amd64.s, Intel since Ice
// Lake), eight in 256-bit ones where it has only AVX2 (avx2_amd64.s, AMD's
// Zen 3). Go's crypto/cipher uses 128-bit AES-NI and PCLMULQDQ there, at
// about half the speed (see benchmarks/README.md). Everywhere else New
// returns crypto/cipher's GCM. All give the same bytes: the tests and the
// fuzz target compare them.
package aesgcm

import (
	"crypto/aes"
	"crypto/cipher"
	"errors"
	"unsafe"
)

const (
	// NonceSize and TagSize are the only sizes this package runs.
	NonceSize = 12
	TagSize   = 16

	// maxText is the longest plaintext one nonce may seal: the 32-bit
	// block counter starts at 2 (SP 800-38D, section 5.2.1.1).
	maxText = (1<<32 - 2) * aes.BlockSize
)

// implStd is Implementation's name for crypto/cipher's GCM.
const implStd = "crypto/cipher"

var errOpen = errors.New("cipher: message authentication failed")

// New returns AES-GCM under key (16, 24 or 32 bytes), the assembly one
// when the CPU has what it needs.
func New(key []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	if Accelerated() {
		return newAsm(key, block), nil
	}
	return cipher.NewGCM(block)
}

// minGather is the shortest body SealRecord hands to the assembly: below
// it, copying body costs less than the two calls the gather adds.
const minGather = 256

// SealRecord seals a TLS 1.3 record's inner plaintext (RFC 8446, section
// 5.2: the content, then the content type) in place in out, when the
// content is out[:m] followed by body. The result, out[:m+len(body)+1+
// a.Overhead()], is what copying body to out[m:] and typ after it, then
// sealing out[:m+len(body)+1] in place with a.Seal, would give; out must
// have that room, and body must not overlap out. Where a is the assembly
// implementation the cipher reads body straight from where it is, so the
// caller's copy of it into the record is not made.
func SealRecord(a cipher.AEAD, out []byte, m int, body []byte, typ byte, nonce, aad []byte) []byte {
	n := m + len(body) + 1
	out = out[:n+a.Overhead()]
	if overlaps(out, body) {
		panic("aesgcm: invalid buffer overlap")
	}
	if len(body) >= minGather && sealRecordAsm(a, out, m, body, typ, nonce, aad) {
		return out
	}
	copy(out[m:], body)
	out[n-1] = typ
	return a.Seal(out[:0], nonce, out[:n], aad)
}

// overlaps reports whether x and y share any memory.
func overlaps(x, y []byte) bool {
	if len(x) == 0 || len(y) == 0 {
		return false
	}
	xs, ys := uintptr(unsafe.Pointer(&x[0])), uintptr(unsafe.Pointer(&y[0]))
	return xs <= ys+uintptr(len(y)-1) && ys <= xs+uintptr(len(x)-1)
}

// sliceForAppend extends in by n bytes, reallocating when its capacity is
// short, and returns the whole slice and the n new bytes.
func sliceForAppend(in []byte, n int) (head, tail []byte) {
	if total := len(in) + n; cap(in) >= total {
		head = in[:total]
	} else {
		head = make([]byte, total)
		copy(head, in)
	}
	return head, head[len(in):]
}
