#include "textflag.h"

// Sums the four 8-lane accumulators of one output row into four floats:
// after the three VHADDPS each 128-bit half holds [Σr0 Σr1 Σr2 Σr3] of its
// lanes, and the halves are added. Clobbers r1, r2, r3 and X15.
#define REDUCE4(r0, r1, r2, r3, x0, dst) \
	VHADDPS r1, r0, r0 \
	VHADDPS r3, r2, r2 \
	VHADDPS r2, r0, r0 \
	VEXTRACTF128 $1, r0, X15 \
	VADDPS X15, x0, x0 \
	VMOVUPS x0, dst

// The tile kernels: 3 rows of A (SI, R11, R12) by 4 rows of B (DI, R13,
// R14, BX), twelve 8-lane accumulators Y0–Y11 (row r of A, row j of B in
// Y(4r+j)), A in Y12–Y14, the current row of B in Y15. LOADB widens 8
// values of B to float32: VMOVUPS for float32, VCVTPH2PS for halves; OFF is
// the register holding the byte offset along B (AX for float32, R8 for halves,
// which advance half as fast as A's AX).

#define ZERO4(r0, r1, r2, r3) \
	VXORPS r0, r0, r0 \
	VXORPS r1, r1, r1 \
	VXORPS r2, r2, r2 \
	VXORPS r3, r3, r3

// ROWSB sets R13, R14, BX to the rows of B after DI, R9 bytes apart.
#define ROWSB \
	LEAQ (DI)(R9*1), R13 \
	LEAQ (R13)(R9*1), R14 \
	LEAQ (R14)(R9*1), BX

#define STEP3x4(LOADB, OFF) \
	VMOVUPS (SI)(AX*1), Y12 \
	VMOVUPS (R11)(AX*1), Y13 \
	VMOVUPS (R12)(AX*1), Y14 \
	LOADB (DI)(OFF*1), Y15 \
	VFMADD231PS Y15, Y12, Y0 \
	VFMADD231PS Y15, Y13, Y4 \
	VFMADD231PS Y15, Y14, Y8 \
	LOADB (R13)(OFF*1), Y15 \
	VFMADD231PS Y15, Y12, Y1 \
	VFMADD231PS Y15, Y13, Y5 \
	VFMADD231PS Y15, Y14, Y9 \
	LOADB (R14)(OFF*1), Y15 \
	VFMADD231PS Y15, Y12, Y2 \
	VFMADD231PS Y15, Y13, Y6 \
	VFMADD231PS Y15, Y14, Y10 \
	LOADB (BX)(OFF*1), Y15 \
	VFMADD231PS Y15, Y12, Y3 \
	VFMADD231PS Y15, Y13, Y7 \
	VFMADD231PS Y15, Y14, Y11

#define STEP1x4(LOADB, OFF) \
	VMOVUPS (SI)(AX*1), Y12 \
	LOADB (DI)(OFF*1), Y15 \
	VFMADD231PS Y15, Y12, Y0 \
	LOADB (R13)(OFF*1), Y15 \
	VFMADD231PS Y15, Y12, Y1 \
	LOADB (R14)(OFF*1), Y15 \
	VFMADD231PS Y15, Y12, Y2 \
	LOADB (BX)(OFF*1), Y15 \
	VFMADD231PS Y15, Y12, Y3

// STORE3x4 writes the three rows of sums to DX, R10 bytes apart.
#define STORE3x4 \
	REDUCE4(Y0, Y1, Y2, Y3, X0, (DX)) \
	ADDQ R10, DX \
	REDUCE4(Y4, Y5, Y6, Y7, X4, (DX)) \
	ADDQ R10, DX \
	REDUCE4(Y8, Y9, Y10, Y11, X8, (DX))

// PROLOGUE3x4 loads the arguments of a 3×4 kernel whose B elements are
// 1<<BSHIFT bytes, leaving CX = k·4 (the end of A's offset).
#define PROLOGUE3x4(BSHIFT) \
	MOVQ a+0(FP), SI \
	MOVQ lda+8(FP), R8 \
	MOVQ b+16(FP), DI \
	MOVQ ldb+24(FP), R9 \
	MOVQ k+32(FP), CX \
	MOVQ c+40(FP), DX \
	MOVQ ldc+48(FP), R10 \
	SHLQ $2, R8 \
	SHLQ BSHIFT, R9 \
	SHLQ $2, R10 \
	SHLQ $2, CX \
	LEAQ (SI)(R8*1), R11 \
	LEAQ (R11)(R8*1), R12 \
	ROWSB \
	ZERO4(Y0, Y1, Y2, Y3) \
	ZERO4(Y4, Y5, Y6, Y7) \
	ZERO4(Y8, Y9, Y10, Y11) \
	XORQ AX, AX \
	XORQ R8, R8

