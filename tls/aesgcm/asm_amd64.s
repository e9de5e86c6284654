// AES-GCM with VAES and VPCLMULQDQ on 512-bit registers: sixteen blocks
// (256 bytes) per loop, four to a register. Every loop, including the last
// partial one and the additional data's, runs the same code under byte
// masks, so there is no separate tail path: masked loads read nothing past
// the end and zero the rest, and zero blocks add nothing to the hash.
//
// GHASH works on blocks with their bytes reversed (the elem type in
// asm_amd64.go). A loop of T <= 16 blocks multiplies block i by H^(T-i),
// after folding the running hash Y into block 0, and sums the 512-bit
// products before a single reduction:
//   Y' = (Y^B0)·H^T ^ B1·H^(T-1) ^ ... ^ B(T-1)·H.
// htab holds H^16..H^1, so block i's power is at htab+(16-T+i)*16.
//
// The hash's multiplications sit between a loop's AES rounds ("stitched",
// STITCHED): VAESENC runs on port 0 and VPCLMULQDQ on port 5, and
// interleaving them in program order keeps both busy. Opening hashes the
// ciphertext it decrypts in the same loop. Sealing hashes its output, which
// a loop has only at its end, so each sealing loop hashes the previous
// loop's ciphertext between its rounds, and the last one is hashed after
// the loop.
//
// A message may take several calls (SealRecord's gather): each call's
// running hash and AES(J0) wait in a gcmState between them, and every call
// but the last covers whole blocks, so no call starts inside a block.
//
// Registers:
//   Z0-Z3   counter blocks, then keystream
//   Z4-Z7   data blocks (byte-reversed for the hash)
//   Z8-Z10  products: low, middle, high
//   Z11-Z14 scratch
//   Z15     Y (lane 0; the other lanes stay zero)
//   Z16     the current round key, in all four lanes
//   Z17     byte-reversal mask
//   X18     poly (x^-1)
//   Z19     next counters, byte-reversed so that the 32-bit counter is
//           dword 0 of each lane
//   Z20     4 in dword 0 of each lane
//   X21     AES(J0), which masks the tag
//   Z22-Z25 the ciphertext as loaded, when opening
//   K1-K4   byte masks of the loop's four registers
//   AX key, BX rounds, CX loop length, DX bytes left, SI src, DI dst,
//   R8 additional data (when sealing, then 1 while a loop's ciphertext
//   waits to be hashed), R9 its bytes left, R10 the loop's first power,
//   R11 all ones, R12 R13 scratch

#include "textflag.h"

// Offsets in gcmAsm (TestLayout checks them): htab (H^16 first, H^1 at
// HTAB+240, the end of the powers at HTAB+256) and rounds.
#define HTAB 240
#define ROUNDS 736

// Offsets in gcmState (TestLayout checks them too), and gcmCrypt's flags.
#define STY 0
#define STCTR 16
#define STEJ0 32
#define STTAG 48
#define STN 64
#define STAADLEN 72
#define flagStart 1
#define flagFinish 2
#define flagOpen 4

// bswapMask reverses the 16 bytes of each lane.
DATA bswapMask<>+0x00(SB)/8, $0x08090a0b0c0d0e0f
DATA bswapMask<>+0x08(SB)/8, $0x0001020304050607
GLOBL bswapMask<>(SB), RODATA|NOPTR, $16

DATA polyConst<>+0x00(SB)/8, $0x0000000000000001
DATA polyConst<>+0x08(SB)/8, $0xc200000000000000
GLOBL polyConst<>(SB), RODATA|NOPTR, $16

// laneInc makes lanes 0-3 of the first loop counters 2-5 from J0's 1.
DATA laneInc<>+0x00(SB)/8, $1
DATA laneInc<>+0x08(SB)/8, $0
DATA laneInc<>+0x10(SB)/8, $2
DATA laneInc<>+0x18(SB)/8, $0
DATA laneInc<>+0x20(SB)/8, $3
DATA laneInc<>+0x28(SB)/8, $0
DATA laneInc<>+0x30(SB)/8, $4
DATA laneInc<>+0x38(SB)/8, $0
GLOBL laneInc<>(SB), RODATA|NOPTR, $64

