// AES-GCM with VAES and VPCLMULQDQ on 256-bit registers (AVX2, no AVX-512),
// as AMD's Zen 3 has them: eight blocks (128 bytes) per loop, two to a
// register. This is the shape of asm_amd64.s on half the width, with two
// differences that the sixteen registers and the lack of byte masks force:
//   - The functions take whole 128-byte chunks only. gcmCryptAVX2 (in
//     avx2_amd64.go) runs a message's last partial chunk, and additional
//     data longer than a block, through a zeroed 128-byte buffer (ghash1
//     hashes a single block: short additional data, the lengths). "last"
//     is how many of the call's last chunk's bytes count: the hash of that
//     chunk uses the powers of ceil(last/16) blocks, and sealing zeroes the
//     ciphertext past it before hashing.
//   - Nothing but the running hash stays in registers between a loop's
//     rounds: the hash reads its blocks from memory as it multiplies them
//     (opening, the source; sealing, the previous loop's output at DI-128),
//     and the keystream is xored with the source read again.
// The hash's multiplications sit between the AES rounds as in asm_amd64.s.
//
// Registers:
//   Y0-Y3   counter blocks, then keystream
//   Y4      the block pair being hashed (byte-reversed)
//   Y5      scratch
//   Y6-Y8   products: low, middle, high
//   Y9      the current round key, in both lanes
//   Y10     byte-reversal mask
//   X11     Y, the running hash (the upper lane stays zero)
//   Y12     next counters, byte-reversed so that the 32-bit counter is
//           dword 0 of each lane
//   Y13     2 in dword 0 of each lane
//   X14     poly (x^-1)
//   AX key, BX rounds, CX the hash's address, DX bytes left, SI src,
//   DI dst, R8 1 while a sealing loop's output waits to be hashed, R9 last,
//   R10 the loop's powers, R11 the mask for last, R12 the last chunk's
//   powers, R13 scratch

#include "textflag.h"

// Offsets in gcmAsm, as in asm_amd64.s, and htabK's from htab's (TestLayout
// checks them).
#define HTAB 240
#define ROUNDS 736
#define HTABK 744
#define KOFF (HTABK-HTAB)

// bswapMask2 reverses the 16 bytes of each lane.
DATA bswapMask2<>+0x00(SB)/8, $0x08090a0b0c0d0e0f
DATA bswapMask2<>+0x08(SB)/8, $0x0001020304050607
DATA bswapMask2<>+0x10(SB)/8, $0x08090a0b0c0d0e0f
DATA bswapMask2<>+0x18(SB)/8, $0x0001020304050607
GLOBL bswapMask2<>(SB), RODATA|NOPTR, $32

DATA poly2<>+0x00(SB)/8, $0x0000000000000001
DATA poly2<>+0x08(SB)/8, $0xc200000000000000
GLOBL poly2<>(SB), RODATA|NOPTR, $16

// laneInc2 makes the two lanes of the first counters the counter block's
// successors, 1 and 2 past it.
DATA laneInc2<>+0x00(SB)/8, $1
DATA laneInc2<>+0x08(SB)/8, $0
DATA laneInc2<>+0x10(SB)/8, $2
DATA laneInc2<>+0x18(SB)/8, $0
GLOBL laneInc2<>(SB), RODATA|NOPTR, $32

DATA two<>+0x00(SB)/8, $2
DATA two<>+0x08(SB)/8, $0
GLOBL two<>(SB), RODATA|NOPTR, $16

