package minilm

import "math"

// gemmNTGeneric computes c[i*ldc+j] = Σ_p a[i*lda+p]·b[j*ldb+p] for i < m,
// j < n, p < k: C = A·Bᵀ with both operands row-major, which is the shape of
// every product of the model (weights are stored [out][in]).
func gemmNTGeneric(c []float32, ldc int, a []float32, lda int, b []float32, ldb int, m, n, k int) {
	for i := range m {
		ar := a[i*lda : i*lda+k]
		cr := c[i*ldc : i*ldc+n]
		for j := range cr {
			cr[j] = dotGeneric(ar, b[j*ldb:j*ldb+k])
		}
	}
}

// gemmNThGeneric is gemmNTGeneric with B in IEEE half precision.
func gemmNThGeneric(c []float32, ldc int, a []float32, lda int, b []uint16, ldb int, m, n, k int) {
	for i := range m {
		ar := a[i*lda : i*lda+k]
		cr := c[i*ldc : i*ldc+n]
		for j := range cr {
			var s float32
			for p, h := range b[j*ldb : j*ldb+k] {
				s += ar[p] * halfToFloat(h)
			}
			cr[j] = s
		}
	}
}

// dequantHalfGeneric sets dst[i] = half(q[i]·scales[i/32]).
func dequantHalfGeneric(dst []uint16, q []int8, scales []float32) {
	for g, scale := range scales {
		for i := g * groupSize; i < (g+1)*groupSize; i++ {
			dst[i] = floatToHalf(float32(q[i]) * scale)
		}
	}
}

// floatToHalf rounds f to the nearest IEEE half (ties to even); the weights
// are far inside its range, and values below 2⁻¹⁴ become subnormal.
func floatToHalf(f float32) uint16 {
	b := math.Float32bits(f)
	sign := uint16(b>>16) & 0x8000
	exp := int(b>>23&0xff) - 127 + 15
	mant := b & 0x7fffff
	switch {
	case exp >= 31: // overflow (or Inf/NaN): not in the weights
		if b&0x7fffffff > 0x7f800000 {
			return sign | 0x7e00
		}
		return sign | 0x7c00
	case exp <= 0: // subnormal or zero
		if exp < -10 {
			return sign
		}
		mant |= 0x800000
		shift := uint(14 - exp) // 13 + (1 - exp)
		h := mant >> shift
		rem := mant & (1<<shift - 1)
		half := uint32(1) << (shift - 1)
		if rem > half || rem == half && h&1 == 1 {
			h++
		}
		return sign | uint16(h)
	}
	h := uint32(exp)<<10 | mant>>13
	rem := mant & 0x1fff
	if rem > 0x1000 || rem == 0x1000 && h&1 == 1 {
		h++ // may carry into the exponent, which is still the right rounding
	}
	return sign | uint16(h)
}

// halfToFloat widens an IEEE half exactly.
func halfToFloat(h uint16) float32 {
	sign := uint32(h&0x8000) << 16
	exp := uint32(h >> 10 & 0x1f)
	mant := uint32(h & 0x3ff)
	switch {
	case exp == 0x1f:
		return math.Float32frombits(sign | 0x7f800000 | mant<<13)
	case exp == 0:
		if mant == 0 {
			return math.Float32frombits(sign)
		}
		f := float32(mant) * (1.0 / (1 << 24)) // mant·2⁻²⁴
		if sign != 0 {
			return -f
		}
		return f
	}
	return math.Float32frombits(sign | (exp+127-15)<<23 | mant<<13)
}

func dotGeneric(a, b []float32) float32 {
	b = b[:len(a)]
	var s0, s1, s2, s3 float32
	i := 0
	for ; i+4 <= len(a); i += 4 {
		s0 += a[i] * b[i]
		s1 += a[i+1] * b[i+1]
		s2 += a[i+2] * b[i+2]
		s3 += a[i+3] * b[i+3]
	}
	for ; i < len(a); i++ {
		s0 += a[i] * b[i]
	}
	return s0 + s1 + s2 + s3
}

// expf is e^x in float32 (Cephes' expf: x = k·ln2 + r, a degree-6
// polynomial for e^r on |r| ≤ ln2/2), relative error about 1e-7, for the
// softmax, where it is called n² times per head.
func expf(x float32) float32 {
	const (
		log2e = 1.44269504088896341
		c1    = 0.693359375
		c2    = -2.12194440e-4
	)
	if x < -87.33 {
		return 0
	}
	if x > 88.72 {
		return float32(math.Inf(1))
	}
	k := float32(math.Floor(float64(x*log2e + 0.5)))
	r := x - k*c1 - k*c2
	p := float32(1.9875691500e-4)
	p = p*r + 1.3981999507e-3
	p = p*r + 8.3334519073e-3
	p = p*r + 4.1665795894e-2
	p = p*r + 1.6666665459e-1
	p = p*r + 5.0000001201e-1
	y := p*r*r + r + 1
	return y * math.Float32frombits(uint32(int32(k)+127)<<23)
}

// geluGeneric is gelu in float64 arithmetic.
func geluGeneric(x []float32) {
	for i, v := range x {
		x[i] = float32(0.5 * float64(v) * (1 + math.Erf(float64(v)*(1/math.Sqrt2))))
	}
}

// expSumGeneric is expSum one value at a time.
func expSumGeneric(x []float32, sub, scale float32) float32 {
	var sum float32
	for i, v := range x {
		e := expf((v - sub) * scale)
		x[i] = e
		sum += e
	}
	return sum
}

func maxOfGeneric(x []float32) float32 {
	m := x[0]
	for _, v := range x[1:] {
		m = max(m, v)
	}
	return m
}

func addGeneric(dst, src []float32) {
	src = src[:len(dst)]
	for i := range dst {
		dst[i] += src[i]
	}
}