DATA four<>+0x00(SB)/8, $4
DATA four<>+0x08(SB)/8, $0
GLOBL four<>(SB), RODATA|NOPTR, $16

// GROUPMASK sets K to the bytes of this loop's register at byte off:
// min(max(CX-off, 0), 64) low bits.
#define GROUPMASK(off, K) \
	XORL  R13, R13; \
	MOVQ  CX, R12; \
	SUBQ  $off, R12; \
	CMOVQLT R13, R12; \
	MOVL  $64, R13; \
	CMPQ  R12, R13; \
	CMOVQGT R13, R12; \
	BZHIQ R12, R11, R12; \
	KMOVQ R12, K

// SETUPLOOP sets CX to min(left, 256), the masks, and R10 to
// htab+(16-T)*16 where T = ceil(CX/16).
#define SETUPLOOP(left) \
	MOVQ left, CX; \
	MOVL $256, R12; \
	CMPQ CX, R12; \
	CMOVQGT R12, CX; \
	GROUPMASK(0, K1); \
	GROUPMASK(64, K2); \
	GROUPMASK(128, K3); \
	GROUPMASK(192, K4); \
	LEAQ  15(CX), R12; \
	ANDQ  $-16, R12; \
	LEAQ  HTAB+256(AX), R10; \
	SUBQ  R12, R10

// LOADMASKED loads up to 256 bytes at p under K1-K4 into Z4-Z7.
#define LOADMASKED(p) \
	VMOVDQU8.Z (p), K1, Z4; \
	VMOVDQU8.Z 64(p), K2, Z5; \
	VMOVDQU8.Z 128(p), K3, Z6; \
	VMOVDQU8.Z 192(p), K4, Z7

// REVERSEDATA reverses the blocks of Z4-Z7 and folds Y into block 0.
#define REVERSEDATA \
	VPSHUFB Z17, Z4, Z4; \
	VPSHUFB Z17, Z5, Z5; \
	VPSHUFB Z17, Z6, Z6; \
	VPSHUFB Z17, Z7, Z7; \
	VPXORQ  Z15, Z4, Z4

// FOLDLANES xors the four lanes of Z into its lane 0 (X).
#define FOLDLANES(Z, Y, X) \
	VEXTRACTI64X4 $1, Z, Y11; \
	VPXORQ        Y11, Y, Y; \
	VEXTRACTI128  $1, Y, X11; \
	VPXOR         X11, X, X

// MULFIRST starts the products with Z4 times the powers at p.
#define MULFIRST(p) \
	VPCLMULQDQ $0x00, p, Z4, Z8; \
	VPCLMULQDQ $0x11, p, Z4, Z10; \
	VPCLMULQDQ $0x01, p, Z4, Z9; \
	VPCLMULQDQ $0x10, p, Z4, Z11; \
	VPXORQ     Z11, Z9, Z9

// MULNEXT adds Z times the powers at p to the products.
#define MULNEXT(p, Z) \
	VPCLMULQDQ $0x00, p, Z, Z11; \
	VPCLMULQDQ $0x11, p, Z, Z12; \
	VPCLMULQDQ $0x01, p, Z, Z13; \
	VPCLMULQDQ $0x10, p, Z, Z14; \
	VPXORQ     Z11, Z8, Z8; \
	VPXORQ     Z12, Z10, Z10; \
	VPTERNLOGD $0x96, Z13, Z14, Z9

// FOLDALL sums the products' lanes and splits the middle product into the
// low (X8) and high (X10) halves.
#define FOLDALL \
	FOLDLANES(Z8, Y8, X8); \
	FOLDLANES(Z9, Y9, X9); \
	FOLDLANES(Z10, Y10, X10); \
	VPSLLDQ    $8, X9, X11; \
	VPXOR      X11, X8, X8; \
	VPSRLDQ    $8, X9, X9; \
	VPXOR      X9, X10, X10

// REDUCE1 and REDUCE2 reduce the 256-bit sum modulo the polynomial into Y.
#define REDUCE1 \
	VPCLMULQDQ $0x01, X8, X18, X11; \
	VPSHUFD    $0x4e, X8, X8; \
	VPXOR      X11, X8, X8

#define REDUCE2 \
	VPCLMULQDQ $0x01, X8, X18, X11; \
	VPSHUFD    $0x4e, X8, X8; \
	VPXOR      X11, X8, X8; \
	VPXOR      X10, X8, X15

