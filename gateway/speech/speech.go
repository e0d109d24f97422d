// Package speech turns text into audio for POST /tts (docs/api.md): espeak-ng on the machine, encoded
// to MP3 with lame or to Ogg Opus with opusenc, and an OpenAI-compatible /audio/speech provider for
// tenants whose aiModels.tts names one.
package speech

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"time"
	"unicode/utf8"
)

// Formats of docs/api.md "Speech".
const (
	FormatMP3  = "mp3"
	FormatWAV  = "wav"
	FormatOpus = "opus"
)

// Limits of docs/api.md "Speech".
const (
	MaxTextChars = 5000
	MinSpeed     = 0.25
	MaxSpeed     = 4.0
)

// ErrInvalidRequest marks a request the caller must fix (HTTP 400); other errors are provider
// failures (500 tts_error).
var ErrInvalidRequest = errors.New("invalid speech request")

// Request is one synthesis.
type Request struct {
	Text string
	// Voice is a provider voice ID ("" = the provider's default), e.g. "en-us" for espeak-ng.
	Voice string
	// Format is mp3, wav or opus; "" means mp3.
	Format string
	// Speed is 0.25–4.0; 0 means 1.
	Speed float64
	// Model is the remote model ID; espeak-ng ignores it.
	Model string
}

// Audio is a synthesized clip.
type Audio struct {
	Data        []byte
	ContentType string
	// SampleRate is the rate of the synthesized PCM (espeak-ng: 22050); 0 when the provider does not
	// say. Opus decoders always play at 48 kHz whatever this says.
	SampleRate int
	// Duration is the clip's length; 0 when unknown (a remote MP3 or Opus).
	Duration time.Duration
	// Characters is the number of characters synthesized, for usage.
	Characters int
}

// Voice is one voice a provider offers.
type Voice struct {
	ID       string `json:"id"`
	Name     string `json:"name"`
	Language string `json:"language,omitempty"`
	Gender   string `json:"gender,omitempty"`
}

// Synthesizer is a speech provider.
type Synthesizer interface {
	Synthesize(ctx context.Context, req Request) (Audio, error)
	Voices(ctx context.Context) ([]Voice, error)
}

var voicePattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_+\-/.]{0,63}$`)

// Normalize checks req and fills its defaults (format mp3, speed 1). Errors wrap ErrInvalidRequest.
func Normalize(req Request) (Request, error) {
	n := utf8.RuneCountInString(req.Text)
	if n == 0 {
		return req, fmt.Errorf("%w: text is empty", ErrInvalidRequest)
	}
	if n > MaxTextChars {
		return req, fmt.Errorf("%w: text is longer than %d characters", ErrInvalidRequest, MaxTextChars)
	}
	if !utf8.ValidString(req.Text) {
		return req, fmt.Errorf("%w: text is not valid UTF-8", ErrInvalidRequest)
	}
	switch req.Format {
	case "":
		req.Format = FormatMP3
	case FormatMP3, FormatWAV, FormatOpus:
	default:
		return req, fmt.Errorf("%w: format must be mp3, wav or opus", ErrInvalidRequest)
	}
	if req.Speed == 0 {
		req.Speed = 1
	}
	if req.Speed < MinSpeed || req.Speed > MaxSpeed {
		return req, fmt.Errorf("%w: speed must be between %.2f and %.1f", ErrInvalidRequest, MinSpeed, MaxSpeed)
	}
	if req.Voice != "" && !voicePattern.MatchString(req.Voice) {
		return req, fmt.Errorf("%w: voice %q is not a voice name", ErrInvalidRequest, req.Voice)
	}
	return req, nil
}

// ContentType is the media type of a format.
func ContentType(format string) string {
	switch format {
	case FormatWAV:
		return "audio/wav"
	case FormatOpus:
		return "audio/ogg"
	}
	return "audio/mpeg"
}
