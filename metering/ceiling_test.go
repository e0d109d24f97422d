package metering

import (
	"context"
	"fmt"
	"sync"
	"testing"

	dto "github.com/prometheus/client_model/go"

	"github.com/crispy-enigma/crispy/actors"
	"github.com/crispy-enigma/crispy/config"
)

// countingLimiter admits PerMinute requests per identity (a window that never slides: enough to
// see which identity and limits a request was checked against).
type countingLimiter struct {
	mu   sync.Mutex
	seen map[string]int
}

func (l *countingLimiter) Allow(_ context.Context, tenantID, userID string, lim actors.RateLimit) (actors.RateDecision, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.seen[tenantID+":"+userID]++
	n := l.seen[tenantID+":"+userID]
	return actors.RateDecision{Allowed: n <= lim.PerMinute, Limit: lim.PerMinute, Remaining: max(0, lim.PerMinute-n)}, nil
}

// TestAllowTenantCeilingHoldsAgainstVaryingUserIDs replays the attack: 30 requests, each with a
// fresh userId, all passed a 5/minute tenant. With the ceiling asked first, no more than
// tenantPerMinute pass, and a denied request makes no per-user limiter.
func TestAllowTenantCeilingHoldsAgainstVaryingUserIDs(t *testing.T) {
	lim := &countingLimiter{seen: map[string]int{}}
	m := New(Options{Limiter: lim})
	cfg := &config.TenantConfig{TenantID: "acme", RateLimit: config.RateLimit{PerMinute: 5, Burst: 5, WindowSec: 60, BurstWindowSec: 10, TenantPerMinute: 10, TenantBurst: 10}}
	passed := 0
	for i := range 30 {
		d, err := m.allowTenant(context.Background(), cfg, Caller{})
		if err != nil {
			t.Fatal(err)
		}
		if !d.Allowed {
			continue
		}
		if d, err = m.allow(context.Background(), cfg, fmt.Sprintf("user:u%d", i), Caller{}); err != nil {
			t.Fatal(err)
		}
		if d.Allowed {
			passed++
		}
	}
	if passed != 10 {
		t.Fatalf("%d of 30 requests with varying user IDs passed, want the ceiling's 10", passed)
	}
	if users := len(lim.seen) - 1; users != 10 {
		t.Fatalf("%d per-user limiters made, want 10", users)
	}
}

// ceilingLimiter is countingLimiter answering both decisions in one call, as actors.Client does.
type ceilingLimiter struct {
	countingLimiter
	calls int
}

func (l *ceilingLimiter) AllowWithCeiling(ctx context.Context, tenantID, ceilingID string, ceilingLim actors.RateLimit, userID string, userLim actors.RateLimit) (actors.RateDecision, actors.RateDecision, error) {
	l.calls++
	c, _ := l.Allow(ctx, tenantID, ceilingID, ceilingLim)
	if !c.Allowed {
		return c, actors.RateDecision{}, nil
	}
	u, _ := l.Allow(ctx, tenantID, userID, userLim)
	return c, u, nil
}

// TestAllowRequestDecidesAsTheCeilingThenTheUser: AllowRequest answers what allowTenant then allow
// did, one round trip or two: the ceiling's decision when it denies (and no per-user limiter),
// else the user's; each denial is counted once.
func TestAllowRequestDecidesAsTheCeilingThenTheUser(t *testing.T) {
	cfg := &config.TenantConfig{TenantID: "acme", RateLimit: config.RateLimit{PerMinute: 2, Burst: 2, TenantPerMinute: 3, TenantBurst: 3}}
	type step struct {
		identity      string
		allowed       bool
		ceilingDenied bool
		limit         int
	}
	steps := []step{
		{"user:a", true, false, 2},
		{"user:a", true, false, 2},
		{"user:a", false, false, 2}, // the user's limit
		{"user:b", false, true, 3},  // the ceiling's: 3 admitted by it already
	}
	for _, tc := range []struct {
		name string
		lim  RateLimiter
	}{
		{"two round trips", &countingLimiter{seen: map[string]int{}}},
		{"one round trip", &ceilingLimiter{countingLimiter: countingLimiter{seen: map[string]int{}}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := New(Options{Limiter: tc.lim})
			for i, s := range steps {
				d, ceilingDenied, err := m.AllowRequest(context.Background(), cfg, s.identity, Caller{})
				if err != nil {
					t.Fatal(err)
				}
				if got := (step{s.identity, d.Allowed, ceilingDenied, d.Limit}); got != s {
					t.Errorf("request %d: %+v, want %+v", i, got, s)
				}
			}
			if cl, ok := tc.lim.(*ceilingLimiter); ok && cl.calls != len(steps) {
				t.Errorf("%d AllowWithCeiling calls, want one per request (%d)", cl.calls, len(steps))
			}
			var seen map[string]int
			switch l := tc.lim.(type) {
			case *countingLimiter:
				seen = l.seen
			case *ceilingLimiter:
				seen = l.seen
			}
			if _, ok := seen["acme:user:b"]; ok {
				t.Error("a request the ceiling denied made a per-user limiter")
			}
			var counted dto.Metric
			if err := m.Metrics().RateLimited.WithLabelValues("acme").Write(&counted); err != nil {
				t.Fatal(err)
			}
			if got := counted.GetCounter().GetValue(); got != 2 {
				t.Errorf("rate_limited counted %v, want 2", got)
			}
		})
	}
}
