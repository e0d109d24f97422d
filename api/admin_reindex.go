package api

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"

	"github.com/google/uuid"

	"github.com/crispy-enigma/crispy/config"
	"github.com/crispy-enigma/crispy/rag"
	"github.com/crispy-enigma/crispy/wire"
)

// Reindexer is what the operator's re-embedding routes ask of the retrieval service (rag.Service).
type Reindexer interface {
	StartReindex(ctx context.Context, tenantID string) (wire.ReindexAccepted, error)
	JobStatus(ctx context.Context, tenant, jobID string) (wire.JobStatus, error)
}

var _ Reindexer = (*rag.Service)(nil)

// ReindexHandler serves the operator's re-embedding routes (docs/api.md "Operator endpoints"), for
// the admin listener beside AdminHandler, behind the same token:
//
//	POST /admin/reindex?tenant=T   202: re-embed T's documents with its embedding model (a job)
//	GET  /admin/jobs/{tenant}/{id} 200: the job's progress (as GET /ingest/jobs/:id shows it)
//
// Answers are envelopes, as on the tenant API.
func ReindexHandler(r Reindexer, token string) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /admin/reindex", func(w http.ResponseWriter, req *http.Request) {
		tenant := req.URL.Query().Get("tenant")
		if !config.ValidTenantID(tenant) {
			writeAdmin(w, http.StatusBadRequest, nil, &wire.ErrorBody{Code: wire.CodeInvalidRequest, Message: "tenant: a tenant ID is required (?tenant=T)"})
			return
		}
		acc, err := r.StartReindex(req.Context(), tenant)
		switch {
		case errors.Is(err, rag.ErrInvalidTenant):
			writeAdmin(w, http.StatusNotFound, nil, &wire.ErrorBody{Code: wire.CodeTenantUnknown, Message: "no tenant " + tenant + " is deployed"})
		case err != nil:
			writeAdmin(w, http.StatusInternalServerError, nil, &wire.ErrorBody{Code: wire.CodeInternal, Message: "re-embedding not started: " + err.Error()})
		default:
			writeAdmin(w, http.StatusAccepted, acc, nil)
		}
	})
	mux.HandleFunc("GET /admin/jobs/{tenant}/{id}", func(w http.ResponseWriter, req *http.Request) {
		st, err := r.JobStatus(req.Context(), req.PathValue("tenant"), req.PathValue("id"))
		switch {
		case errors.Is(err, rag.ErrJobNotFound):
			writeAdmin(w, http.StatusNotFound, nil, &wire.ErrorBody{Code: wire.CodeNotFound, Message: "no such job"})
		case err != nil:
			writeAdmin(w, http.StatusInternalServerError, nil, &wire.ErrorBody{Code: wire.CodeInternal, Message: "internal error"})
		default:
			writeAdmin(w, http.StatusOK, st, nil)
		}
	})
	return requireToken(token, mux, func(string) bool { return false })
}

// writeAdmin writes an envelope on the operator listener, which has no request trace IDs of its
// own: each answer gets a fresh one, in the body and the x-trace-id header as on the tenant API.
func writeAdmin(w http.ResponseWriter, status int, data any, e *wire.ErrorBody) {
	trace := uuid.NewString()
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("x-trace-id", trace)
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(wire.Envelope{OK: e == nil, Data: data, Error: e, TraceID: trace})
}
