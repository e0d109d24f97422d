//go:build !amd64

package rag

// Dot is the inner product of the common prefix of a and b.
func Dot(a, b []float32) float32 {
	n := min(len(a), len(b))
	return dotGeneric(a[:n], b[:n])
}