#define PROLOGUE1x4(BSHIFT) \
	MOVQ a+0(FP), SI \
	MOVQ b+8(FP), DI \
	MOVQ ldb+16(FP), R9 \
	MOVQ k+24(FP), CX \
	MOVQ c+32(FP), DX \
	SHLQ BSHIFT, R9 \
	SHLQ $2, CX \
	ROWSB \
	ZERO4(Y0, Y1, Y2, Y3) \
	XORQ AX, AX \
	XORQ R8, R8

// func gemm3x4(a *float32, lda int, b *float32, ldb int, k int, c *float32, ldc int)
// Per 8 columns: 3 loads of A, 4 of B, 12 FMAs.
TEXT ·gemm3x4(SB), NOSPLIT, $0-56
	PROLOGUE3x4($2)

loop3x4:
	STEP3x4(VMOVUPS, AX)
	ADDQ $32, AX
	CMPQ AX, CX
	JLT  loop3x4
	STORE3x4
	VZEROUPPER
	RET

// func gemm1x4(a *float32, b *float32, ldb int, k int, c *float32)
TEXT ·gemm1x4(SB), NOSPLIT, $0-40
	PROLOGUE1x4($2)

loop1x4:
	STEP1x4(VMOVUPS, AX)
	ADDQ $32, AX
	CMPQ AX, CX
	JLT  loop1x4
	REDUCE4(Y0, Y1, Y2, Y3, X0, (DX))
	VZEROUPPER
	RET

// func gemm3x4h(a *float32, lda int, b *uint16, ldb int, k int, c *float32, ldc int)
// gemm3x4 with B in IEEE half precision, widened by VCVTPH2PS as it is
// loaded: half the memory traffic of float32 weights.
TEXT ·gemm3x4h(SB), NOSPLIT, $0-56
	PROLOGUE3x4($1)

loop3x4h:
	STEP3x4(VCVTPH2PS, R8)
	ADDQ $32, AX
	ADDQ $16, R8
	CMPQ AX, CX
	JLT  loop3x4h
	STORE3x4
	VZEROUPPER
	RET

// func gemm1x4h(a *float32, b *uint16, ldb int, k int, c *float32)
TEXT ·gemm1x4h(SB), NOSPLIT, $0-40
	PROLOGUE1x4($1)

loop1x4h:
	STEP1x4(VCVTPH2PS, R8)
	ADDQ $32, AX
	ADDQ $16, R8
	CMPQ AX, CX
	JLT  loop1x4h
	REDUCE4(Y0, Y1, Y2, Y3, X0, (DX))
	VZEROUPPER
	RET

// Constants of geluAVX2 and expSumAVX2, broadcast from here.
DATA consts<>+0(SB)/4, $0.70710678118654752    // 1/√2
DATA consts<>+4(SB)/4, $4.0
DATA consts<>+8(SB)/4, $-4.0
DATA consts<>+12(SB)/4, $-2.72614225801306e-10 // erf numerator, x¹³ … x¹
DATA consts<>+16(SB)/4, $2.77068142495902e-08
DATA consts<>+20(SB)/4, $-2.10102402082508e-06
DATA consts<>+24(SB)/4, $-5.69250639462346e-05
DATA consts<>+28(SB)/4, $-7.34990630326855e-04
DATA consts<>+32(SB)/4, $-2.95459980854025e-03
DATA consts<>+36(SB)/4, $-1.60960333262415e-02
DATA consts<>+40(SB)/4, $-1.45660718464996e-05 // erf denominator, x⁸ … x⁰
DATA consts<>+44(SB)/4, $-2.13374055278905e-04
DATA consts<>+48(SB)/4, $-1.68282697438203e-03
DATA consts<>+52(SB)/4, $-7.37332916720468e-03
DATA consts<>+56(SB)/4, $-1.42647390514189e-02
DATA consts<>+60(SB)/4, $0.5
DATA consts<>+64(SB)/4, $-87.33                 // exp: below this e^x is 0 in float32
DATA consts<>+68(SB)/4, $1.44269504088896341   // log₂e
DATA consts<>+72(SB)/4, $0.693359375           // ln2 = c1 - c2, c1 exact in 9 bits
DATA consts<>+76(SB)/4, $-2.12194440e-4
DATA consts<>+80(SB)/4, $1.9875691500e-4       // e^r on |r| ≤ ln2/2, r⁶ … r²
DATA consts<>+84(SB)/4, $1.3981999507e-3
DATA consts<>+88(SB)/4, $8.3334519073e-3
DATA consts<>+92(SB)/4, $4.1665795894e-2
DATA consts<>+96(SB)/4, $1.6666665459e-1
DATA consts<>+100(SB)/4, $5.0000001201e-1
DATA consts<>+104(SB)/4, $1.0
DATA consts<>+108(SB)/4, $127
GLOBL consts<>(SB), RODATA|NOPTR, $112