// keepMask is 128 bytes of ones, then 128 of zeros: at keepMask+128-last,
// 128 bytes that keep a chunk's first last bytes.
DATA keepMask<>+0x00(SB)/8, $-1
DATA keepMask<>+0x08(SB)/8, $-1
DATA keepMask<>+0x10(SB)/8, $-1
DATA keepMask<>+0x18(SB)/8, $-1
DATA keepMask<>+0x20(SB)/8, $-1
DATA keepMask<>+0x28(SB)/8, $-1
DATA keepMask<>+0x30(SB)/8, $-1
DATA keepMask<>+0x38(SB)/8, $-1
DATA keepMask<>+0x40(SB)/8, $-1
DATA keepMask<>+0x48(SB)/8, $-1
DATA keepMask<>+0x50(SB)/8, $-1
DATA keepMask<>+0x58(SB)/8, $-1
DATA keepMask<>+0x60(SB)/8, $-1
DATA keepMask<>+0x68(SB)/8, $-1
DATA keepMask<>+0x70(SB)/8, $-1
DATA keepMask<>+0x78(SB)/8, $-1
DATA keepMask<>+0x80(SB)/8, $0
DATA keepMask<>+0x88(SB)/8, $0
DATA keepMask<>+0x90(SB)/8, $0
DATA keepMask<>+0x98(SB)/8, $0
DATA keepMask<>+0xa0(SB)/8, $0
DATA keepMask<>+0xa8(SB)/8, $0
DATA keepMask<>+0xb0(SB)/8, $0
DATA keepMask<>+0xb8(SB)/8, $0
DATA keepMask<>+0xc0(SB)/8, $0
DATA keepMask<>+0xc8(SB)/8, $0
DATA keepMask<>+0xd0(SB)/8, $0
DATA keepMask<>+0xd8(SB)/8, $0
DATA keepMask<>+0xe0(SB)/8, $0
DATA keepMask<>+0xe8(SB)/8, $0
DATA keepMask<>+0xf0(SB)/8, $0
DATA keepMask<>+0xf8(SB)/8, $0
GLOBL keepMask<>(SB), RODATA|NOPTR, $256

// LOADREV loads the block pair at m into Y4, byte-reversed.
#define LOADREV(m) \
	VMOVDQU m, Y4; \
	VPSHUFB Y10, Y4, Y4

// LOADFIRST is LOADREV for a loop's first pair, with Y folded into block 0.
#define LOADFIRST(m) \
	LOADREV(m); \
	VPXOR   Y11, Y4, Y4

// MULFIRST starts the products with Y4 times the powers at p, the middle
// one by Karatsuba: (a.hi^a.lo)·(h.hi^h.lo), with h.hi^h.lo at p+KOFF
// (htabK), which FOLDALL corrects by the low and high products. Three
// multiplies per block pair instead of four: VPCLMULQDQ is the scarce
// port here (one per two cycles, shared with VAESENC).
#define MULFIRST(p, k) \
	VPCLMULQDQ $0x00, p, Y4, Y6; \
	VPCLMULQDQ $0x11, p, Y4, Y8; \
	VPSHUFD    $0x4e, Y4, Y5; \
	VPXOR      Y4, Y5, Y5; \
	VPCLMULQDQ $0x00, k, Y5, Y7

// MULNEXT adds Y4 times the powers at p (and k) to the products.
#define MULNEXT(p, k) \
	VPCLMULQDQ $0x00, p, Y4, Y5; \
	VPXOR      Y5, Y6, Y6; \
	VPCLMULQDQ $0x11, p, Y4, Y5; \
	VPXOR      Y5, Y8, Y8; \
	VPSHUFD    $0x4e, Y4, Y5; \
	VPXOR      Y4, Y5, Y5; \
	VPCLMULQDQ $0x00, k, Y5, Y5; \
	VPXOR      Y5, Y7, Y7

// FOLDALL sums the products' two lanes, turns the Karatsuba middle product
// into the true one (xoring in the low and high), and splits it into the
// low (X6) and high (X8) halves.
#define FOLDALL \
	VEXTRACTI128 $1, Y6, X5; \
	VPXOR        X5, X6, X6; \
	VEXTRACTI128 $1, Y7, X5; \
	VPXOR        X5, X7, X7; \
	VEXTRACTI128 $1, Y8, X5; \
	VPXOR        X5, X8, X8; \
	VPXOR        X6, X7, X7; \
	VPXOR        X8, X7, X7; \
	VPSLLDQ      $8, X7, X5; \
	VPXOR        X5, X6, X6; \
	VPSRLDQ      $8, X7, X7; \
	VPXOR        X7, X8, X8

// REDUCE1 and REDUCE2 reduce the 256-bit sum modulo the polynomial into Y
// (a VEX write of X11 clears its upper lane).
#define REDUCE1 \
	VPCLMULQDQ $0x01, X6, X14, X5; \
	VPSHUFD    $0x4e, X6, X6; \
	VPXOR      X5, X6, X6

