package aesgcm

import (
	"encoding/binary"
	"unsafe"

	"golang.org/x/sys/cpu"
)

// hasAVX2 is whether the CPU runs avx2_amd64.s: VAES and VPCLMULQDQ on
// 256-bit registers, which AMD's Zen 3 has without AVX-512. x/sys/cpu
// reports VAES and VPCLMULQDQ only with AVX-512, so CPUID is read here;
// HasAVX2 already includes the kernel's saving of the 256-bit registers.
var hasAVX2 = func() bool {
	if !cpu.X86.HasAVX2 || !cpu.X86.HasAES || !cpu.X86.HasPCLMULQDQ {
		return false
	}
	const vaes, vpclmulqdq = 1 << 9, 1 << 10
	_, _, ecx, _ := cpuid(7, 0)
	return ecx&vaes != 0 && ecx&vpclmulqdq != 0
}()

// chunk is the unit of avx2_amd64.s: eight blocks.
const chunk = 128

// ctrAVX2, in avx2_amd64.s, encrypts (or, with open, decrypts) n bytes of
// src into dst, a multiple of chunk, under the counter blocks that follow
// *ctr, and hashes the ciphertext into *y. Of the last chunk only its first
// last bytes (1 to chunk) are hashed.
//
//go:noescape
func ctrAVX2(key *gcmAsm, y, ctr *[16]byte, dst, src *byte, n, last int, open bool)

// ghashAVX2, in avx2_amd64.s, hashes n bytes at p (a multiple of chunk)
// into *y. The last chunk is hashed as ceil(last/16) blocks, and its bytes
// past last must be zero.
//
//go:noescape
func ghashAVX2(key *gcmAsm, y *[16]byte, p *byte, n, last int)

// ghash1, in avx2_amd64.s, hashes one block into *y.
//
//go:noescape
func ghash1(key *gcmAsm, y, blk *[16]byte)

// encryptBlock, in avx2_amd64.s, is AES under key of one block.
//
//go:noescape
func encryptBlock(key *gcmAsm, dst, src *[16]byte)

// cpuid, in avx2_amd64.s, is the CPUID instruction.
func cpuid(leaf, sub uint32) (eax, ebx, ecx, edx uint32)

// gcmCryptAVX2 is gcmCrypt (same arguments, same contract) on
// avx2_amd64.s. A part shorter than a chunk (a message's tail, additional
// data's tail) is copied into a zeroed chunk on the stack, run there, and
// copied out; a single block (TLS's five bytes of additional data, the
// lengths) goes to ghash1. So the assembly never reads or writes past the
// caller's bytes.
func gcmCryptAVX2(key *gcmAsm, st *gcmState, dst, src *byte, n int, aad *byte, aadLen int, flags int) {
	if flags&flagStart != 0 {
		st.y = [16]byte{}
		encryptBlock(key, &st.ej0, &st.ctr)
		if aadLen > 0 {
			hashAVX2(key, &st.y, unsafe.Slice(aad, aadLen))
		}
	}
	ctr := st.ctr
	open := flags&flagOpen != 0
	whole := n &^ (chunk - 1)
	if whole > 0 {
		ctrAVX2(key, &st.y, &ctr, dst, src, whole, chunk, open)
		binary.BigEndian.PutUint32(ctr[12:], binary.BigEndian.Uint32(ctr[12:])+uint32(whole/16))
	}
	if rest := n - whole; rest > 0 {
		// Sliced, not pointer arithmetic: dst+whole is past the end when
		// nothing is left (checkptr rejects it).
		var buf [chunk]byte
		copy(buf[:], unsafe.Slice(src, n)[whole:])
		ctrAVX2(key, &st.y, &ctr, &buf[0], &buf[0], chunk, rest, open)
		copy(unsafe.Slice(dst, n)[whole:], buf[:rest])
	}
	if flags&flagFinish != 0 {
		var lengths [16]byte
		binary.BigEndian.PutUint64(lengths[:], st.aadLen*8)
		binary.BigEndian.PutUint64(lengths[8:], st.n*8)
		ghash1(key, &st.y, &lengths)
		for i := range st.tag {
			st.tag[i] = st.y[15-i] ^ st.ej0[i]
		}
	}
}

// hashAVX2 hashes b, zero-padded to a whole block, into *y.
func hashAVX2(key *gcmAsm, y *[16]byte, b []byte) {
	if len(b) <= 16 { // TLS 1.3's five bytes
		var blk [16]byte
		copy(blk[:], b)
		ghash1(key, y, &blk)
		return
	}
	if whole := len(b) &^ (chunk - 1); whole > 0 {
		ghashAVX2(key, y, &b[0], whole, chunk)
		b = b[whole:]
	}
	if len(b) > 0 {
		var buf [chunk]byte
		copy(buf[:], b)
		ghashAVX2(key, y, &buf[0], chunk, len(b))
	}
}
