package aesgcm

import (
	"crypto/cipher"
	"crypto/subtle"
	"encoding/binary"
	"math/bits"
	"unsafe"

	"golang.org/x/sys/cpu"
)

// hasAVX512 is whether the CPU (and the kernel, which must save the 512-bit
// registers) can run asm_amd64.s.
var hasAVX512 = cpu.X86.HasAVX512F && cpu.X86.HasAVX512BW && cpu.X86.HasAVX512VL &&
	cpu.X86.HasAVX512VAES && cpu.X86.HasAVX512VPCLMULQDQ && cpu.X86.HasAES &&
	cpu.X86.HasPCLMULQDQ && cpu.X86.HasBMI2

// forceGeneric is set by tests to compare the two implementations on one
// machine.
var forceGeneric bool

// useAVX512 is whether New's assembly implementation is asm_amd64.s rather
// than avx2_amd64.s. Tests clear it to run the latter on CPUs with both.
var useAVX512 = hasAVX512

// Accelerated reports whether New returns the assembly implementation.
func Accelerated() bool { return (hasAVX512 || hasAVX2) && !forceGeneric }

// Implementation names what New returns on this CPU: "vaes-avx512"
// (asm_amd64.s), "vaes-avx2" (avx2_amd64.s) or "crypto/cipher". The perf
// harness records it, since it sets the cost of every byte HBONE carries.
func Implementation() string {
	switch {
	case !Accelerated():
		return implStd
	case useAVX512:
		return "vaes-avx512"
	default:
		return "vaes-avx2"
	}
}

// htabBlocks is the size of gcmAsm.htab: H^16..H^1, then 15 blocks the
// assembly may read past H^1 (multiplied only by zeros) when it hashes
// fewer than 16 blocks.
const htabBlocks = 16 + 15

// gcmAsm is the key-dependent state of the assembly. Its layout is the
// assembly's: do not reorder.
type gcmAsm struct {
	// ks is the AES key schedule, rounds+1 keys of 16 bytes.
	ks [15 * 16]byte
	// htab holds the hash key's powers H^16 (first) to H^1, each as the
	// assembly multiplies by it: byte-reflected and times x^-1 (see
	// setHashKey).
	htab [htabBlocks * 16]byte
	// rounds is 10, 12 or 14.
	rounds int
	// htabK holds, for each of htab's entries, the xor of its two halves
	// in the low 8 bytes: the Karatsuba factors avx2_amd64.s multiplies
	// by (zero past H^1, as in htab).
	htabK [htabBlocks * 16]byte
	// wide is whether crypt runs asm_amd64.s (512-bit registers) rather
	// than avx2_amd64.s.
	wide bool
}

// gcmState is one message's running state between calls of gcmCrypt. Its
// layout is the assembly's: do not reorder.
type gcmState struct {
	y   [16]byte // the running hash, as the assembly holds it
	ctr [16]byte // the counter block before the call's first: J0 at the start
	ej0 [16]byte // AES(J0), which masks the tag
	tag [16]byte // written by the finishing call
	// n and aadLen are the message's and the additional data's lengths
	// in bytes, for the finishing call's lengths block.
	n, aadLen uint64
}

// gcmCrypt's flags.
const (
	flagStart  = 1 << iota // encrypt J0 and hash aad: the message's first call
	flagFinish             // hash the lengths and write the tag: its last call
	flagOpen               // decrypt (hash src) rather than encrypt (hash dst)
)

// gcmCrypt, in asm_amd64.s, encrypts (or, with flagOpen, decrypts) n bytes
// of src into dst, carrying the message's state in st. Unless the call
// finishes the message, n must be a multiple of 16 and the caller moves
// st.ctr on by n/16 blocks (advance). aad is read only with flagStart. One
// call with flagStart|flagFinish seals or opens a whole message.
//
//go:noescape
func gcmCrypt(key *gcmAsm, st *gcmState, dst, src *byte, n int, aad *byte, aadLen int, flags int)

// start prepares st for a message under nonce, n bytes long with aadLen
// bytes of additional data.
func (st *gcmState) start(nonce []byte, n, aadLen int) {
	copy(st.ctr[:], nonce)
	st.ctr[12], st.ctr[13], st.ctr[14], st.ctr[15] = 0, 0, 0, 1
	st.n, st.aadLen = uint64(n), uint64(aadLen)
}

