package minilm

import (
	"math"
	"math/rand/v2"
	"testing"
)

func TestGemmNTMatchesFloat64(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, s := range []struct{ m, n, k int }{
		{1, 4, 8}, {3, 4, 8}, {2, 3, 16}, {7, 9, 32}, {50, 13, 384}, {97, 1152, 384}, {5, 384, 1536}, {4, 5, 12},
	} {
		lda, ldb, ldc := s.k+3, s.k+5, s.n+2 // strides wider than the rows
		a, b := make([]float32, s.m*lda), make([]float32, s.n*ldb)
		for i := range a {
			a[i] = float32(r.NormFloat64())
		}
		for i := range b {
			b[i] = float32(r.NormFloat64())
		}
		c := make([]float32, s.m*ldc)
		for i := range c {
			c[i] = 42 // the padding between rows must survive
		}
		h := make([]uint16, len(b))
		for i, v := range b {
			h[i] = floatToHalf(v)
			b[i] = halfToFloat(h[i]) // both products then use the same values
		}
		ch := append([]float32(nil), c...)
		gemmNT(c, ldc, a, lda, b, ldb, s.m, s.n, s.k)
		gemmNTh(ch, ldc, a, lda, h, ldb, s.m, s.n, s.k)
		for name, c := range map[string][]float32{"float32": c, "half": ch} {
			for i := range s.m {
				for j := range ldc {
					got := c[i*ldc+j]
					if j >= s.n {
						if got != 42 {
							t.Fatalf("%s %v: wrote past row %d (col %d)", name, s, i, j)
						}
						continue
					}
					var want float64
					for p := range s.k {
						want += float64(a[i*lda+p]) * float64(b[j*ldb+p])
					}
					if math.Abs(float64(got)-want) > 1e-4*math.Max(1, math.Abs(want)) {
						t.Fatalf("%s %v: c[%d][%d] = %v, want %v", name, s, i, j, got, want)
					}
				}
			}
		}
	}
}

func BenchmarkGemmNT(b *testing.B) {
	for _, s := range []struct {
		name    string
		m, n, k int
	}{{"ffn_in_512tok", 512, 1536, 384}, {"ffn_out_512tok", 512, 384, 1536}, {"qkv_12tok", 12, 1152, 384}} {
		a, w, c := make([]float32, s.m*s.k), make([]float32, s.n*s.k), make([]float32, s.m*s.n)
		for i := range a {
			a[i] = float32(i%7) * 0.1
		}
		for i := range w {
			w[i] = float32(i%5) * 0.1
		}
		b.Run(s.name, func(b *testing.B) {
			for b.Loop() {
				gemmNT(c, s.n, a, s.k, w, s.k, s.m, s.n, s.k)
			}
			b.ReportMetric(2*float64(s.m*s.n*s.k)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
		})
		h := make([]uint16, len(w))
		for i, v := range w {
			h[i] = floatToHalf(v)
		}
		b.Run(s.name+"_half", func(b *testing.B) {
			for b.Loop() {
				gemmNTh(c, s.n, a, s.k, h, s.k, s.m, s.n, s.k)
			}
			b.ReportMetric(2*float64(s.m*s.n*s.k)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
		})
		b.Run(s.name+"_generic", func(b *testing.B) {
			for b.Loop() {
				gemmNTGeneric(c, s.n, a, s.k, w, s.k, s.m, s.n, s.k)
			}
			b.ReportMetric(2*float64(s.m*s.n*s.k)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
		})
	}
}

func TestVectorKernels(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for _, n := range []int{0, 1, 7, 8, 9, 33, 1536} {
		x := make([]float32, n)
		for i := range x {
			x[i] = float32(r.NormFloat64() * 4)
		}
		g := append([]float32(nil), x...)
		gelu(g)
		for i, v := range x {
			want := 0.5 * float64(v) * (1 + math.Erf(float64(v)/math.Sqrt2))
			if math.Abs(float64(g[i])-want) > 2e-6*math.Max(1, math.Abs(want)) {
				t.Fatalf("gelu(%v) = %v, want %v", v, g[i], want)
			}
		}
		if n == 0 {
			continue
		}
		if got, want := maxOf(x), maxOfGeneric(x); got != want {
			t.Fatalf("n=%d: maxOf %v, want %v", n, got, want)
		}
		sum2 := append([]float32(nil), x...)
		add(sum2, x)
		for i, v := range x {
			if sum2[i] != 2*v {
				t.Fatalf("n=%d: add: %v, want %v", n, sum2[i], 2*v)
			}
		}
		e := append([]float32(nil), x...)
		sub, scale := maxOf(x), float32(0.7)
		sum := expSum(e, sub, scale)
		var wantSum float64
		for i, v := range x {
			want := math.Exp(float64((v - sub) * scale))
			wantSum += want
			if math.Abs(float64(e[i])-want) > 3e-7*want+1e-37 {
				t.Fatalf("exp((%v-%v)·%v) = %v, want %v", v, sub, scale, e[i], want)
			}
		}
		if math.Abs(float64(sum)-wantSum) > 1e-5*wantSum {
			t.Fatalf("n=%d: sum %v, want %v", n, sum, wantSum)
		}
	}
}

func TestHalf(t *testing.T) {
	for h := range 1 << 16 {
		f := halfToFloat(uint16(h))
		if f != f { // NaN
			continue
		}
		if back := floatToHalf(f); back != uint16(h) {
			t.Fatalf("%#04x → %v → %#04x", h, f, back)
		}
	}
	r := rand.New(rand.NewPCG(5, 6))
	for range 100000 {
		f := float32(r.NormFloat64() * math.Pow(2, float64(r.IntN(30)-24)))
		got := halfToFloat(floatToHalf(f))
		// Nearest: within half a unit in the last place (2⁻¹¹ relative), or
		// 2⁻²⁵ absolute among the subnormals.
		if d := math.Abs(float64(got - f)); d > math.Max(math.Abs(float64(f))/2048, 1.0/(1<<25)) {
			t.Fatalf("half(%v) = %v", f, got)
		}
	}
}

func TestDequantHalf(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	const groups = 50
	q, scales := make([]int8, groups*groupSize), make([]float32, groups)
	for i := range q {
		q[i] = int8(r.IntN(255) - 127)
	}
	for i := range scales {
		scales[i] = float32(math.Pow(2, float64(r.IntN(20)-20)) * r.Float64())
	}
	got, want := make([]uint16, len(q)), make([]uint16, len(q))
	dequantHalf(got, q, scales)
	dequantHalfGeneric(want, q, scales)
	for i := range got {
		if got[i] != want[i] {
			t.Fatalf("value %d (q %d scale %v): %#04x, want %#04x", i, q[i], scales[i/groupSize], got[i], want[i])
		}
	}
}