#define REDUCE2 \
	VPCLMULQDQ $0x01, X6, X14, X5; \
	VPSHUFD    $0x4e, X6, X6; \
	VPXOR      X5, X6, X6; \
	VPXOR      X8, X6, X11

#define AESROUND(off) \
	VBROADCASTI128 off(AX), Y9; \
	VAESENC Y9, Y0, Y0; \
	VAESENC Y9, Y1, Y1; \
	VAESENC Y9, Y2, Y2; \
	VAESENC Y9, Y3, Y3

// NEXTCOUNTERS puts the next eight counter blocks in Y0-Y3, xored with
// round key 0.
#define NEXTCOUNTERS \
	VPSHUFB Y10, Y12, Y0; \
	VPADDD  Y13, Y12, Y12; \
	VPSHUFB Y10, Y12, Y1; \
	VPADDD  Y13, Y12, Y12; \
	VPSHUFB Y10, Y12, Y2; \
	VPADDD  Y13, Y12, Y12; \
	VPSHUFB Y10, Y12, Y3; \
	VPADDD  Y13, Y12, Y12; \
	VBROADCASTI128 (AX), Y9; \
	VPXOR   Y9, Y0, Y0; \
	VPXOR   Y9, Y1, Y1; \
	VPXOR   Y9, Y2, Y2; \
	VPXOR   Y9, Y3, Y3

// STITCHED runs rounds 1-9 on Y0-Y3 (xored with round key 0 already) and,
// between them, hashes the four block pairs at m0-m3 (the first with Y
// folded in) with the powers at R10 into Y. m0-m3 are read through LOADREV,
// or MASKREV when sealing's last chunk needs its tail zeroed.
#define STITCHED(m0, m1, m2, m3) \
	LOADFIRST(m0); \
	AESROUND(16); \
	MULFIRST((R10), KOFF(R10)); \
	LOADREV(m1); \
	AESROUND(32); \
	MULNEXT(32(R10), KOFF+32(R10)); \
	LOADREV(m2); \
	AESROUND(48); \
	MULNEXT(64(R10), KOFF+64(R10)); \
	LOADREV(m3); \
	AESROUND(64); \
	MULNEXT(96(R10), KOFF+96(R10)); \
	AESROUND(80); \
	FOLDALL; \
	AESROUND(96); \
	REDUCE1; \
	AESROUND(112); \
	REDUCE2; \
	AESROUND(128); \
	AESROUND(144)

// GHASH hashes the four block pairs at m into Y with the powers at R10.
// Only the first pair takes LOADFIRST; the others are read with LOADREV.
#define GHASH(m0, m1, m2, m3) \
	LOADFIRST(m0); \
	MULFIRST((R10), KOFF(R10)); \
	LOADREV(m1); \
	MULNEXT(32(R10), KOFF+32(R10)); \
	LOADREV(m2); \
	MULNEXT(64(R10), KOFF+64(R10)); \
	LOADREV(m3); \
	MULNEXT(96(R10), KOFF+96(R10)); \
	FOLDALL; \
	REDUCE1; \
	REDUCE2

// LASTKEY points R13 at the last round key and compares the rounds with 12,
// for the jumps over rounds 10-13.
#define LASTKEY \
	MOVQ BX, R13; \
	SHLQ $4, R13; \
	ADDQ AX, R13; \
	CMPQ BX, $12

// LASTROUND runs the final round with the key at R13.
#define LASTROUND \
	VBROADCASTI128 (R13), Y9; \
	VAESENCLAST Y9, Y0, Y0; \
	VAESENCLAST Y9, Y1, Y1; \
	VAESENCLAST Y9, Y2, Y2; \
	VAESENCLAST Y9, Y3, Y3

// XORSTORE xors the source chunk into the keystream and stores it at DI.
#define XORSTORE \
	VPXOR   (SI), Y0, Y0; \
	VPXOR   32(SI), Y1, Y1; \
	VPXOR   64(SI), Y2, Y2; \
	VPXOR   96(SI), Y3, Y3; \
	VMOVDQU Y0, (DI); \
	VMOVDQU Y1, 32(DI); \
	VMOVDQU Y2, 64(DI); \
	VMOVDQU Y3, 96(DI)