// GHASH multiplies Z4-Z7 by the powers at R10 and reduces the sum into Y.
#define GHASH \
	MULFIRST((R10)); \
	MULNEXT(64(R10), Z5); \
	MULNEXT(128(R10), Z6); \
	MULNEXT(192(R10), Z7); \
	FOLDALL; \
	REDUCE1; \
	REDUCE2

#define AESROUND(off) \
	VBROADCASTI32X4 off(AX), Z16; \
	VAESENC Z16, Z0, Z0; \
	VAESENC Z16, Z1, Z1; \
	VAESENC Z16, Z2, Z2; \
	VAESENC Z16, Z3, Z3

// COUNTERS puts the next 16 counter blocks in Z0-Z3, xored with round key
// 0, and runs rounds 1-9.
#define COUNTERS \
	NEXTCOUNTERS; \
	AESROUND(16); \
	AESROUND(32); \
	AESROUND(48); \
	AESROUND(64); \
	AESROUND(80); \
	AESROUND(96); \
	AESROUND(112); \
	AESROUND(128); \
	AESROUND(144)

// NEXTCOUNTERS puts the next 16 counter blocks in Z0-Z3, xored with round
// key 0.
#define NEXTCOUNTERS \
	VPSHUFB Z17, Z19, Z0; \
	VPADDD  Z20, Z19, Z19; \
	VPSHUFB Z17, Z19, Z1; \
	VPADDD  Z20, Z19, Z19; \
	VPSHUFB Z17, Z19, Z2; \
	VPADDD  Z20, Z19, Z19; \
	VPSHUFB Z17, Z19, Z3; \
	VPADDD  Z20, Z19, Z19; \
	VBROADCASTI32X4 (AX), Z16; \
	VPXORQ  Z16, Z0, Z0; \
	VPXORQ  Z16, Z1, Z1; \
	VPXORQ  Z16, Z2, Z2; \
	VPXORQ  Z16, Z3, Z3

// LASTROUND runs the final round with the key at R12.
#define LASTROUND \
	VBROADCASTI32X4 (R12), Z16; \
	VAESENCLAST Z16, Z0, Z0; \
	VAESENCLAST Z16, Z1, Z1; \
	VAESENCLAST Z16, Z2, Z2; \
	VAESENCLAST Z16, Z3, Z3

// STITCHED runs rounds 1-9 on Z0-Z3 (xored with round key 0 already) and,
// between them, hashes Z4-Z7 (reversed, Y folded in) with the powers at
// p0-p3 into Y.
#define STITCHED(p0, p1, p2, p3) \
	AESROUND(16); \
	MULFIRST(p0); \
	AESROUND(32); \
	MULNEXT(p1, Z5); \
	AESROUND(48); \
	MULNEXT(p2, Z6); \
	AESROUND(64); \
	MULNEXT(p3, Z7); \
	AESROUND(80); \
	FOLDALL; \
	AESROUND(96); \
	REDUCE1; \
	AESROUND(112); \
	REDUCE2; \
	AESROUND(128); \
	AESROUND(144)

// LASTKEY points R12 at the last round key and compares the rounds with 12,
// for the jumps over rounds 10-13.
#define LASTKEY \
	MOVQ BX, R12; \
	SHLQ $4, R12; \
	ADDQ AX, R12; \
	CMPQ BX, $12

// XORSTORE xors the data in a-d into the keystream in Z0-Z3 and stores the
// result at DI under the loop's masks.
#define XORSTORE(a, b, c, d) \
	VPXORQ a, Z0, Z0; \
	VPXORQ b, Z1, Z1; \
	VPXORQ c, Z2, Z2; \
	VPXORQ d, Z3, Z3; \
	VMOVDQU8 Z0, K1, (DI); \
	VMOVDQU8 Z1, K2, 64(DI); \
	VMOVDQU8 Z2, K3, 128(DI); \
	VMOVDQU8 Z3, K4, 192(DI)

// ADVANCE moves past the loop's CX bytes.
#define ADVANCE \
	ADDQ CX, SI; \
	ADDQ CX, DI; \
	SUBQ CX, DX

