package speech

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"unicode/utf8"
)

// OpenAICompatible calls POST {base}/audio/speech (OpenAI, and servers that copy its API such as
// openedai-speech or LocalAI). base includes the version, e.g. "https://api.openai.com/v1".
type OpenAICompatible struct {
	base   string
	apiKey string
	model  string
	voices []string
	client *http.Client
	// maxBytes bounds the audio read from the provider.
	maxBytes int64
}

var _ Synthesizer = (*OpenAICompatible)(nil)

// NewOpenAICompatible returns a provider. model is the default when a request names none; voices is
// what Voices lists (nil means OpenAI's six); client nil means http.DefaultClient.
func NewOpenAICompatible(base, apiKey, model string, voices []string, client *http.Client) *OpenAICompatible {
	if client == nil {
		client = http.DefaultClient
	}
	if voices == nil {
		voices = []string{"alloy", "echo", "fable", "onyx", "nova", "shimmer"}
	}
	return &OpenAICompatible{base: strings.TrimRight(base, "/"), apiKey: apiKey, model: model, voices: voices, client: client, maxBytes: 64 << 20}
}

// Synthesize implements Synthesizer.
func (p *OpenAICompatible) Synthesize(ctx context.Context, req Request) (Audio, error) {
	req, err := Normalize(req)
	if err != nil {
		return Audio{}, err
	}
	model := req.Model
	if model == "" {
		model = p.model
	}
	voice := req.Voice
	if voice == "" && len(p.voices) > 0 {
		voice = p.voices[0]
	}
	body, err := json.Marshal(map[string]any{
		"model":           model,
		"input":           req.Text,
		"voice":           voice,
		"response_format": req.Format,
		"speed":           req.Speed,
	})
	if err != nil {
		return Audio{}, fmt.Errorf("encode speech request: %w", err)
	}
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, p.base+"/audio/speech", bytes.NewReader(body))
	if err != nil {
		return Audio{}, fmt.Errorf("build speech request: %w", err)
	}
	hreq.Header.Set("Content-Type", "application/json")
	if p.apiKey != "" {
		hreq.Header.Set("Authorization", "Bearer "+p.apiKey)
	}
	resp, err := p.client.Do(hreq)
	if err != nil {
		return Audio{}, fmt.Errorf("speech provider %s: %w", p.base, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return Audio{}, fmt.Errorf("speech provider %s: status %d: %s", p.base, resp.StatusCode, strings.TrimSpace(string(msg)))
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, p.maxBytes+1))
	if err != nil {
		return Audio{}, fmt.Errorf("speech provider %s: read audio: %w", p.base, err)
	}
	if int64(len(data)) > p.maxBytes {
		return Audio{}, fmt.Errorf("speech provider %s: %w", p.base, errOutputTooLarge)
	}
	if len(data) == 0 {
		return Audio{}, fmt.Errorf("speech provider %s: empty audio", p.base)
	}
	audio := Audio{Data: data, ContentType: ContentType(req.Format), Characters: utf8.RuneCountInString(req.Text)}
	if req.Format == FormatWAV {
		// Streamed WAVs carry placeholder sizes too; fix them when the file parses.
		if info, err := FixWAVHeader(data); err == nil {
			audio.Data = data[:info.DataOffset+info.DataSize]
			audio.SampleRate = info.SampleRate
			audio.Duration = info.Duration()
		}
	}
	return audio, nil
}

// Voices implements Synthesizer.
func (p *OpenAICompatible) Voices(ctx context.Context) ([]Voice, error) {
	out := make([]Voice, 0, len(p.voices))
	for _, v := range p.voices {
		out = append(out, Voice{ID: v, Name: v})
	}
	return out, nil
}
