package minilm

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"os"
	"slices"
	"strings"
	"testing"
)

// reference is testdata/reference.json, written by scripts/minilm/reference.py:
// token IDs from Hugging Face tokenizers and vectors from an independent
// float64 forward pass over the original float32 weights.
type reference struct {
	MaxSeqLength int `json:"max_seq_length"`
	Items        []struct {
		Text   string    `json:"text"`
		IDs    []int32   `json:"ids"`
		Vector []float64 `json:"vector"`
	} `json:"items"`
}

func loadReference(t testing.TB) reference {
	t.Helper()
	data, err := os.ReadFile("testdata/reference.json")
	if err != nil {
		t.Fatal(err)
	}
	var ref reference
	if err := json.Unmarshal(data, &ref); err != nil {
		t.Fatal(err)
	}
	if len(ref.Items) < 20 || ref.MaxSeqLength != maxSeq {
		t.Fatalf("reference: %d items, max_seq_length %d", len(ref.Items), ref.MaxSeqLength)
	}
	return ref
}

func newModel(t testing.TB) *Model {
	t.Helper()
	m, err := New()
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestTokenizerMatchesReference(t *testing.T) {
	m := newModel(t)
	for _, it := range loadReference(t).Items {
		if got := m.Tokenizer().Encode(it.Text, maxSeq); !slices.Equal(got, it.IDs) {
			t.Errorf("%q:\n got %v\nwant %v", it.Text, got, it.IDs)
		}
	}
}

func TestTokenizerCases(t *testing.T) {
	tok := newModel(t).Tokenizer()
	vocab := func(words ...string) []int32 {
		ids := []int32{tok.cls}
		for _, w := range words {
			id, ok := tok.vocab[w]
			if !ok {
				t.Fatalf("%q not in vocabulary", w)
			}
			ids = append(ids, id)
		}
		return append(ids, tok.sep)
	}
	for _, c := range []struct {
		name, text string
		want       []int32
	}{
		{"empty", "", vocab()},
		{"invalid utf-8 dropped", "caf\xff\xfee", vocab("cafe")},
		{"accents stripped", "CAFÉ", vocab("cafe")},
		{"decomposed accent", "cafe\u0301", vocab("cafe")},
		{"dotted capital I", "İ", vocab("i")},
		{"control and zero-width removed", "ca\u200bfe\u0000", vocab("cafe")},
		{"no-break space splits", "a\u00a0b", vocab("a", "b")},
		{"punctuation split", "a,b", vocab("a", ",", "b")},
		{"ascii symbol is punctuation", "a$b", vocab("a", "$", "b")},
		{"cjk one word per ideograph", "中文", vocab("中", "文")},
		{"word piece", "embeddings", vocab("em", "##bed", "##ding", "##s")},
		{"unknown word", "🫠", vocab("[UNK]")},
		{"over-long word", strings.Repeat("a", 101), vocab("[UNK]")},
		{"special token literal", "a[SEP]b", vocab("a", "[SEP]", "b")},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := tok.Encode(c.text, maxSeq); !slices.Equal(got, c.want) {
				t.Errorf("Encode(%q) = %v, want %v", c.text, got, c.want)
			}
		})
	}
}

func TestTokenizerTruncates(t *testing.T) {
	tok := newModel(t).Tokenizer()
	for _, text := range []string{
		strings.Repeat("word ", 1<<20/5),   // 1 MB of words
		strings.Repeat("x", 1<<20),         // 1 MB of one word
		strings.Repeat("embeddings ", 300), // a word cut into pieces at the window
	} {
		ids := tok.Encode(text, maxSeq)
		wantLen := maxSeq
		if !strings.Contains(text, " ") {
			wantLen = 3 // [CLS] [UNK] [SEP]
		}
		if len(ids) != wantLen || ids[0] != tok.cls || ids[len(ids)-1] != tok.sep {
			t.Errorf("%.20q…: %d tokens, first %d last %d", text, len(ids), ids[0], ids[len(ids)-1])
		}
	}
}

func cosine(a []float32, b []float64) float64 {
	var dot, na, nb float64
	for i := range a {
		dot += float64(a[i]) * b[i]
		na += float64(a[i]) * float64(a[i])
		nb += b[i] * b[i]
	}
	return dot / math.Sqrt(na*nb)
}

