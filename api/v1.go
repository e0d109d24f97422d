package api

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/crispy-enigma/crispy/actors"
	"github.com/crispy-enigma/crispy/config"
	"github.com/crispy-enigma/crispy/gateway"
	"github.com/crispy-enigma/crispy/gateway/speech"
	"github.com/crispy-enigma/crispy/wire/openai"
)

// OpenAIModels is what the OpenAI-compatible API asks of the model router (gateway.Router) besides
// chat calls: which models exist, and the embedding model of a name.
type OpenAIModels interface {
	Describe(model string) (gateway.ModelInfo, error)
	ChatModelIDs() []string
	EmbeddingModelIDs() []string
	EmbedderFor(model string, meta gateway.RequestMeta) (gateway.EmbeddingModel, error)
}

// ResponseSessions keeps the Responses API's conversations in chat sessions (the ChatSession
// grains; actors.Client).
type ResponseSessions interface {
	History(ctx context.Context, tenantID, sessionID string, r actors.Retention, limit int, before time.Time) ([]actors.Message, error)
	AppendAfterResponse(ctx context.Context, tenantID, sessionID string, msgs []actors.Message, r actors.Retention, previousResponseID string) error
}

var (
	_ OpenAIModels     = (*gateway.Router)(nil)
	_ ResponseSessions = (*actors.Client)(nil)
)

// OpenAIDeps are the OpenAI-compatible API's dependencies (/v1). Chat completions and responses
// also need Deps.Chat, whose metered Router they call like /chat; speech needs Deps.Speech.
type OpenAIDeps struct {
	Models   OpenAIModels
	Sessions ResponseSessions // nil: /v1/responses is not registered
}

// v1Routes registers the OpenAI-compatible API under /v1 and, for clients whose base URL lacks
// /v1, at the root too (POST /chat/completions must not fall into DELETE /chat/:sessionId's 405).
// The middleware is per route: a group's would add catch-all routes that turn 405s into 404s.
func (s *Server) v1Routes(e *echo.Echo) {
	for _, prefix := range []string{"/v1", ""} {
		e.GET(prefix+"/models", s.listModels, v1Headers)
		e.GET(prefix+"/models/*", s.getModel, v1Headers) // model IDs hold slashes: local/extractive, @cf/meta/…
		e.POST(prefix+"/embeddings", s.postEmbeddings, v1Headers)
		if s.chat != nil {
			e.POST(prefix+"/chat/completions", s.postChatCompletions, v1Headers)
			if s.openai.Sessions != nil {
				e.POST(prefix+"/responses", s.postResponse, v1Headers)
				e.GET(prefix+"/responses/:id", s.getResponse, v1Headers)
			}
		}
		if s.speech != nil {
			e.POST(prefix+"/audio/speech", s.postSpeech, v1Headers)
		}
	}
}

// v1Headers sets x-request-id (the trace ID), which the SDKs expose as the request ID.
func v1Headers(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		setHeader(c.Response().Header(), hdrRequestID, traceID(c))
		return next(c)
	}
}

// ttsModelAliases are OpenAI's speech model names; they name the tenant's speech engine, whose
// voices OpenAI's voice names map onto.
var ttsModelAliases = []string{"gpt-4o-mini-tts", "tts-1", "tts-1-hd"}

// modelOwner says who serves model for this tenant, or ok=false when the tenant may not use it:
// no route serves it (404 model_not_found), or the tenant's allow-list excludes it. The tenant's
// own embedding and speech models are always usable; the allow-list governs chat models.
func (s *Server) modelOwner(t *config.TenantConfig, model string) (owner string, ok bool) {
	if model == "" {
		return "", false
	}
	if t.Flag("tts_enabled") && s.speech != nil && (slices.Contains(ttsModelAliases, model) || model == cmpOr(t.AIModels.TTS, speech.LocalModel)) {
		return "speech", true
	}
	allowed := !t.Flag("modelAllowList") || slices.Contains(t.AllowedModels, model)
	if info, err := s.openai.Models.Describe(model); err == nil {
		return info.Provider, allowed
	}
	if model == t.AIModels.Embeddings {
		allowed = true
	}
	if _, err := s.openai.Models.EmbedderFor(model, metaOf(t, "", "")); err == nil {
		if model == gateway.HashEmbedID {
			return gateway.LocalProviderName, allowed
		}
		return "embeddings", allowed
	}
	return "", false
}