// ADVANCE moves past one chunk.
#define ADVANCE \
	ADDQ $128, SI; \
	ADDQ $128, DI; \
	SUBQ $128, DX

// CONSTANTS loads the byte-reversal mask and the polynomial, and points R12
// at the powers of the last chunk's ceil(last/16) blocks and R11 at its
// mask.
#define CONSTANTS \
	VMOVDQU bswapMask2<>(SB), Y10; \
	VMOVDQU poly2<>(SB), X14; \
	LEAQ    15(R9), R13; \
	ANDQ    $-16, R13; \
	LEAQ    HTAB+256(AX), R12; \
	SUBQ    R13, R12; \
	LEAQ    keepMask<>+128(SB), R11; \
	SUBQ    R9, R11

// CHUNKPOWERS points R10 at the powers for the chunk at hand: H^8..H^1, or
// the last chunk's when DX says it is the last.
#define CHUNKPOWERS \
	LEAQ    HTAB+128(AX), R10; \
	CMPQ    DX, $128; \
	CMOVQEQ R12, R10

// func ctrAVX2(key *gcmAsm, y, ctr *[16]byte, dst, src *byte, n, last int, open bool)
// Encrypts (or, opening, decrypts) n bytes (whole chunks) of src into dst
// under the counters after *ctr, and hashes the ciphertext into *y. Of the
// last chunk, only the first last bytes are hashed.
TEXT ·ctrAVX2(SB), NOSPLIT, $0-57
	MOVQ key+0(FP), AX
	MOVQ y+8(FP), CX
	MOVQ dst+24(FP), DI
	MOVQ src+32(FP), SI
	MOVQ n+40(FP), DX
	MOVQ last+48(FP), R9
	MOVQ ROUNDS(AX), BX
	CONSTANTS
	MOVQ ctr+16(FP), R13
	VMOVDQU (CX), X11
	VMOVDQU (R13), X12
	VPSHUFB X10, X12, X12
	VPERMQ  $0x44, Y12, Y12
	VPADDD  laneInc2<>(SB), Y12, Y12
	VBROADCASTI128 two<>(SB), Y13
	CMPB    open+56(FP), $0
	JEQ     sealData

// Opening hashes the ciphertext it decrypts, between the same loop's
// rounds.
openLoop:
	TESTQ DX, DX
	JZ    done
	CHUNKPOWERS
	NEXTCOUNTERS
	STITCHED((SI), 32(SI), 64(SI), 96(SI))
	LASTKEY
	JB   openLastRound
	AESROUND(160)
	AESROUND(176)
	JE   openLastRound
	AESROUND(192)
	AESROUND(208)

openLastRound:
	LASTROUND
	XORSTORE
	ADVANCE
	JMP  openLoop

// Sealing hashes its output: each loop hashes the previous loop's, at
// DI-128, between its rounds, and sealDrain hashes the last loop's.
sealData:
	XORL R8, R8

sealLoop:
	TESTQ DX, DX
	JZ    sealDrain
	NEXTCOUNTERS
	TESTQ R8, R8
	JNZ   sealStitched
	AESROUND(16)
	AESROUND(32)
	AESROUND(48)
	AESROUND(64)
	AESROUND(80)
	AESROUND(96)
	AESROUND(112)
	AESROUND(128)
	AESROUND(144)

sealRest:
	LASTKEY
	JB   sealLastRound
	AESROUND(160)
	AESROUND(176)
	JE   sealLastRound
	AESROUND(192)
	AESROUND(208)

sealLastRound:
	LASTROUND
	XORSTORE
	MOVL $1, R8
	ADVANCE
	JMP  sealLoop

// The previous loop's output is a whole chunk that was not the last, so its
// powers are H^8..H^1.
sealStitched:
	LEAQ HTAB+128(AX), R10
	STITCHED(-128(DI), -96(DI), -64(DI), -32(DI))
	JMP  sealRest

