package minilm

import (
	"encoding/json"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

// Tokenizer is the BERT WordPiece tokenizer that the model's tokenizer.json
// defines: a BertNormalizer (drop control characters, whitespace to spaces,
// spaces around CJK ideographs, strip accents by NFD and dropping nonspacing
// marks, lower-case), a BertPreTokenizer (split on whitespace, every
// punctuation character its own word), greedy longest-match-first WordPiece
// with the "##" continuation prefix ([UNK] for a word it cannot cover or
// longer than max_input_chars_per_word), and [CLS] … [SEP] around the text.
// The special tokens written literally in a text ("[SEP]") are matched before
// normalisation, as Hugging Face tokenizers does. Invalid UTF-8 bytes are
// dropped like U+FFFD. It is safe for concurrent use.
type Tokenizer struct {
	vocab         map[string]int32
	special       []specialToken // matched in the raw text
	cls, sep, unk int32
	prefix        string
	maxWordChars  int
	clean         bool
	chinese       bool
	stripAccents  bool
	lowercase     bool
}

type specialToken struct {
	text string
	id   int32
}

// tokenizerJSON is the part of tokenizer.json this tokenizer honours.
type tokenizerJSON struct {
	AddedTokens []struct {
		ID         int32  `json:"id"`
		Content    string `json:"content"`
		Special    bool   `json:"special"`
		SingleWord bool   `json:"single_word"`
		Normalized bool   `json:"normalized"`
	} `json:"added_tokens"`
	Normalizer struct {
		Type               string `json:"type"`
		CleanText          bool   `json:"clean_text"`
		HandleChineseChars bool   `json:"handle_chinese_chars"`
		StripAccents       *bool  `json:"strip_accents"`
		Lowercase          bool   `json:"lowercase"`
	} `json:"normalizer"`
	PreTokenizer struct {
		Type string `json:"type"`
	} `json:"pre_tokenizer"`
	PostProcessor struct {
		Type   string `json:"type"`
		Single []struct {
			SpecialToken *struct {
				ID string `json:"id"`
			} `json:"SpecialToken"`
			Sequence *struct {
				ID string `json:"id"`
			} `json:"Sequence"`
		} `json:"single"`
	} `json:"post_processor"`
	Model struct {
		Type                    string           `json:"type"`
		UnkToken                string           `json:"unk_token"`
		ContinuingSubwordPrefix string           `json:"continuing_subword_prefix"`
		MaxInputCharsPerWord    int              `json:"max_input_chars_per_word"`
		Vocab                   map[string]int32 `json:"vocab"`
	} `json:"model"`
}

// NewTokenizer parses a tokenizer.json of the BERT WordPiece family. It
// rejects the configurations it does not implement rather than tokenizing
// differently from the model's own tokenizer.
func NewTokenizer(data []byte) (*Tokenizer, error) {
	var j tokenizerJSON
	if err := json.Unmarshal(data, &j); err != nil {
		return nil, fmt.Errorf("tokenizer.json: %w", err)
	}
	if j.Normalizer.Type != "BertNormalizer" || j.PreTokenizer.Type != "BertPreTokenizer" ||
		j.Model.Type != "WordPiece" || j.PostProcessor.Type != "TemplateProcessing" {
		return nil, fmt.Errorf("tokenizer.json: want BertNormalizer, BertPreTokenizer, WordPiece and TemplateProcessing, got %s, %s, %s, %s",
			j.Normalizer.Type, j.PreTokenizer.Type, j.Model.Type, j.PostProcessor.Type)
	}
	t := &Tokenizer{
		vocab:        j.Model.Vocab,
		prefix:       j.Model.ContinuingSubwordPrefix,
		maxWordChars: j.Model.MaxInputCharsPerWord,
		clean:        j.Normalizer.CleanText,
		chinese:      j.Normalizer.HandleChineseChars,
		lowercase:    j.Normalizer.Lowercase,
	}
	// strip_accents: null follows lowercase, as in the reference implementation.
	t.stripAccents = t.lowercase
	if j.Normalizer.StripAccents != nil {
		t.stripAccents = *j.Normalizer.StripAccents
	}
	var ok bool
	if t.unk, ok = t.vocab[j.Model.UnkToken]; !ok {
		return nil, fmt.Errorf("tokenizer.json: unk token %q is not in the vocabulary", j.Model.UnkToken)
	}
	// The single-sequence template must be [CLS] $A [SEP].
	s := j.PostProcessor.Single
	if len(s) != 3 || s[0].SpecialToken == nil || s[1].Sequence == nil || s[2].SpecialToken == nil {
		return nil, fmt.Errorf("tokenizer.json: single template is not <special> $A <special>")
	}
	if t.cls, ok = t.vocab[s[0].SpecialToken.ID]; !ok {
		return nil, fmt.Errorf("tokenizer.json: %q is not in the vocabulary", s[0].SpecialToken.ID)
	}
	if t.sep, ok = t.vocab[s[2].SpecialToken.ID]; !ok {
		return nil, fmt.Errorf("tokenizer.json: %q is not in the vocabulary", s[2].SpecialToken.ID)
	}
	for _, a := range j.AddedTokens {
		if a.Normalized || a.SingleWord || a.Content == "" {
			return nil, fmt.Errorf("tokenizer.json: added token %q: only non-normalized, not single-word tokens are implemented", a.Content)
		}
		t.special = append(t.special, specialToken{text: a.Content, id: a.ID})
	}
	if t.maxWordChars <= 0 {
		t.maxWordChars = 100
	}
	return t, nil
}

// VocabSize is the number of token IDs.
func (t *Tokenizer) VocabSize() int { return len(t.vocab) }

// Encode returns the token IDs of text: [CLS], at most maxTokens-2 word
// pieces, [SEP]. Tokenization stops as soon as the window is full, so a huge
// text costs no more than its first words.
func (t *Tokenizer) Encode(text string, maxTokens int) []int32 {
	maxTokens = max(maxTokens, 2)
	// Scratch on the stack for the usual word; longer ones grow on the heap.
	var word, piece, nfd [64]byte
	e := encoder{t: t, limit: maxTokens - 1, ids: make([]int32, 1, min(maxTokens, 64)),
		word: word[:0], piece: piece[:0], nfd: nfd[:0]}
	e.ids[0] = t.cls
	e.run(text)
	return append(e.ids, t.sep)
}

// encoder is the state of one Encode: the word being built and the IDs so far.
type encoder struct {
	t     *Tokenizer
	limit int // len(ids) at which the window is full
	ids   []int32
	word  []byte // the current word, normalised
	runes int    // characters in word
	piece []byte // scratch for "##" + suffix lookups
	nfd   []byte // scratch for the decomposition of one character
}

func (e *encoder) full() bool { return len(e.ids) >= e.limit }

func (e *encoder) run(text string) {
	t := e.t
	for i := 0; i < len(text) && !e.full(); {
		if text[i] == '[' {
			if id, n, ok := t.matchSpecial(text[i:]); ok {
				e.flush()
				if !e.full() {
					e.ids = append(e.ids, id)
				}
				i += n
				continue
			}
		}
		r, size := utf8.DecodeRuneInString(text[i:])
		i += size
		if r == utf8.RuneError && size == 1 {
			continue // invalid UTF-8: dropped like U+FFFD
		}
		if t.clean {
			if r == 0 || r == utf8.RuneError || isControl(r) {
				continue
			}
			if isWhitespace(r) {
				r = ' '
			}
		}
		isCJK := t.chinese && isChinese(r)
		if isCJK {
			e.flush()
		}
		e.normalized(r)
		if isCJK {
			e.flush()
		}
	}
	e.flush()
}

// normalized feeds the normal form of r (accents stripped, lower-cased) to
// the pre-tokenizer.
func (e *encoder) normalized(r rune) {
	t := e.t
	if r < utf8.RuneSelf {
		if t.lowercase && 'A' <= r && r <= 'Z' {
			r += 'a' - 'A'
		}
		e.pretokenize(r)
		return
	}
	if !t.stripAccents {
		e.lower(r)
		return
	}
	e.nfd = norm.NFD.AppendString(e.nfd[:0], string(r))
	for _, c := range string(e.nfd) {
		if unicode.Is(unicode.Mn, c) {
			continue
		}
		e.lower(c)
	}
}

func (e *encoder) lower(r rune) {
	if !e.t.lowercase {
		e.pretokenize(r)
		return
	}
	// The full lower-case mapping differs from the simple one for a single
	// character: U+0130 (İ) is "i" followed by a combining dot above.
	if r == 'İ' {
		e.pretokenize('i')
		e.pretokenize('\u0307')
		return
	}
	e.pretokenize(unicode.ToLower(r))
}

// pretokenize appends r to the current word, or ends it: whitespace separates
// words and every punctuation character is a word of its own.
func (e *encoder) pretokenize(r rune) {
	switch {
	case isWhitespace(r):
		e.flush()
	case isPunctuation(r):
		e.flush()
		e.word = utf8.AppendRune(e.word, r)
		e.runes = 1
		e.flush()
	default:
		// A word longer than maxWordChars becomes [UNK] whatever it holds,
		// so its characters past the limit are counted, not kept.
		if e.runes <= e.t.maxWordChars {
			e.word = utf8.AppendRune(e.word, r)
		}
		e.runes++
	}
}

// flush turns the current word into word pieces.
func (e *encoder) flush() {
	word, runes := e.word, e.runes
	e.word, e.runes = e.word[:0], 0
	if runes == 0 || e.full() {
		return
	}
	t := e.t
	if runes > t.maxWordChars {
		e.ids = append(e.ids, t.unk)
		return
	}
	mark := len(e.ids)
	for start := 0; start < len(word); {
		end := len(word)
		var id int32
		found := false
		for end > start {
			sub := word[start:end]
			if start > 0 {
				e.piece = append(append(e.piece[:0], t.prefix...), sub...)
				sub = e.piece
			}
			if id, found = t.vocab[string(sub)]; found {
				break
			}
			// Back off by one character, not one byte.
			_, n := utf8.DecodeLastRune(word[start:end])
			end -= n
		}
		if !found {
			e.ids = append(e.ids[:mark], t.unk)
			return
		}
		e.ids = append(e.ids, id)
		start = end
	}
	// Truncation keeps the first pieces of the last word that fits.
	if len(e.ids) > e.limit {
		e.ids = e.ids[:e.limit]
	}
}

func (t *Tokenizer) matchSpecial(s string) (int32, int, bool) {
	for _, sp := range t.special {
		if strings.HasPrefix(s, sp.text) {
			return sp.id, len(sp.text), true
		}
	}
	return 0, 0, false
}

// isWhitespace is the Unicode White_Space property plus tab, newline and
// carriage return.
func isWhitespace(r rune) bool {
	return r == '\t' || r == '\n' || r == '\r' || unicode.IsSpace(r)
}

// isControl is the general category C (control, format, private use,
// surrogate, unassigned) except tab, newline and carriage return, which count
// as whitespace.
func isControl(r rune) bool {
	switch r {
	case '\t', '\n', '\r':
		return false
	}
	if r < utf8.RuneSelf {
		return r < 0x20 || r == 0x7f
	}
	return unicode.In(r, unicode.Cc, unicode.Cf, unicode.Co, unicode.Cs) ||
		!unicode.In(r, unicode.L, unicode.M, unicode.N, unicode.P, unicode.S, unicode.Z)
}

// isPunctuation is ASCII punctuation (which includes symbols such as $ and
// ^) or the general category P.
func isPunctuation(r rune) bool {
	if r < utf8.RuneSelf {
		return r >= 33 && r <= 47 || r >= 58 && r <= 64 || r >= 91 && r <= 96 || r >= 123 && r <= 126
	}
	return unicode.IsPunct(r)
}

// isChinese reports the CJK Unified Ideographs blocks that BERT splits into
// one word per character.
func isChinese(r rune) bool {
	return r >= 0x4E00 && r <= 0x9FFF ||
		r >= 0x3400 && r <= 0x4DBF ||
		r >= 0x20000 && r <= 0x2A6DF ||
		r >= 0x2A700 && r <= 0x2B73F ||
		r >= 0x2B740 && r <= 0x2B81F ||
		r >= 0x2B920 && r <= 0x2CEAF ||
		r >= 0xF900 && r <= 0xFAFF ||
		r >= 0x2F800 && r <= 0x2FA1F
}