// func geluAVX2(x *float32, n int)
// x = x/2·(1+erf(x/√2)) in place, n a multiple of 8. erf is Eigen's float32
// rational approximation, y·P(y²)/Q(y²) on y clamped to [-4, 4] (absolute
// error about 4e-7).
TEXT ·geluAVX2(SB), NOSPLIT, $0-16
	MOVQ x+0(FP), SI
	MOVQ n+8(FP), CX
	SHLQ $2, CX
	ADDQ SI, CX
	CMPQ SI, CX
	JGE  geludone

geluloop:
	VMOVUPS (SI), Y0                  // x
	VBROADCASTSS consts<>+0(SB), Y1
	VMULPS Y1, Y0, Y1                 // y = x/√2
	VBROADCASTSS consts<>+4(SB), Y2
	VMINPS Y2, Y1, Y1
	VBROADCASTSS consts<>+8(SB), Y2
	VMAXPS Y2, Y1, Y1                 // clamp to [-4, 4]
	VMULPS Y1, Y1, Y2                 // y²
	VBROADCASTSS consts<>+12(SB), Y3  // numerator
	VBROADCASTSS consts<>+16(SB), Y4
	VFMADD213PS Y4, Y2, Y3
	VBROADCASTSS consts<>+20(SB), Y4
	VFMADD213PS Y4, Y2, Y3
	VBROADCASTSS consts<>+24(SB), Y4
	VFMADD213PS Y4, Y2, Y3
	VBROADCASTSS consts<>+28(SB), Y4
	VFMADD213PS Y4, Y2, Y3
	VBROADCASTSS consts<>+32(SB), Y4
	VFMADD213PS Y4, Y2, Y3
	VBROADCASTSS consts<>+36(SB), Y4
	VFMADD213PS Y4, Y2, Y3
	VMULPS Y1, Y3, Y3                 // P·y
	VBROADCASTSS consts<>+40(SB), Y5  // denominator
	VBROADCASTSS consts<>+44(SB), Y4
	VFMADD213PS Y4, Y2, Y5
	VBROADCASTSS consts<>+48(SB), Y4
	VFMADD213PS Y4, Y2, Y5
	VBROADCASTSS consts<>+52(SB), Y4
	VFMADD213PS Y4, Y2, Y5
	VBROADCASTSS consts<>+56(SB), Y4
	VFMADD213PS Y4, Y2, Y5
	VDIVPS Y5, Y3, Y3                 // erf
	VBROADCASTSS consts<>+60(SB), Y4
	VMULPS Y4, Y0, Y0                 // x/2
	VFMADD231PS Y3, Y0, Y0            // x/2 + x/2·erf
	VMOVUPS Y0, (SI)
	ADDQ $32, SI
	CMPQ SI, CX
	JLT  geluloop

geludone:
	VZEROUPPER
	RET

// func expSumAVX2(x *float32, n int, sub, scale float32) float32
// x = e^((x-sub)·scale) in place, n a multiple of 8, returning the sum; the
// exponent must be ≤ 0 (sub is the row's maximum). Cephes' expf: x = k·ln2 + r,
// a polynomial for e^r, 2^k from the exponent bits.
TEXT ·expSumAVX2(SB), NOSPLIT, $0-28
	MOVQ x+0(FP), SI
	MOVQ n+8(FP), CX
	VBROADCASTSS sub+16(FP), Y14
	VBROADCASTSS scale+20(FP), Y15
	VXORPS Y13, Y13, Y13              // sum
	SHLQ $2, CX
	ADDQ SI, CX
	CMPQ SI, CX
	JGE  expdone

