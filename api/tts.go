package api

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/labstack/echo/v4"

	"github.com/crispy-enigma/crispy/config"
	"github.com/crispy-enigma/crispy/gateway/speech"
	"github.com/crispy-enigma/crispy/store"
)

// SpeechRouter picks a tenant's synthesizer (speech.Router).
type SpeechRouter interface {
	For(tenant *config.TenantConfig) (s speech.Synthesizer, ok bool)
}

var _ SpeechRouter = (*speech.Router)(nil)

// SpeechDeps are the /tts routes' dependencies; /tts is rate limited by Deps.Meter.
type SpeechDeps struct {
	Router SpeechRouter
}

func (s *Server) ttsRoutes(e *echo.Echo) {
	e.POST("/tts", s.postTTS)
	e.GET("/tts/voices", s.getVoices)
}

// ttsRequest is docs/api.md's POST /tts body. Pointers tell "absent" from "zero".
type ttsRequest struct {
	Text      *string  `json:"text"`
	Voice     string   `json:"voice"`
	Format    *string  `json:"format"`
	Streaming bool     `json:"streaming"`
	Speed     *float64 `json:"speed"`
}

func validateTTS(req *ttsRequest) (speech.Request, error) {
	out := speech.Request{Voice: req.Voice, Format: speech.FormatMP3}
	switch {
	case req.Text == nil:
		return out, errInvalidRequest("text: required")
	case strings.TrimSpace(*req.Text) == "":
		return out, errInvalidRequest("text: must not be empty")
	case utf8.RuneCountInString(*req.Text) > speech.MaxTextChars:
		return out, errInvalidRequest("text: must be at most %d characters", speech.MaxTextChars)
	case len(req.Voice) > 128:
		return out, errInvalidRequest("voice: must be at most 128 characters")
	}
	out.Text = *req.Text
	if req.Format != nil {
		switch *req.Format {
		case speech.FormatMP3, speech.FormatWAV, speech.FormatOpus:
			out.Format = *req.Format
		default:
			return out, errInvalidRequest("format: must be one of mp3, wav, opus")
		}
	}
	if req.Speed != nil {
		if *req.Speed < speech.MinSpeed || *req.Speed > speech.MaxSpeed {
			return out, errInvalidRequest("speed: must be between %g and %g", speech.MinSpeed, speech.MaxSpeed)
		}
		out.Speed = *req.Speed
	}
	return speech.Normalize(out) // the provider's own limits, should they ever be tighter
}

// ttsEnabled is docs/api.md's gate: featureFlags.tts_enabled must be true (absent is off).
func ttsEnabled(c echo.Context) error {
	if !tenantOf(c).Flag("tts_enabled") {
		return NewError(http.StatusForbidden, CodeTTSNotEnabled, "text-to-speech is not enabled for this tenant")
	}
	return nil
}

// postTTS answers with the audio itself, not an envelope (docs/api.md: binary answers are the
// exception); failures are enveloped as everywhere.
func (s *Server) postTTS(c echo.Context) error {
	if err := ttsEnabled(c); err != nil {
		return err
	}
	var body ttsRequest
	if err := decodeJSON(c, &body); err != nil {
		return err
	}
	req, err := validateTTS(&body)
	if err != nil {
		var e *Error
		if errors.As(err, &e) {
			return e
		}
		return Wrap(http.StatusBadRequest, CodeInvalidRequest, strings.TrimPrefix(err.Error(), speech.ErrInvalidRequest.Error()+": "), err)
	}
	audio, err := s.synthesize(c, req)
	if err != nil {
		return err
	}
	return c.Blob(http.StatusOK, audio.ContentType, audio.Data)
}

