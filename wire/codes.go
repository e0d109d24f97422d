package wire

// Error codes of the envelope's error.code: stable, documented in docs/api.md, and the only codes
// a client ever sees besides the tools' own (TOOL_NOT_FOUND, VALIDATION_FAILED, …).
const (
	CodeNotFound         = "not_found"
	CodeMethodNotAllowed = "method_not_allowed"
	CodeInternal         = "internal_error"
	CodeTenantRequired   = "tenant_required"
	CodeTenantUnknown    = "tenant_unknown"
	CodeUnauthorized     = "unauthorized"
	CodeForbidden        = "forbidden"
	CodePayloadTooLarge  = "payload_too_large"
	CodeInvalidJSON      = "invalid_json"
	CodeInvalidRequest   = "invalid_request"
	CodeRateLimited      = "rate_limited"
	CodeBudgetExceeded   = "budget_exceeded"
	CodeModelNotAllowed  = "model_not_allowed"
	CodeModelNotFound    = "model_not_found" // no route serves the model asked for
	CodeAIError          = "ai_error"
	CodeToolError        = "tool_error"
	CodeTTSNotEnabled    = "tts_not_enabled"
	CodeTTSError         = "tts_error"
	// CodeTTSUnavailable: this node has no speech engine (espeak-ng or an encoder is missing).
	CodeTTSUnavailable = "tts_unavailable"
	CodeUnavailable    = "unavailable"
	// CodeQuotaExceeded: storing the document would pass the tenant's knowledge-base quota.
	CodeQuotaExceeded = "quota_exceeded"
)