// tenantModels lists exactly the models this tenant may use that have a name: under the
// allow-list, the listed models that are served; otherwise every nameable model of the router and
// the tenant's configured ones. Models served only by a prefix route are usable without being
// listed (GET /v1/models/{id} answers for them).
func (s *Server) tenantModels(t *config.TenantConfig) []openai.Model {
	var candidates []string
	if t.Flag("modelAllowList") {
		candidates = slices.Clone(t.AllowedModels)
	} else {
		candidates = append(s.openai.Models.ChatModelIDs(), s.openai.Models.EmbeddingModelIDs()...)
		candidates = append(candidates, t.AIModels.Chat, t.AIModels.FallbackChat, s.env.ModelID, s.env.FallbackModelID)
	}
	candidates = append(candidates, t.AIModels.Embeddings)
	if t.Flag("tts_enabled") && s.speech != nil {
		candidates = append(candidates, ttsModelAliases...)
	}
	slices.Sort(candidates)
	candidates = slices.Compact(candidates)
	created := s.started.Unix()
	out := make([]openai.Model, 0, len(candidates))
	for _, id := range candidates {
		if owner, ok := s.modelOwner(t, id); ok {
			out = append(out, openai.Model{ID: id, Object: openai.ObjectModel, Created: created, OwnedBy: owner})
		}
	}
	return out
}

func (s *Server) listModels(c echo.Context) error {
	return c.JSON(http.StatusOK, openai.ModelList{Object: openai.ObjectList, Data: s.tenantModels(tenantOf(c))})
}

func (s *Server) getModel(c echo.Context) error {
	// A client may escape the ID's slashes (local%2Fextractive) or not (local/extractive).
	id, err := url.PathUnescape(c.Param("*"))
	if err != nil {
		return errModelNotFound(c.Param("*"))
	}
	owner, ok := s.modelOwner(tenantOf(c), id)
	if !ok {
		return errModelNotFound(id)
	}
	return c.JSON(http.StatusOK, openai.Model{ID: id, Object: openai.ObjectModel, Created: s.started.Unix(), OwnedBy: owner})
}

func errModelNotFound(model string) *Error {
	return NewError(http.StatusNotFound, CodeModelNotFound,
		"The model '"+truncateForMessage(model)+"' does not exist or you do not have access to it.")
}

// metaOf is the gateway metadata of a tenant's model call.
func metaOf(t *config.TenantConfig, trace, route string) gateway.RequestMeta {
	return gateway.RequestMeta{TenantID: t.TenantID, AccountID: t.AccountID, GatewayID: t.AIGatewayID, Tenant: t,
		TraceID: trace, Route: route}
}

// v1Decode reads the JSON body into v: decodeJSON's size, syntax and type checks, then the wire
// types' own decoding, whose errors (a content part that is not text, a bad `stop`) are 400s
// that name the parameter when the wire type says it.
func v1Decode(c echo.Context, v any) error {
	var raw json.RawMessage
	if err := decodeJSON(c, &raw); err != nil {
		return err
	}
	err := json.Unmarshal(raw, v)
	var (
		pe *openai.ParamError
		te *json.UnmarshalTypeError
	)
	switch {
	case err == nil:
		return nil
	case errors.As(err, &pe):
		return paramError(pe)
	case errors.As(err, &te) && te.Field != "":
		return paramError(openai.Invalid(te.Field, "must be %s", jsonKind(te.Type.Kind().String())))
	case errors.As(err, &te):
		return errInvalidRequest("the request body must be a JSON object")
	}
	return paramError(openai.Invalid("", "%s", err.Error()))
}
