package minilm

import (
	"encoding/binary"
	"fmt"
	"math"
	"unsafe"
)

// Architecture of all-MiniLM-L6-v2 (config.json of the model).
const (
	hidden     = 384
	heads      = 12
	headDim    = hidden / heads
	ffn        = 1536
	numLayers  = 6
	maxPos     = 512
	groupSize  = 32 // inputs per int8 scale of the linear weights
	layerNormE = 1e-12
)

// weights are the model's parameters. The word embeddings stay int8 (a row
// is dequantized when a token is looked up, and the table is read straight
// from the binary's read-only data, so only the rows in use become
// resident); the linear weights are dequantized once, at load, to IEEE half
// precision, which the matrix kernels widen to float32 as they load it (the
// rounding to half is 16 times finer than the int8 step, and the memory and
// its traffic are half of float32's).
type weights struct {
	word      []int8    // [vocab][hidden]
	wordScale []float32 // [vocab]
	vocab     int
	position  []float32 // [maxPos][hidden]
	tokenType []float32 // [2][hidden]; a single text is all type 0
	embG      []float32
	embB      []float32
	layers    [numLayers]layer
}

type layer struct {
	qkvW     []uint16 // [3*hidden][hidden]: query, key, value stacked
	attnOutW []uint16 // [hidden][hidden]
	ffnInW   []uint16 // [ffn][hidden]
	ffnOutW  []uint16 // [hidden][ffn]

	qkvB, attnOutB, ffnInB, ffnOutB []float32
	attnG, attnB, ffnG, ffnB        []float32
}

type tensor struct {
	kind  byte
	dims  []int
	f32   []float32 // kind 0: values; kinds 1, 2: scales
	int8s []int8    // kinds 1, 2
}

// parseWeights reads the format written by scripts/minilm/make_weights.py.
// The int8 values alias blob, which must stay alive and unmodified: it is the
// embedded data, read-only for the life of the process.
func parseWeights(blob string) (*weights, error) {
	if len(blob) < 12 || blob[:8] != "MINILM01" {
		return nil, fmt.Errorf("minilm weights: bad magic")
	}
	r := reader{blob: blob, off: 8}
	count := int(r.u32())
	ts := make(map[string]tensor, count)
	for range count {
		name := r.bytes(int(r.u16()))
		kind, rank := r.u8(), int(r.u8())
		dims := make([]int, rank)
		size := 1
		for i := range dims {
			dims[i] = int(r.u32())
			size *= dims[i]
		}
		r.align4()
		t := tensor{kind: kind, dims: dims}
		switch kind {
		case 0:
			t.f32 = r.f32s(size)
		case 1, 2:
			if rank != 2 || kind == 2 && dims[1]%groupSize != 0 {
				return nil, fmt.Errorf("minilm weights: %s: bad shape %v for kind %d", name, dims, kind)
			}
			scales := dims[0]
			if kind == 2 {
				scales *= dims[1] / groupSize
			}
			t.f32 = r.f32s(scales)
			t.int8s = r.i8s(size)
		default:
			return nil, fmt.Errorf("minilm weights: %s: unknown kind %d", name, kind)
		}
		if r.err != nil {
			return nil, fmt.Errorf("minilm weights: %s: %w", name, r.err)
		}
		ts[name] = t
	}
	get := func(name string, kind byte, dims ...int) tensor {
		t, ok := ts[name]
		if !ok {
			r.fail(fmt.Errorf("missing tensor %s", name))
			return t
		}
		if t.kind != kind || fmt.Sprint(t.dims) != fmt.Sprint(dims) {
			r.fail(fmt.Errorf("tensor %s: kind %d shape %v, want kind %d shape %v", name, t.kind, t.dims, kind, dims))
		}
		return t
	}
	f32 := func(name string, dims ...int) []float32 { return get(name, 0, dims...).f32 }
	lin := func(name string, rows, cols int) []uint16 { return dequantize(get(name, 2, rows, cols)) }

	w := &weights{}
	word, ok := ts["word"]
	if !ok || word.kind != 1 || len(word.dims) != 2 || word.dims[1] != hidden {
		return nil, fmt.Errorf("minilm weights: bad word embeddings")
	}
	w.word, w.wordScale, w.vocab = word.int8s, word.f32, word.dims[0]
	w.position = f32("position", maxPos, hidden)
	w.tokenType = f32("token_type", 2, hidden)
	w.embG, w.embB = f32("emb_ln.g", hidden), f32("emb_ln.b", hidden)
	for i := range w.layers {
		l := &w.layers[i]
		p := fmt.Sprintf("%d.", i)
		l.qkvW, l.qkvB = lin(p+"qkv.w", 3*hidden, hidden), f32(p+"qkv.b", 3*hidden)
		l.attnOutW, l.attnOutB = lin(p+"attn_out.w", hidden, hidden), f32(p+"attn_out.b", hidden)
		l.attnG, l.attnB = f32(p+"attn_ln.g", hidden), f32(p+"attn_ln.b", hidden)
		l.ffnInW, l.ffnInB = lin(p+"ffn_in.w", ffn, hidden), f32(p+"ffn_in.b", ffn)
		l.ffnOutW, l.ffnOutB = lin(p+"ffn_out.w", hidden, ffn), f32(p+"ffn_out.b", hidden)
		l.ffnG, l.ffnB = f32(p+"ffn_ln.g", hidden), f32(p+"ffn_ln.b", hidden)
	}
	if r.err != nil {
		return nil, fmt.Errorf("minilm weights: %w", r.err)
	}
	return w, nil
}

// dequantize expands a kind-2 tensor (one scale per 32 inputs of a row) to
// half precision.
func dequantize(t tensor) []uint16 {
	if t.int8s == nil {
		return nil
	}
	out := make([]uint16, len(t.int8s))
	dequantHalf(out, t.int8s, t.f32)
	return out
}

// reader walks the weights blob; the first error sticks.
type reader struct {
	blob string
	off  int
	err  error
}

func (r *reader) fail(err error) {
	if r.err == nil {
		r.err = err
	}
}

func (r *reader) take(n int) string {
	if r.err != nil || n < 0 || r.off+n > len(r.blob) {
		r.fail(fmt.Errorf("truncated at byte %d", r.off))
		return ""
	}
	s := r.blob[r.off : r.off+n]
	r.off += n
	return s
}

func (r *reader) u8() byte {
	if s := r.take(1); s != "" {
		return s[0]
	}
	return 0
}

func (r *reader) u16() uint16 {
	if s := r.take(2); s != "" {
		return binary.LittleEndian.Uint16([]byte(s))
	}
	return 0
}

func (r *reader) u32() uint32 {
	if s := r.take(4); s != "" {
		return binary.LittleEndian.Uint32([]byte(s))
	}
	return 0
}

func (r *reader) bytes(n int) string { return r.take(n) }

func (r *reader) align4() { r.take(-r.off & 3) }

// f32s copies n little-endian float32 values (copied, not aliased: the
// embedded data has no alignment guarantee).
func (r *reader) f32s(n int) []float32 {
	s := r.take(4 * n)
	if s == "" && n > 0 {
		return nil
	}
	b := []byte(s)
	out := make([]float32, n)
	for i := range out {
		out[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
	}
	return out
}

// i8s aliases n bytes of the blob as int8 values, without a copy.
func (r *reader) i8s(n int) []int8 {
	s := r.take(n)
	if s == "" {
		return nil
	}
	return unsafe.Slice((*int8)(unsafe.Pointer(unsafe.StringData(s))), n)
}
