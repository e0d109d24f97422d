package metering

import (
	"context"
	"fmt"
	"sync"
	"testing"

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
		d, err := m.AllowTenant(context.Background(), cfg, Caller{})
		if err != nil {
			t.Fatal(err)
		}
		if !d.Allowed {
			continue
		}
		if d, err = m.Allow(context.Background(), cfg, fmt.Sprintf("user:u%d", i), Caller{}); err != nil {
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