// crypt is gcmCrypt on the key's implementation: asm_amd64.s, or
// gcmCryptAVX2.
func (g *gcmAsm) crypt(st *gcmState, dst, src *byte, n int, aad *byte, aadLen int, flags int) {
	if g.wide {
		gcmCrypt(g, st, dst, src, n, aad, aadLen, flags)
	} else {
		gcmCryptAVX2(g, st, dst, src, n, aad, aadLen, flags)
	}
}

// advance moves the counter on past n bytes (a multiple of 16).
func (st *gcmState) advance(n int) {
	c := binary.BigEndian.Uint32(st.ctr[12:])
	binary.BigEndian.PutUint32(st.ctr[12:], c+uint32(n/16))
}

// mulAsm multiplies two elems on 128-bit registers (PCLMULQDQ) as the
// main loop does, for setHashKey; mul in the tests is its Go model.
//
//go:noescape
func mulAsm(a, b, out *[16]byte)

// subWord is AES's SubWord (FIPS 197, section 5.2), by AESENCLAST.
func subWord(w uint32) uint32

func newAsm(key []byte, block cipher.Block) *gcmAsm {
	g := &gcmAsm{wide: useAVX512}
	g.expandKey(key)
	var h [16]byte
	block.Encrypt(h[:], h[:])
	g.setHashKey(&h)
	return g
}

// expandKey writes the AES key schedule (FIPS 197, section 5.2).
func (g *gcmAsm) expandKey(key []byte) {
	nk := len(key) / 4
	g.rounds = nk + 6
	var w [60]uint32
	for i := range nk {
		w[i] = binary.BigEndian.Uint32(key[4*i:])
	}
	rcon := uint32(1)
	for i := nk; i < 4*(g.rounds+1); i++ {
		t := w[i-1]
		switch {
		case i%nk == 0:
			t = subWord(bits.RotateLeft32(t, 8)) ^ rcon<<24
			rcon <<= 1
			if rcon&0x100 != 0 {
				rcon ^= 0x11b
			}
		case nk > 6 && i%nk == 4:
			t = subWord(t)
		}
		w[i] = w[i-nk] ^ t
	}
	for i := range 4 * (g.rounds + 1) {
		binary.BigEndian.PutUint32(g.ks[4*i:], w[i])
	}
}

// elem is a GHASH field element as the assembly holds it: the block's
// bytes reversed, read as a 128-bit little-endian integer, so that bit 127
// is the coefficient of x^0 and bit 0 that of x^127.
type elem struct{ hi, lo uint64 }

func loadElem(b *[16]byte) elem {
	return elem{binary.BigEndian.Uint64(b[:8]), binary.BigEndian.Uint64(b[8:])}
}

func (e elem) put(b []byte) {
	binary.LittleEndian.PutUint64(b, e.lo)
	binary.LittleEndian.PutUint64(b[8:], e.hi)
}

// poly is x^-1 mod x^128+x^7+x^2+x+1, that is x^127+x^6+x+1, as an elem.
var poly = elem{0xc200000000000000, 1}

// setHashKey fills htab from H = AES_K(0^128). The assembly multiplies
// two reflected elements with carry-less multiplies, which yields a·b·x;
// every power is therefore stored times x^-1, which the shift below makes
// for H and mulAsm carries to the others.
func (g *gcmAsm) setHashKey(h *[16]byte) {
	e := loadElem(h)
	carry := e.hi >> 63
	e = elem{e.hi<<1 | e.lo>>63, e.lo << 1}
	mask := -carry // constant time
	e.hi ^= poly.hi & mask
	e.lo ^= poly.lo & mask
	h1 := (*[16]byte)(g.htab[15*16:])
	e.put(h1[:])
	for k := 2; k <= 16; k++ {
		mulAsm((*[16]byte)(g.htab[(17-k)*16:]), h1, (*[16]byte)(g.htab[(16-k)*16:]))
	}
	for i := range 16 {
		lo := binary.LittleEndian.Uint64(g.htab[16*i:])
		hi := binary.LittleEndian.Uint64(g.htab[16*i+8:])
		binary.LittleEndian.PutUint64(g.htabK[16*i:], lo^hi)
	}
}