// synthesize is the speech lifecycle POST /tts and POST /v1/audio/speech share: the rate limit, the
// tenant's engine, the voice check, the synthesis, its metrics and ledger event, and the
// x-tts-characters and x-audio-duration-ms headers. The audio's ContentType is always set.
func (s *Server) synthesize(c echo.Context, req speech.Request) (speech.Audio, error) {
	if err := s.checkRateLimit(c, ""); err != nil {
		return speech.Audio{}, err
	}
	t := tenantOf(c)
	synth, served := s.speech.Router.For(t)
	if !served {
		s.log.Warn().Str("tenantId", t.TenantID).Str("traceId", traceID(c)).Str("model", t.AIModels.TTS).
			Msg("aiModels.tts is not served by any provider: using espeak-ng")
	}
	if err := checkVoice(c.Request().Context(), synth, req.Voice); err != nil {
		return speech.Audio{}, err
	}
	// streaming is accepted for the original's clients; the clip is synthesized whole and then sent.
	audio, err := synth.Synthesize(c.Request().Context(), req)
	if err != nil {
		s.metrics.TTSRequests.WithLabelValues(t.TenantID, req.Format, "error").Inc()
		if errors.Is(err, speech.ErrInvalidRequest) {
			return speech.Audio{}, Wrap(http.StatusBadRequest, CodeInvalidRequest, ttsClientMessage(err), err)
		}
		return speech.Audio{}, ttsError(err, "speech synthesis failed")
	}
	s.metrics.TTSRequests.WithLabelValues(t.TenantID, req.Format, "ok").Inc()
	s.metrics.TTSCharacters.WithLabelValues(t.TenantID).Add(float64(audio.Characters))
	// Speech is metered in characters, not tokens: the ledger records them exactly (audit kind
	// "speech", summed by GET /usage); the budget, which counts model tokens, does not apply.
	s.recordEvent(c.Request().Context(), store.Event{
		Kind: store.KindSpeech, TenantID: t.TenantID, TraceID: traceID(c), Subject: cmpOr(t.AIModels.TTS, speech.LocalModel),
		LatencyMs: time.Since(state(c).start).Milliseconds(),
		Detail: map[string]any{"characters": audio.Characters, "format": req.Format, "voice": req.Voice,
			"durationMs": audio.Duration.Milliseconds()},
	})
	h := c.Response().Header()
	h.Set("x-tts-characters", strconv.Itoa(audio.Characters))
	if audio.Duration > 0 {
		h.Set("x-audio-duration-ms", strconv.FormatInt(audio.Duration.Milliseconds(), 10))
	}
	if audio.ContentType == "" {
		audio.ContentType = speech.ContentType(req.Format)
	}
	return audio, nil
}

// ttsError maps a speech engine's failure: a node without the engine is 503 tts_unavailable (a
// node that lacks an optional tool still serves everything else), any other failure tts_error.
func ttsError(err error, message string) *Error {
	if errors.Is(err, speech.ErrUnavailable) {
		return Wrap(http.StatusServiceUnavailable, CodeTTSUnavailable,
			"text-to-speech is not available on this node (no speech engine installed)", err)
	}
	return Wrap(http.StatusInternalServerError, CodeTTSError, message, err)
}

// ttsClientMessage is the message of an invalid speech request; the speech package's errors name
// the field and hold no internals (e.g. `unknown voice "xx"`).
func ttsClientMessage(err error) string {
	if errors.Is(err, speech.ErrUnknownVoice) {
		return "voice: unknown voice (GET /tts/voices lists them)"
	}
	return "invalid speech request"
}

// checkVoice refuses a voice the provider does not list: espeak-ng silently falls back to its default
// voice for a name it does not know, which would answer 200 with a voice nobody asked for. An espeak-ng
// variant ("en+f3") is judged by its base voice, and a language ("en") by the voices of that language
// ("en-gb", "en-us"). When the list cannot be read, the provider decides.
func checkVoice(ctx context.Context, synth speech.Synthesizer, voice string) error {
	if voice == "" {
		return nil
	}
	voices, err := synth.Voices(ctx)
	if err != nil || len(voices) == 0 {
		return nil
	}
	base, _, _ := strings.Cut(voice, "+")
	for _, v := range voices {
		id := strings.ToLower(v.ID)
		if id == strings.ToLower(base) || strings.HasPrefix(id, strings.ToLower(base)+"-") || strings.EqualFold(v.Name, base) {
			return nil
		}
	}
	return errInvalidRequest("voice: unknown voice %q (GET /tts/voices lists them)", truncateForMessage(voice))
}

// truncateForMessage keeps client input echoed in a message short.
func truncateForMessage(s string) string {
	if utf8.RuneCountInString(s) <= 40 {
		return s
	}
	return string([]rune(s)[:40]) + "…"
}

func (s *Server) getVoices(c echo.Context) error {
	if err := ttsEnabled(c); err != nil {
		return err
	}
	synth, _ := s.speech.Router.For(tenantOf(c))
	voices, err := synth.Voices(c.Request().Context())
	if err != nil {
		return ttsError(err, "could not list voices")
	}
	if voices == nil {
		voices = []speech.Voice{}
	}
	return ok(c, http.StatusOK, map[string]any{"voices": voices})
}
