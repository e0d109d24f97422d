package openai

import "strings"

// SpeechRequest is the body of POST /v1/audio/speech.
type SpeechRequest struct {
	Model          string   `json:"model"`
	Input          *string  `json:"input"`
	Voice          string   `json:"voice"`
	ResponseFormat string   `json:"response_format,omitempty"`
	Speed          *float64 `json:"speed,omitempty"`
	Instructions   string   `json:"instructions,omitempty"`
}

// espeakVoices maps OpenAI's voice names onto espeak-ng voices with a variant, chosen so that each
// name keeps its character (the female voices get female variants, fable stays British) and
// different names sound different.
var espeakVoices = map[string]string{
	"alloy":   "en-us",
	"ash":     "en-us+m3",
	"ballad":  "en-gb+m2",
	"cedar":   "en-us+m6",
	"coral":   "en-us+f2",
	"echo":    "en-us+m1",
	"fable":   "en-gb",
	"marin":   "en-us+f5",
	"nova":    "en-us+f3",
	"onyx":    "en-us+m7",
	"sage":    "en-gb+f4",
	"shimmer": "en-us+f4",
	"verse":   "en-us+m5",
}

// EspeakVoice maps an OpenAI voice name ("alloy", case-insensitive) to an espeak-ng voice. A name
// that is not OpenAI's is returned unchanged, so a client may also name an espeak-ng voice ("en-gb").
func EspeakVoice(voice string) string {
	if v, ok := espeakVoices[strings.ToLower(voice)]; ok {
		return v
	}
	return voice
}

// OpenAIVoices lists the voice names EspeakVoice maps, sorted.
func OpenAIVoices() []string {
	return []string{"alloy", "ash", "ballad", "cedar", "coral", "echo", "fable", "marin", "nova", "onyx", "sage", "shimmer", "verse"}
}

// SpeechFormat maps OpenAI's response_format onto the speech engine's formats (mp3, wav, opus):
// "" is mp3, as OpenAI's default. ok is false for OpenAI formats the engine cannot produce (aac,
// flac, pcm) and for unknown names.
func SpeechFormat(format string) (engine string, ok bool) {
	switch format {
	case "", "mp3":
		return "mp3", true
	case "wav":
		return "wav", true
	case "opus":
		return "opus", true
	}
	return "", false
}