// TestEmbedMatchesReference embeds the reference texts in one batch (packed,
// so attention must stay within each text) and one by one.
func TestEmbedMatchesReference(t *testing.T) {
	m := newModel(t)
	ref := loadReference(t)
	texts := make([]string, len(ref.Items))
	for i, it := range ref.Items {
		texts[i] = it.Text
	}
	batch, err := m.Embed(context.Background(), texts)
	if err != nil {
		t.Fatal(err)
	}
	worst := 1.0
	for i, it := range ref.Items {
		one, err := m.Embed(context.Background(), []string{it.Text})
		if err != nil {
			t.Fatal(err)
		}
		for name, v := range map[string][]float32{"batch": batch[i], "single": one[0]} {
			if len(v) != Dimension {
				t.Fatalf("%s %q: dimension %d", name, it.Text, len(v))
			}
			c := cosine(v, it.Vector)
			worst = min(worst, c)
			if c < 0.999 || math.IsNaN(c) {
				t.Errorf("%s %.40q: cosine %.6f < 0.999", name, it.Text, c)
			}
		}
	}
	t.Logf("min cosine to the reference over %d texts: %.6f", len(ref.Items), worst)
}

func TestEmbedBadInput(t *testing.T) {
	m := newModel(t)
	texts := []string{"", "?!?!...", strings.Repeat("a", 1<<20), "\xff\xfe\xfd", strings.Repeat("la ", 1<<18)}
	vecs, err := m.Embed(context.Background(), texts)
	if err != nil {
		t.Fatal(err)
	}
	for i, v := range vecs {
		var ss float64
		for _, x := range v {
			if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
				t.Fatalf("text %d: non-finite value", i)
			}
			ss += float64(x) * float64(x)
		}
		if math.Abs(ss-1) > 1e-4 {
			t.Errorf("text %d: norm² %v, want 1", i, ss)
		}
	}
	if got, err := m.Embed(context.Background(), nil); err != nil || len(got) != 0 {
		t.Errorf("Embed(nil) = %v, %v", got, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := m.Embed(ctx, []string{"x"}); err == nil {
		t.Error("Embed with a cancelled context succeeded")
	}
}

// TestEmbedLargeBatch crosses the per-pass token budget, so a call runs
// several forward passes and must keep the texts in order.
func TestEmbedLargeBatch(t *testing.T) {
	m := newModel(t)
	var texts []string
	for i := range 40 {
		texts = append(texts, strings.Repeat("token budget test ", 5+i%7)+string(rune('a'+i%26)))
	}
	batch, err := m.Embed(context.Background(), texts)
	if err != nil {
		t.Fatal(err)
	}
	for _, i := range []int{0, 17, 39} {
		one, err := m.Embed(context.Background(), texts[i:i+1])
		if err != nil {
			t.Fatal(err)
		}
		b := make([]float64, Dimension)
		for j, x := range batch[i] {
			b[j] = float64(x)
		}
		if c := cosine(one[0], b); c < 0.99999 {
			t.Errorf("text %d: batch and single differ, cosine %v", i, c)
		}
	}
}

func TestExpf(t *testing.T) {
	for x := float32(-87); x <= 0; x += 0.37 {
		want := math.Exp(float64(x))
		if got := float64(expf(x)); math.Abs(got-want) > 2e-7*want+1e-38 {
			t.Fatalf("expf(%v) = %v, want %v", x, got, want)
		}
	}
}

// TestEmbedConcurrent runs calls in parallel (with -race): they share the
// weights and the helper goroutines and must not share scratch memory.
func TestEmbedConcurrent(t *testing.T) {
	m := newModel(t)
	texts := []string{"first text", "a second, longer text about something else entirely", "third"}
	want, err := m.Embed(context.Background(), texts)
	if err != nil {
		t.Fatal(err)
	}
	errs := make(chan error, 4)
	for range 4 {
		go func() {
			for range 3 {
				got, err := m.Embed(context.Background(), texts)
				if err == nil && !slices.EqualFunc(got, want, slices.Equal[[]float32]) {
					err = errors.New("concurrent call returned different vectors")
				}
				if err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
	}
	for range 4 {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}

// FuzzTokenizer: any bytes tokenize without panicking to [CLS] … [SEP]
// within the window, with IDs in the vocabulary.
func FuzzTokenizer(f *testing.F) {
	for _, s := range []string{"", "hello, world", "İstanbul 東京 🍕", "\xff\xfe", "[SEP][CLS]", "e\u0301\u0000\u200b"} {
		f.Add(s, 16)
	}
	tok := newModel(f).Tokenizer()
	f.Fuzz(func(t *testing.T, text string, window int) {
		window = window%300 + 1
		ids := tok.Encode(text, window)
		if len(ids) < 2 || len(ids) > max(window, 2) || ids[0] != tok.cls || ids[len(ids)-1] != tok.sep {
			t.Fatalf("Encode(%q, %d) = %v", text, window, ids)
		}
		for _, id := range ids {
			if id < 0 || int(id) >= tok.VocabSize() {
				t.Fatalf("Encode(%q): id %d out of range", text, id)
			}
		}
	})
}
