package minilm

func gemmNT(c []float32, ldc int, a []float32, lda int, b []float32, ldb int, m, n, k int) {
	gemmNTGeneric(c, ldc, a, lda, b, ldb, m, n, k)
}