func (g *gcmAsm) NonceSize() int { return NonceSize }
func (g *gcmAsm) Overhead() int  { return TagSize }

func (g *gcmAsm) Seal(dst, nonce, plaintext, aad []byte) []byte {
	if len(nonce) != NonceSize {
		panic("aesgcm: incorrect nonce length given to GCM")
	}
	if uint64(len(plaintext)) > maxText {
		panic("aesgcm: message too large for GCM")
	}
	ret, out := sliceForAppend(dst, len(plaintext)+TagSize)
	if inexactOverlap(out, plaintext) {
		panic("aesgcm: invalid buffer overlap")
	}
	var st gcmState
	st.start(nonce, len(plaintext), len(aad))
	g.crypt(&st, unsafe.SliceData(out), unsafe.SliceData(plaintext), len(plaintext),
		unsafe.SliceData(aad), len(aad), flagStart|flagFinish)
	copy(out[len(plaintext):], st.tag[:])
	return ret
}

func (g *gcmAsm) Open(dst, nonce, ciphertext, aad []byte) ([]byte, error) {
	if len(nonce) != NonceSize {
		panic("aesgcm: incorrect nonce length given to GCM")
	}
	if len(ciphertext) < TagSize || uint64(len(ciphertext)) > maxText+TagSize {
		return nil, errOpen
	}
	n := len(ciphertext) - TagSize
	ret, out := sliceForAppend(dst, n)
	if inexactOverlap(out, ciphertext) {
		panic("aesgcm: invalid buffer overlap")
	}
	var st gcmState
	st.start(nonce, n, len(aad))
	g.crypt(&st, unsafe.SliceData(out), unsafe.SliceData(ciphertext), n,
		unsafe.SliceData(aad), len(aad), flagStart|flagFinish|flagOpen)
	if subtle.ConstantTimeCompare(st.tag[:], ciphertext[n:]) != 1 {
		clear(out)
		return nil, errOpen
	}
	return ret, nil
}

// sealRecordAsm is SealRecord's assembly path: it reports false, having
// done nothing, when a is not the assembly implementation.
func sealRecordAsm(a cipher.AEAD, out []byte, m int, body []byte, typ byte, nonce, aad []byte) bool {
	g, ok := a.(*gcmAsm)
	if !ok {
		return false
	}
	if len(nonce) != NonceSize {
		panic("aesgcm: incorrect nonce length given to GCM")
	}
	if uint64(len(out)-TagSize) > maxText {
		panic("aesgcm: message too large for GCM")
	}
	g.sealRecord(out, m, body, typ, nonce, aad)
	return true
}

// sealRecord is SealRecord's assembly path. It runs the message in three
// calls: out[:m] and the first bytes of body, up to a block boundary, in
// place; the blocks of body that follow, from body into out; and the last
// bytes of body with typ, copied into out, in place.
// body must be at least 16 bytes long, so that the first call ends on a
// block boundary.
func (g *gcmAsm) sealRecord(out []byte, m int, body []byte, typ byte, nonce, aad []byte) {
	n := m + len(body) + 1
	var st gcmState
	st.start(nonce, n, len(aad))
	head := m + (16-m%16)%16
	copy(out[m:head], body)
	g.crypt(&st, unsafe.SliceData(out), unsafe.SliceData(out), head,
		unsafe.SliceData(aad), len(aad), flagStart)
	st.advance(head)
	body = body[head-m:]
	if mid := len(body) &^ 15; mid > 0 {
		g.crypt(&st, &out[head], &body[0], mid, nil, 0, 0)
		st.advance(mid)
		head += mid
		body = body[mid:]
	}
	copy(out[head:], body)
	out[n-1] = typ
	g.crypt(&st, &out[head], &out[head], n-head, nil, 0, flagFinish)
	copy(out[n:], st.tag[:])
}

// inexactOverlap reports whether x and y share memory other than at the
// same start, which in-place sealing and opening cannot allow.
func inexactOverlap(x, y []byte) bool {
	if len(x) == 0 || len(y) == 0 {
		return false
	}
	xs, ys := uintptr(unsafe.Pointer(&x[0])), uintptr(unsafe.Pointer(&y[0]))
	if xs == ys {
		return false
	}
	return xs <= ys+uintptr(len(y)-1) && ys <= xs+uintptr(len(x)-1)
}
