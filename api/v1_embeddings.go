package api

import (
	"net/http"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/crispy-enigma/crispy/gateway"
	"github.com/crispy-enigma/crispy/wire/openai"
)

// maxEmbeddingInputs is OpenAI's limit on inputs per request.
const maxEmbeddingInputs = 2048

// postEmbeddings embeds with the tenant's embedding model (aiModels.embeddings, the built-in
// local/hash-embed included) or another embedding model the tenant may use, metered like a chat
// call: rate limit, budget reserve and commit, the model_call event and metrics
// (metering.Meter.BeforeEmbed). No model here changes its vector length, so `dimensions` is refused
// unless it is the model's own.
func (s *Server) postEmbeddings(c echo.Context) error {
	var req openai.EmbeddingRequest
	if err := v1Decode(c, &req); err != nil {
		return err
	}
	switch {
	case req.Input.Tokens:
		return paramError(openai.Unsupported("input", "token arrays are not supported: send strings"))
	case len(req.Input.Texts) == 0:
		return paramError(openai.Missing("input"))
	case len(req.Input.Texts) > maxEmbeddingInputs:
		return paramError(openai.Invalid("input", "must hold at most %d inputs", maxEmbeddingInputs))
	case req.EncodingFormat != "" && req.EncodingFormat != openai.EncodingFloat && req.EncodingFormat != openai.EncodingBase64:
		return paramError(openai.Invalid("encoding_format", "must be float or base64"))
	case req.Dimensions != nil && *req.Dimensions < 1:
		return paramError(openai.Invalid("dimensions", "must be a positive integer"))
	case len(req.User) > maxUserIDLen:
		return paramError(openai.Invalid("user", "must be at most %d characters", maxUserIDLen))
	}
	for i, text := range req.Input.Texts {
		if strings.TrimSpace(text) == "" {
			return paramError(openai.Invalid("input", "input %d is empty", i))
		}
	}
	t := tenantOf(c)
	model := cmpOr(req.Model, t.AIModels.Embeddings)
	if _, ok := s.modelOwner(t, model); !ok && model == t.AIModels.Embeddings {
		// The tenant's configured model is not served on this node (an @cf/ model without a
		// Cloudflare token): its documents are embedded with the built-in model, and so is this.
		model = gateway.DefaultEmbeddingModel
	} else if !ok {
		return errModelNotFound(model)
	}
	meta := metaOf(t, traceID(c), "/v1/embeddings")
	meta.UserID = req.User
	embedder, err := s.openai.Models.EmbedderFor(model, meta)
	if err != nil {
		return errModelNotFound(model)
	}
	if req.Dimensions != nil && embedder.Dimension() != 0 && *req.Dimensions != embedder.Dimension() {
		return paramError(openai.Unsupported("dimensions", "model %s has %d dimensions and cannot change them", truncateForMessage(model), embedder.Dimension()))
	}
	if err := s.checkRateLimit(c, req.User); err != nil {
		return err
	}
	// An upstream model's embedder comes metered from the router (budget, ledger, metrics: the
	// gateway's EmbeddingMeter); the built-in models cost nothing and are not charged.
	vecs, err := embedder.Embed(c.Request().Context(), req.Input.Texts)
	if err != nil {
		return s.modelCallError(c.Response().Header(), model, err)
	}
	tokens := gateway.EstimateTokens(req.Input.Texts...)
	if req.Dimensions != nil && len(vecs) > 0 && len(vecs[0]) != *req.Dimensions {
		return paramError(openai.Unsupported("dimensions", "model %s has %d dimensions and cannot change them", truncateForMessage(model), len(vecs[0])))
	}
	data := make([]openai.Embedding, len(vecs))
	for i, v := range vecs {
		data[i] = openai.Embedding{Object: openai.ObjectEmbedding, Index: i, Embedding: openai.EncodeVector(v, req.EncodingFormat)}
	}
	c.Response().Header().Set("x-model-id", model)
	return c.JSON(http.StatusOK, openai.EmbeddingList{Object: openai.ObjectList, Data: data, Model: model,
		Usage: openai.EmbeddingUsage{PromptTokens: tokens, TotalTokens: tokens}})
}
