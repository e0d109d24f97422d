package openai

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"math"
)

// Encoding formats of POST /v1/embeddings.
const (
	EncodingFloat  = "float"
	EncodingBase64 = "base64"
)

// EmbeddingRequest is the body of POST /v1/embeddings.
type EmbeddingRequest struct {
	Input          EmbeddingInput `json:"input"`
	Model          string         `json:"model"`
	EncodingFormat string         `json:"encoding_format,omitempty"`
	Dimensions     *int           `json:"dimensions,omitempty"`
	User           string         `json:"user,omitempty"`
}

// EmbeddingInput is `input`: a string or an array of strings. OpenAI also takes token arrays; no
// embedding model here shares OpenAI's tokenizer, so those are refused (ErrTokenInput) rather than
// embedded as numbers.
type EmbeddingInput struct {
	Texts []string
	// Tokens is set when the input was token IDs (refused by the handler with a clear message).
	Tokens bool
}

// ErrTokenInput is returned for token-array input.
var ErrTokenInput = errors.New("token arrays are not supported: send strings")

// UnmarshalJSON implements json.Unmarshaler.
func (in *EmbeddingInput) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	*in = EmbeddingInput{}
	if len(b) == 0 || bytes.Equal(b, []byte("null")) {
		return nil
	}
	if b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		in.Texts = []string{s}
		return nil
	}
	var items []json.RawMessage
	if err := json.Unmarshal(b, &items); err != nil {
		return Invalid("input", "must be a string or an array of strings")
	}
	in.Texts = make([]string, 0, len(items))
	for _, it := range items {
		it = bytes.TrimSpace(it)
		if len(it) > 0 && it[0] != '"' {
			// A number (one token array) or an array (many): token input.
			in.Tokens, in.Texts = true, nil
			return nil
		}
		var s string
		if err := json.Unmarshal(it, &s); err != nil {
			return Invalid("input", "must be a string or an array of strings")
		}
		in.Texts = append(in.Texts, s)
	}
	return nil
}

// EmbeddingList is the answer of POST /v1/embeddings.
type EmbeddingList struct {
	Object string         `json:"object"`
	Data   []Embedding    `json:"data"`
	Model  string         `json:"model"`
	Usage  EmbeddingUsage `json:"usage"`
}

// Embedding is one vector. Embedding holds []float32 for encoding_format float and a base64 string
// (little-endian float32s, as OpenAI encodes them) for base64.
type Embedding struct {
	Object    string `json:"object"`
	Index     int    `json:"index"`
	Embedding any    `json:"embedding"`
}

// EmbeddingUsage counts the input tokens.
type EmbeddingUsage struct {
	PromptTokens int `json:"prompt_tokens"`
	TotalTokens  int `json:"total_tokens"`
}

// EncodeVector returns v in the requested encoding ("" means float).
func EncodeVector(v []float32, format string) any {
	if format != EncodingBase64 {
		if v == nil {
			return []float32{}
		}
		return v
	}
	return Base64Vector(v)
}

// Base64Vector encodes v as OpenAI does for encoding_format base64: the little-endian IEEE 754 bytes
// of each float32, base64 (standard alphabet, padded).
func Base64Vector(v []float32) string {
	buf := make([]byte, 4*len(v))
	for i, f := range v {
		binary.LittleEndian.PutUint32(buf[4*i:], math.Float32bits(f))
	}
	return base64.StdEncoding.EncodeToString(buf)
}

// DecodeBase64Vector is Base64Vector's inverse (for clients and tests).
func DecodeBase64Vector(s string) ([]float32, error) {
	buf, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return nil, err
	}
	if len(buf)%4 != 0 {
		return nil, errors.New("base64 vector length is not a multiple of 4 bytes")
	}
	v := make([]float32, len(buf)/4)
	for i := range v {
		v[i] = math.Float32frombits(binary.LittleEndian.Uint32(buf[4*i:]))
	}
	return v, nil
}