// The last chunk's output, with the bytes past last zeroed.
sealDrain:
	MOVQ R12, R10
	VMOVDQU -128(DI), Y4
	VPAND   (R11), Y4, Y4
	VPSHUFB Y10, Y4, Y4
	VPXOR   Y11, Y4, Y4
	MULFIRST((R10), KOFF(R10))
	VMOVDQU -96(DI), Y4
	VPAND   32(R11), Y4, Y4
	VPSHUFB Y10, Y4, Y4
	MULNEXT(32(R10), KOFF+32(R10))
	VMOVDQU -64(DI), Y4
	VPAND   64(R11), Y4, Y4
	VPSHUFB Y10, Y4, Y4
	MULNEXT(64(R10), KOFF+64(R10))
	VMOVDQU -32(DI), Y4
	VPAND   96(R11), Y4, Y4
	VPSHUFB Y10, Y4, Y4
	MULNEXT(96(R10), KOFF+96(R10))
	FOLDALL
	REDUCE1
	REDUCE2

done:
	VMOVDQU X11, (CX)
	VZEROUPPER
	RET

// func ghashAVX2(key *gcmAsm, y *[16]byte, p *byte, n, last int)
// Hashes n bytes (whole chunks) at p into *y; the last chunk's powers are
// those of ceil(last/16) blocks, and its bytes past last must be zero.
TEXT ·ghashAVX2(SB), NOSPLIT, $0-40
	MOVQ key+0(FP), AX
	MOVQ y+8(FP), CX
	MOVQ p+16(FP), SI
	MOVQ n+24(FP), DX
	MOVQ last+32(FP), R9
	CONSTANTS
	VMOVDQU (CX), X11

hashLoop:
	TESTQ DX, DX
	JZ    hashDone
	CHUNKPOWERS
	GHASH((SI), 32(SI), 64(SI), 96(SI))
	ADDQ  $128, SI
	SUBQ  $128, DX
	JMP   hashLoop

hashDone:
	VMOVDQU X11, (CX)
	VZEROUPPER
	RET

// func encryptBlock(key *gcmAsm, dst, src *[16]byte)
TEXT ·encryptBlock(SB), NOSPLIT, $0-24
	MOVQ key+0(FP), AX
	MOVQ dst+8(FP), DI
	MOVQ src+16(FP), SI
	MOVQ ROUNDS(AX), BX
	VMOVDQU (SI), X0
	VPXOR   (AX), X0, X0
	LEAQ    16(AX), R13
	DECQ    BX

encryptRounds:
	VAESENC (R13), X0, X0
	ADDQ    $16, R13
	DECQ    BX
	JNZ     encryptRounds
	VAESENCLAST (R13), X0, X0
	VMOVDQU X0, (DI)
	RET

// func cpuid(leaf, sub uint32) (eax, ebx, ecx, edx uint32)
TEXT ·cpuid(SB), NOSPLIT, $0-24
	MOVL leaf+0(FP), AX
	MOVL sub+4(FP), CX
	CPUID
	MOVL AX, eax+8(FP)
	MOVL BX, ebx+12(FP)
	MOVL CX, ecx+16(FP)
	MOVL DX, edx+20(FP)
	RET

// func ghash1(key *gcmAsm, y, blk *[16]byte)
// Hashes one block into *y: y = (y^blk)·H, for the additional data and the
// lengths block when they fit in one.
TEXT ·ghash1(SB), NOSPLIT, $0-24
	MOVQ key+0(FP), AX
	MOVQ y+8(FP), CX
	MOVQ blk+16(FP), SI
	VMOVDQU bswapMask2<>(SB), Y10
	VMOVDQU poly2<>(SB), X14
	VMOVDQU (SI), X4
	VPSHUFB X10, X4, X4
	VPXOR   (CX), X4, X4
	// H^1 is the last power; the 16 bytes after it (the upper lane's
	// powers) are zero, and so is Y4's upper lane.
	LEAQ HTAB+240(AX), R10
	MULFIRST((R10), KOFF(R10))
	FOLDALL
	REDUCE1
	REDUCE2
	VMOVDQU X11, (CX)
	VZEROUPPER
	RET
