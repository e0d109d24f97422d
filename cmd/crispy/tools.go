package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/rs/zerolog"

	"github.com/crispy-enigma/crispy/config"
	"github.com/crispy-enigma/crispy/gateway"
	"github.com/crispy-enigma/crispy/gateway/speech"
	"github.com/crispy-enigma/crispy/store"
	"github.com/crispy-enigma/crispy/tools"
)

// ledgerAuditor writes every tool execution to the LEDGER stream as a tool_executed event (the
// projector puts it in the tenant's audit table). Params are only their sha256 (docs/api.md "Tools").
// A failed append is logged, not returned: the tool already ran, and its answer must not be lost.
type ledgerAuditor struct {
	ledger *store.Ledger
	log    zerolog.Logger
}

func (a ledgerAuditor) AuditTool(ctx context.Context, rec tools.AuditRecord) {
	outcome := "ok"
	switch {
	case isDispatchCode(rec.ErrorCode):
		outcome = "error" // the tool produced no result: refused, crashed or timed out
	case !rec.Success:
		outcome = "failed" // it ran and reported a failure (200 success:false)
	}
	ev := store.Event{
		ID: store.NewEventID(), Kind: store.KindToolExecuted, TenantID: rec.TenantID, TraceID: rec.RequestID,
		UserID: rec.UserID, Time: rec.Time, LatencyMs: rec.DurationMs, Outcome: outcome, ErrorCode: rec.ErrorCode,
		Subject: rec.Tool,
		Detail:  map[string]any{"paramsSha256": rec.ParamsSHA256, "success": rec.Success},
	}
	// The request may be over (a client that left); the audit record must still be written.
	if err := a.ledger.Append(context.WithoutCancel(ctx), ev); err != nil {
		a.log.Warn().Err(err).Str("tenantId", rec.TenantID).Str("traceId", rec.RequestID).Str("tool", rec.Tool).
			Msg("tool audit: ledger append failed")
	}
}

// isDispatchCode says whether a code means the tool did not produce a result (refused or crashed).
func isDispatchCode(code string) bool {
	switch code {
	case tools.CodeToolNotFound, tools.CodeValidationFailed, tools.CodePermissionDenied,
		tools.CodeExecutionTimeout, tools.CodeExecutionError:
		return true
	}
	return false
}

// newToolRegistry builds the registry with every built-in whose dependencies d holds, each
// execution audited by audit.
func newToolRegistry(audit ledgerAuditor, d tools.Deps) (*tools.Registry, error) {
	reg := tools.NewRegistry(tools.WithAudit(audit.AuditTool))
	if err := tools.RegisterBuiltins(reg, d); err != nil {
		return nil, fmt.Errorf("register tools: %w", err)
	}
	return reg, nil
}

// newSpeechRouter serves POST /tts with espeak-ng; when an OpenAI-compatible server is configured, a
// tenant's aiModels.tts of "openai/<model>" is served by its /audio/speech.
func newSpeechRouter(log zerolog.Logger, env config.Env) (*speech.Router, *speech.Espeak) {
	local := speech.NewEspeak(speech.EspeakOptions{})
	if err := local.Check(); err != nil {
		log.Warn().Err(err).Msg("speech: POST /tts will answer tts_error until espeak-ng and the encoders are installed")
	}
	r := speech.NewRouter(local)
	if env.OpenAIBaseURL != "" {
		// The speech provider's base includes the version; the chat setting may or may not.
		base := strings.TrimRight(env.OpenAIBaseURL, "/")
		if !strings.HasSuffix(base, "/v1") {
			base += "/v1"
		}
		// The chat providers' client: http.DefaultClient keeps two idle connections per host, so
		// concurrent speech calls would each open a new TLS connection.
		r.Handle("openai/", speech.NewOpenAICompatible(base, env.OpenAIAPIKey, "", nil, gateway.NewHTTPClient()))
	}
	return r, local
}