// PROLOGUE loads the arguments and constants, and the counters from the
// state's counter block (J0 at the start).
#define PROLOGUE \
	MOVQ key+0(FP), AX; \
	MOVQ dst+16(FP), DI; \
	MOVQ src+24(FP), SI; \
	MOVQ n+32(FP), DX; \
	MOVQ aad+40(FP), R8; \
	MOVQ aadLen+48(FP), R9; \
	MOVQ ROUNDS(AX), BX; \
	MOVQ $-1, R11; \
	VBROADCASTI32X4 bswapMask<>(SB), Z17; \
	VMOVDQU64 polyConst<>(SB), X18; \
	VBROADCASTI32X4 four<>(SB), Z20; \
	MOVQ st+8(FP), R12; \
	VMOVDQU64 STCTR(R12), X21; \
	VPSHUFB X17, X21, X12; \
	VSHUFI32X4 $0, Z12, Z12, Z19; \
	VPADDD laneInc<>(SB), Z19, Z19

// STARTJ0 clears Y and begins J0's encryption in X21, leaving R12 at round
// key 1 and R13 at the rounds left before the last.
#define STARTJ0 \
	VPXORQ Z15, Z15, Z15; \
	VPXORQ (AX), X21, X21; \
	LEAQ 16(AX), R12; \
	MOVQ BX, R13; \
	DECQ R13

// J0ROUND is one round of J0's encryption in X21 (key at R12); the last round
// and the loop are the function's, as macros cannot hold labels.
#define J0ROUND \
	VAESENC (R12), X21, X21; \
	ADDQ $16, R12; \
	DECQ R13

// AADLOOP hashes one loop of the additional data.
#define AADLOOP \
	SETUPLOOP(R9); \
	LOADMASKED(R8); \
	REVERSEDATA; \
	GHASH; \
	ADDQ CX, R8; \
	SUBQ CX, R9

// EPILOGUE hashes the lengths block (from the state at R12) and writes the
// tag into the state.
#define EPILOGUE \
	MOVQ   STN(R12), R13; \
	SHLQ   $3, R13; \
	VMOVQ  R13, X4; \
	MOVQ   STAADLEN(R12), R13; \
	SHLQ   $3, R13; \
	VPINSRQ $1, R13, X4, X4; \
	VPXOR  X15, X4, X4; \
	VPXORQ Z5, Z5, Z5; \
	VPXORQ Z6, Z6, Z6; \
	VPXORQ Z7, Z7, Z7; \
	LEAQ   HTAB+240(AX), R10; \
	GHASH; \
	VPSHUFB X17, X15, X15; \
	VPXORQ X21, X15, X15; \
	VMOVDQU X15, STTAG(R12)

// func gcmCrypt(key *gcmAsm, st *gcmState, dst, src *byte, n int, aad *byte, aadLen int, flags int)
TEXT ·gcmCrypt(SB), NOSPLIT, $0-64
	PROLOGUE
	TESTQ $flagStart, flags+56(FP)
	JNZ   start
	VMOVDQU64 STY(R12), X15
	VMOVDQU64 STEJ0(R12), X21
	JMP   dataLoop

start:
	STARTJ0

j0Rounds:
	J0ROUND
	JNZ j0Rounds
	VAESENCLAST (R12), X21, X21

aadLoop:
	TESTQ R9, R9
	JZ    dataLoop
	AADLOOP
	JMP   aadLoop

dataLoop:
	TESTQ $flagOpen, flags+56(FP)
	JZ    sealData

// Opening hashes its input, so each loop hashes the ciphertext it decrypts,
// its multiplications placed between the AES rounds. Z22-Z25 keep the
// ciphertext as loaded, for the keystream.
openLoop:
	TESTQ DX, DX
	JZ    done
	SETUPLOOP(DX)
	VMOVDQU8.Z (SI), K1, Z22
	VMOVDQU8.Z 64(SI), K2, Z23
	VMOVDQU8.Z 128(SI), K3, Z24
	VMOVDQU8.Z 192(SI), K4, Z25
	NEXTCOUNTERS
	VPSHUFB Z17, Z22, Z4
	VPSHUFB Z17, Z23, Z5
	VPSHUFB Z17, Z24, Z6
	VPSHUFB Z17, Z25, Z7
	VPXORQ  Z15, Z4, Z4
	STITCHED((R10), 64(R10), 128(R10), 192(R10))
	LASTKEY
	JB   lastRound
	AESROUND(160)
	AESROUND(176)
	JE   lastRound
	AESROUND(192)
	AESROUND(208)

