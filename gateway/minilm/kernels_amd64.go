package minilm

import "golang.org/x/sys/cpu"

// hasAVX2FMA is fixed at start-up from the CPU's feature bits (F16C, for
// the half-precision weights, comes with every AVX2 CPU).
var hasAVX2FMA = cpu.X86.HasAVX2 && cpu.X86.HasFMA && cpu.X86.HasF16C

// gemm3x4 computes the 3×4 tile c[i*ldc+j] = Σ_p a[i*lda+p]·b[j*ldb+p] for
// i < 3, j < 4, p < k, with k a positive multiple of 8 (strides in elements).
//
//go:noescape
func gemm3x4(a *float32, lda int, b *float32, ldb int, k int, c *float32, ldc int)

// gemm1x4 is gemm3x4 for one row of A.
//
//go:noescape
func gemm1x4(a *float32, b *float32, ldb int, k int, c *float32)

// gemm3x4h is gemm3x4 with B in half precision.
//
//go:noescape
func gemm3x4h(a *float32, lda int, b *uint16, ldb int, k int, c *float32, ldc int)

// gemm1x4h is gemm1x4 with B in half precision.
//
//go:noescape
func gemm1x4h(a *float32, b *uint16, ldb int, k int, c *float32)

// mBlock rows of A are kept hot in L2 while every 4-row panel of B passes over
// them; a panel of B stays in L1 across the block.
const mBlock = 48

// gemmNT computes C = A·Bᵀ (see gemmNTGeneric), in AVX2+FMA tiles of 3 rows
// of A by 4 rows of B where the CPU has them.
func gemmNT(c []float32, ldc int, a []float32, lda int, b []float32, ldb int, m, n, k int) {
	gemmTiled(gemm3x4, gemm1x4, gemmNTGeneric, c, ldc, a, lda, b, ldb, m, n, k)
}

// gemmNTh is gemmNT with B in half precision: the weights of the linear
// layers.
func gemmNTh(c []float32, ldc int, a []float32, lda int, b []uint16, ldb int, m, n, k int) {
	gemmTiled(gemm3x4h, gemm1x4h, gemmNThGeneric, c, ldc, a, lda, b, ldb, m, n, k)
}

// gemmTiled runs C = A·Bᵀ as 3×4 tiles of t3x4, the rows left over as 1×4
// tiles of t1x4 and the columns left over (and everything, without AVX2 or
// with k not a multiple of 8) with generic.
func gemmTiled[T float32 | uint16](
	t3x4 func(a *float32, lda int, b *T, ldb int, k int, c *float32, ldc int),
	t1x4 func(a *float32, b *T, ldb int, k int, c *float32),
	generic func(c []float32, ldc int, a []float32, lda int, b []T, ldb int, m, n, k int),
	c []float32, ldc int, a []float32, lda int, b []T, ldb int, m, n, k int,
) {
	if !hasAVX2FMA || k%8 != 0 || k == 0 || m == 0 || n == 0 {
		generic(c, ldc, a, lda, b, ldb, m, n, k)
		return
	}
	// Bounds: the kernels read a[i*lda : i*lda+k] and b[j*ldb : j*ldb+k] and
	// write c[i*ldc : i*ldc+n]; check the last of each once, here.
	_ = a[(m-1)*lda+k-1]
	_ = b[(n-1)*ldb+k-1]
	_ = c[(m-1)*ldc+n-1]
	n4 := n &^ 3
	for m0 := 0; m0 < m; m0 += mBlock {
		m1 := min(m0+mBlock, m)
		for j := 0; j < n4; j += 4 {
			i := m0
			for ; i+3 <= m1; i += 3 {
				t3x4(&a[i*lda], lda, &b[j*ldb], ldb, k, &c[i*ldc+j], ldc)
			}
			for ; i < m1; i++ {
				t1x4(&a[i*lda], &b[j*ldb], ldb, k, &c[i*ldc+j])
			}
		}
		if n4 < n {
			generic(c[m0*ldc+n4:], ldc, a[m0*lda:], lda, b[n4*ldb:], ldb, m1-m0, n-n4, k)
		}
	}
}

// dequantHalfAVX2 is dequantHalf for groups groups of 32 values.
//
//go:noescape
func dequantHalfAVX2(dst *uint16, q *int8, scales *float32, groups int)

// dequantHalf sets dst[i] = half(q[i]·scales[i/32]).
func dequantHalf(dst []uint16, q []int8, scales []float32) {
	if hasAVX2FMA && len(scales) > 0 {
		_ = dst[len(scales)*groupSize-1]
		_ = q[len(scales)*groupSize-1]
		dequantHalfAVX2(&dst[0], &q[0], &scales[0], len(scales))
		return
	}
	dequantHalfGeneric(dst, q, scales)
}

//go:noescape
func maxAVX2(x *float32, n int) float32

//go:noescape
func addAVX2(dst, src *float32, n int)

// maxOf is the largest value of a non-empty x.
func maxOf(x []float32) float32 {
	n8 := len(x) &^ 7
	if !hasAVX2FMA || n8 == 0 {
		return maxOfGeneric(x)
	}
	m := maxAVX2(&x[0], n8)
	if n8 < len(x) {
		m = max(m, maxOfGeneric(x[n8:]))
	}
	return m
}

// add sets dst[i] += src[i].
func add(dst, src []float32) {
	src = src[:len(dst)]
	n8 := len(dst) &^ 7
	if hasAVX2FMA && n8 > 0 {
		addAVX2(&dst[0], &src[0], n8)
		dst, src = dst[n8:], src[n8:]
	}
	addGeneric(dst, src)
}

// geluAVX2 applies GELU to n values, n a multiple of 8.
//
//go:noescape
func geluAVX2(x *float32, n int)

// expSumAVX2 sets x[i] = e^((x[i]-sub)·scale) for n values, n a multiple of
// 8, and returns their sum.
//
//go:noescape
func expSumAVX2(x *float32, n int, sub, scale float32) float32

// gelu is the exact GELU, x·Φ(x) = x/2·(1+erf(x/√2)), with erf to float32
// precision.
func gelu(x []float32) {
	n8 := len(x) &^ 7
	if hasAVX2FMA && n8 > 0 {
		geluAVX2(&x[0], n8)
		x = x[n8:]
	}
	geluGeneric(x)
}

// expSum sets x[i] = e^((x[i]-sub)·scale) and returns the sum.
func expSum(x []float32, sub, scale float32) float32 {
	var sum float32
	n8 := len(x) &^ 7
	if hasAVX2FMA && n8 > 0 {
		sum = expSumAVX2(&x[0], n8, sub, scale)
		x = x[n8:]
	}
	return sum + expSumGeneric(x, sub, scale)
}