exploop:
	VMOVUPS (SI), Y0
	VSUBPS Y14, Y0, Y0
	VMULPS Y15, Y0, Y0                // t
	VBROADCASTSS consts<>+64(SB), Y1
	VMAXPS Y1, Y0, Y0
	VBROADCASTSS consts<>+68(SB), Y1
	VMULPS Y1, Y0, Y1
	VROUNDPS $0, Y1, Y1               // k = round(t·log₂e)
	VBROADCASTSS consts<>+72(SB), Y2
	VFNMADD231PS Y2, Y1, Y0           // r = t - k·c1
	VBROADCASTSS consts<>+76(SB), Y2
	VFNMADD231PS Y2, Y1, Y0           //   - k·c2
	VBROADCASTSS consts<>+80(SB), Y3
	VBROADCASTSS consts<>+84(SB), Y2
	VFMADD213PS Y2, Y0, Y3
	VBROADCASTSS consts<>+88(SB), Y2
	VFMADD213PS Y2, Y0, Y3
	VBROADCASTSS consts<>+92(SB), Y2
	VFMADD213PS Y2, Y0, Y3
	VBROADCASTSS consts<>+96(SB), Y2
	VFMADD213PS Y2, Y0, Y3
	VBROADCASTSS consts<>+100(SB), Y2
	VFMADD213PS Y2, Y0, Y3            // p
	VMULPS Y0, Y0, Y2                 // r²
	VFMADD213PS Y0, Y2, Y3            // p·r² + r
	VBROADCASTSS consts<>+104(SB), Y2
	VADDPS Y2, Y3, Y3                 // + 1
	VCVTPS2DQ Y1, Y1
	VPBROADCASTD consts<>+108(SB), Y2
	VPADDD Y2, Y1, Y1
	VPSLLD $23, Y1, Y1                // 2^k
	VMULPS Y1, Y3, Y3
	VMOVUPS Y3, (SI)
	VADDPS Y3, Y13, Y13
	ADDQ $32, SI
	CMPQ SI, CX
	JLT  exploop

expdone:
	VEXTRACTF128 $1, Y13, X0
	VADDPS X13, X0, X0
	VHADDPS X0, X0, X0
	VHADDPS X0, X0, X0
	VZEROUPPER
	MOVSS X0, ret+24(FP)
	RET

// func dequantHalfAVX2(dst *uint16, q *int8, scales *float32, groups int)
// dst[i] = half(q[i]·scales[i/32]) for groups·32 values, rounding to nearest
// even like floatToHalf.
TEXT ·dequantHalfAVX2(SB), NOSPLIT, $0-32
	MOVQ dst+0(FP), DI
	MOVQ q+8(FP), SI
	MOVQ scales+16(FP), DX
	MOVQ groups+24(FP), CX
	TESTQ CX, CX
	JE   dqdone

dqloop:
	VBROADCASTSS (DX), Y4
	VPMOVSXBD (SI), Y0
	VPMOVSXBD 8(SI), Y1
	VPMOVSXBD 16(SI), Y2
	VPMOVSXBD 24(SI), Y3
	VCVTDQ2PS Y0, Y0
	VCVTDQ2PS Y1, Y1
	VCVTDQ2PS Y2, Y2
	VCVTDQ2PS Y3, Y3
	VMULPS Y4, Y0, Y0
	VMULPS Y4, Y1, Y1
	VMULPS Y4, Y2, Y2
	VMULPS Y4, Y3, Y3
	VCVTPS2PH $0, Y0, (DI)
	VCVTPS2PH $0, Y1, 16(DI)
	VCVTPS2PH $0, Y2, 32(DI)
	VCVTPS2PH $0, Y3, 48(DI)
	ADDQ $32, SI
	ADDQ $64, DI
	ADDQ $4, DX
	DECQ CX
	JNE  dqloop

dqdone:
	VZEROUPPER
	RET

// func maxAVX2(x *float32, n int) float32
// The largest of n values, n a positive multiple of 8.
TEXT ·maxAVX2(SB), NOSPLIT, $0-20
	MOVQ x+0(FP), SI
	MOVQ n+8(FP), CX
	SHLQ $2, CX
	ADDQ SI, CX
	VMOVUPS (SI), Y0
	ADDQ $32, SI

maxloop:
	CMPQ SI, CX
	JGE  maxdone
	VMAXPS (SI), Y0, Y0
	ADDQ $32, SI
	JMP  maxloop

maxdone:
	VEXTRACTF128 $1, Y0, X1
	VMAXPS X1, X0, X0
	VPERMILPS $0x4e, X0, X1
	VMAXPS X1, X0, X0
	VPERMILPS $0xb1, X0, X1
	VMAXPS X1, X0, X0
	VZEROUPPER
	MOVSS X0, ret+16(FP)
	RET

// func addAVX2(dst, src *float32, n int)
// dst[i] += src[i] for n values, n a multiple of 8.
TEXT ·addAVX2(SB), NOSPLIT, $0-24
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ n+16(FP), CX
	SHLQ $2, CX
	ADDQ DI, CX

addloop:
	CMPQ DI, CX
	JGE  adddone
	VMOVUPS (DI), Y0
	VADDPS (SI), Y0, Y0
	VMOVUPS Y0, (DI)
	ADDQ $32, DI
	ADDQ $32, SI
	JMP  addloop

adddone:
	VZEROUPPER
	RET