lastRound:
	LASTROUND
	XORSTORE(Z22, Z23, Z24, Z25)
	ADVANCE
	JMP  openLoop

// Sealing hashes its output, so a loop's hash would wait for its own
// encryption. Instead each loop hashes the previous loop's ciphertext, held
// in Z4-Z7, between the rounds that encrypt the next sixteen blocks
// (sealStitched). R8 (the additional data's pointer, spent by now) is 1
// while a loop's ciphertext waits to be hashed. Only the last loop can be
// partial; sealDrain masks off the keystream past its end and hashes it
// with its own powers (R10).
sealData:
	XORL R8, R8

sealLoop:
	TESTQ DX, DX
	JZ    sealDrain
	TESTQ R8, R8
	JNZ   sealStitched
	SETUPLOOP(DX)
	COUNTERS

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
	LOADMASKED(SI)
	XORSTORE(Z4, Z5, Z6, Z7)
	VMOVDQA64 Z0, Z4
	VMOVDQA64 Z1, Z5
	VMOVDQA64 Z2, Z6
	VMOVDQA64 Z3, Z7
	MOVL $1, R8
	ADVANCE
	JMP  sealLoop

// The previous loop's ciphertext is sixteen whole blocks, so its powers
// are H^16..H^1 at HTAB; R10 is the new loop's.
sealStitched:
	SETUPLOOP(DX)
	NEXTCOUNTERS
	REVERSEDATA
	STITCHED(HTAB(AX), HTAB+64(AX), HTAB+128(AX), HTAB+192(AX))
	JMP sealRest

sealDrain:
	TESTQ R8, R8
	JZ    done
	VMOVDQU8.Z Z4, K1, Z4
	VMOVDQU8.Z Z5, K2, Z5
	VMOVDQU8.Z Z6, K3, Z6
	VMOVDQU8.Z Z7, K4, Z7
	REVERSEDATA
	GHASH

done:
	MOVQ  st+8(FP), R12
	TESTQ $flagFinish, flags+56(FP)
	JNZ   finish
	VMOVDQU X15, STY(R12)
	VMOVDQU64 X21, STEJ0(R12)
	VZEROUPPER
	RET

finish:
	EPILOGUE
	VZEROUPPER
	RET

// func subWord(w uint32) uint32
TEXT ·subWord(SB), NOSPLIT, $0-12
	MOVL    w+0(FP), AX
	MOVD    AX, X0
	PSHUFD  $0, X0, X0
	PXOR    X1, X1
	AESENCLAST X1, X0
	MOVD    X0, AX
	MOVL    AX, ret+8(FP)
	RET

// func mulAsm(a, b, out *[16]byte)
// out = a·b·x (mul in asm_amd64.go), for the hash key's powers.
TEXT ·mulAsm(SB), NOSPLIT, $0-24
	MOVQ    a+0(FP), AX
	MOVQ    b+8(FP), BX
	MOVQ    out+16(FP), CX
	MOVOU   (AX), X0
	MOVOU   (BX), X1
	MOVOU   polyConst<>(SB), X5
	MOVOA   X0, X2
	PCLMULQDQ $0x00, X1, X2 // low
	MOVOA   X0, X3
	PCLMULQDQ $0x11, X1, X3 // high
	MOVOA   X0, X4
	PCLMULQDQ $0x01, X1, X4
	PCLMULQDQ $0x10, X1, X0
	PXOR    X4, X0          // middle
	MOVOA   X0, X4
	PSLLO   $8, X4
	PXOR    X4, X2
	PSRLO   $8, X0
	PXOR    X0, X3
	MOVOA   X5, X4
	PCLMULQDQ $0x01, X2, X4
	PSHUFD  $0x4e, X2, X2
	PXOR    X4, X2
	MOVOA   X5, X4
	PCLMULQDQ $0x01, X2, X4
	PSHUFD  $0x4e, X2, X2
	PXOR    X4, X2
	PXOR    X3, X2
	MOVOU   X2, (CX)
	RET
