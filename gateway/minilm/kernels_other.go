//go:build !amd64

package minilm

// gemmNT computes C = A·Bᵀ (see gemmNTGeneric).
func gemmNT(c []float32, ldc int, a []float32, lda int, b []float32, ldb int, m, n, k int) {
	gemmNTGeneric(c, ldc, a, lda, b, ldb, m, n, k)
}

// gemmNTh computes C = A·Bᵀ with B in half precision (see gemmNThGeneric).
func gemmNTh(c []float32, ldc int, a []float32, lda int, b []uint16, ldb int, m, n, k int) {
	gemmNThGeneric(c, ldc, a, lda, b, ldb, m, n, k)
}

func dequantHalf(dst []uint16, q []int8, scales []float32) { dequantHalfGeneric(dst, q, scales) }

func gelu(x []float32) { geluGeneric(x) }

func expSum(x []float32, sub, scale float32) float32 { return expSumGeneric(x, sub, scale) }

func maxOf(x []float32) float32 { return maxOfGeneric(x) }

func add(dst, src []float32) { addGeneric(dst, src) }
