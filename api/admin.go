package api

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"net/http"
	"net/http/pprof"
	"strings"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/crispy-enigma/crispy/observe"
)

// AdminHandler serves the operator endpoints (docs/api.md "Operator endpoints"): Prometheus
// /metrics, /healthz (the process is alive), /readyz (every component is up) and pprof. They are
// not tenant-scoped and listen on their own address; token, when set, is required as a bearer token.
// operator, when given, serves /operator/ (console.OperatorHandler), which checks the token itself
// for its data, so that its page loads in a browser.
func AdminHandler(m *observe.Metrics, ready func(ctx context.Context) (map[string]string, bool), token string, operator ...http.Handler) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{Registry: m.Registry}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		states, up := ready(r.Context())
		w.Header().Set("Content-Type", "application/json")
		if !up {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"ready": up, "components": states})
	})
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	for _, op := range operator {
		mux.Handle("/operator/", op)
	}
	return requireToken(token, mux, func(path string) bool {
		return path == "/healthz" || strings.HasPrefix(path, "/operator/")
	})
}

// requireToken requires token as a bearer token on every path but the open ones; an empty token
// requires nothing.
func requireToken(token string, h http.Handler, open func(path string) bool) http.Handler {
	if token == "" {
		return h
	}
	want := []byte("Bearer " + token)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !open(r.URL.Path) && subtle.ConstantTimeCompare([]byte(r.Header.Get("Authorization")), want) != 1 {
			w.Header().Set("WWW-Authenticate", "Bearer")
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		h.ServeHTTP(w, r)
	})
}
