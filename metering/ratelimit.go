package metering

import (
	"context"
	"fmt"

	"github.com/crispy-enigma/crispy/actors"
	"github.com/crispy-enigma/crispy/config"
	"github.com/crispy-enigma/crispy/store"
)

// Caller says who a rate-limited request is from, for the audit of a rejection.
type Caller struct {
	TraceID   string
	SessionID string
	Route     string
	UserID    string // as the request named it; "" when it named none
}

// allow asks the tenant's RateLimiter grain whether identity (the rate-limit identity, e.g.
// "user:<id>") may make one more request. A denial is counted and recorded for the tenant's audit;
// the caller answers it (429 with the decision's headers). Without a limiter every request is
// allowed.
func (m *Meter) allow(ctx context.Context, t *config.TenantConfig, identity string, who Caller) (actors.RateDecision, error) {
	if m.limiter == nil {
		return actors.RateDecision{Allowed: true, Remaining: t.RateLimit.PerMinute}, nil
	}
	rl := t.RateLimit
	d, err := m.limiter.Allow(ctx, t.TenantID, identity, actors.RateLimit{
		PerMinute: rl.PerMinute, Burst: rl.Burst, WindowSec: rl.WindowSec, BurstWindowSec: rl.BurstWindowSec,
	})
	if err != nil {
		return d, fmt.Errorf("rate limiter: %w", err)
	}
	if !d.Allowed {
		m.rateLimited(ctx, t, who)
	}
	return d, nil
}

// rateLimited counts a denied request and records it for the tenant's audit.
func (m *Meter) rateLimited(ctx context.Context, t *config.TenantConfig, who Caller) {
	m.metrics.RateLimited.WithLabelValues(t.TenantID).Inc()
	m.appendEvent(ctx, store.Event{
		Kind: store.KindRateLimited, TenantID: t.TenantID, TraceID: who.TraceID, SessionID: who.SessionID,
		UserID: who.UserID, Subject: who.Route, Outcome: "rejected",
	})
}
