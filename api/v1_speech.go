package api

import (
	"net/http"
	"strings"
	"unicode/utf8"

	"github.com/labstack/echo/v4"

	"github.com/crispy-enigma/crispy/gateway/speech"
	"github.com/crispy-enigma/crispy/wire/openai"
)

// postSpeech is OpenAI's POST /v1/audio/speech on the tenant's speech engine, with the same gate,
// rate limit, metrics and ledger event as POST /tts (synthesize). On espeak-ng, OpenAI's voice
// names (alloy, nova, …) map to espeak-ng voices; an espeak-ng voice name is accepted as is.
// OpenAI's aac, flac and pcm formats are refused: the engine produces mp3, wav and opus.
func (s *Server) postSpeech(c echo.Context) error {
	if err := ttsEnabled(c); err != nil {
		return err
	}
	var body openai.SpeechRequest
	if err := v1Decode(c, &body); err != nil {
		return err
	}
	t := tenantOf(c)
	switch {
	case body.Input == nil:
		return paramError(openai.Missing("input"))
	case strings.TrimSpace(*body.Input) == "":
		return paramError(openai.Invalid("input", "must not be empty"))
	case utf8.RuneCountInString(*body.Input) > speech.MaxTextChars:
		return paramError(openai.Invalid("input", "must be at most %d characters", speech.MaxTextChars))
	case body.Voice == "":
		return paramError(openai.Missing("voice"))
	case len(body.Voice) > 128:
		return paramError(openai.Invalid("voice", "must be at most 128 characters"))
	case body.Speed != nil && (*body.Speed < speech.MinSpeed || *body.Speed > speech.MaxSpeed):
		return paramError(openai.Invalid("speed", "must be between %g and %g", speech.MinSpeed, speech.MaxSpeed))
	}
	if owner, ok := s.modelOwner(t, body.Model); !ok || owner != "speech" {
		return errModelNotFound(body.Model)
	}
	format, ok := openai.SpeechFormat(body.ResponseFormat)
	if !ok {
		return paramError(openai.Unsupported("response_format", "must be one of mp3, wav, opus"))
	}
	voice := body.Voice
	if local := cmpOr(t.AIModels.TTS, speech.LocalModel) == speech.LocalModel; local {
		voice = openai.EspeakVoice(voice)
	}
	req := speech.Request{Text: *body.Input, Voice: voice, Format: format}
	if body.Speed != nil {
		req.Speed = *body.Speed
	}
	audio, err := s.synthesize(c, req) // tts.go
	if err != nil {
		if e, isErr := err.(*Error); isErr && e.Code == CodeInvalidRequest && strings.HasPrefix(e.Message, "voice:") {
			return paramError(openai.Invalid("voice", "%s", strings.TrimPrefix(e.Message, "voice: ")))
		}
		return err
	}
	return c.Blob(http.StatusOK, audio.ContentType, audio.Data)
}
