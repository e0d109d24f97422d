package api

import (
	"context"
	"strconv"
	"sync/atomic"
	"testing"

	"github.com/crispy-enigma/crispy/actors"
	"github.com/crispy-enigma/crispy/metering"
)

// leaseCounter passes rate-limit requests to the grains and counts the permits they leased.
type leaseCounter struct {
	*actors.Client
	asks, leased atomic.Int64
}

func (c *leaseCounter) AllowWithLease(ctx context.Context, tenantID, ceilingID string, cl actors.RateLimit, userID string, ul actors.RateLimit, lease actors.RateLease) (actors.RateDecision, actors.RateDecision, actors.Lease, error) {
	c.asks.Add(1)
	ceiling, user, granted, err := c.Client.AllowWithLease(ctx, tenantID, ceilingID, cl, userID, ul, lease)
	c.leased.Add(int64(granted.Permits))
	return ceiling, user, granted, err
}

// TestRateLeaseKeepsTheLimitExact: one client sending requests one after another is busy enough
// for leases; on one node it is still admitted exactly perMinute times, with the remaining count
// going down by one on every answer, while part of its requests (leases take at most an eighth of
// what is left, so here about a third) make no RateLimiter round trip.
func TestRateLeaseKeepsTheLimitExact(t *testing.T) {
	up := newFakeUpstream(t)
	counter := &leaseCounter{}
	ts := newTestServer(t, testServerOpts{models: routerFor(up),
		tenants: []string{chatTenant("busy", "fake/instant", `"rateLimit": {"perMinute": 1000, "burst": 1000}`, `"rateLimit": {"perMinute": 300, "burst": 300}`)},
		meter: func(_ testing.TB, ts *testServer, o *metering.Options) {
			counter.Client = ts.grains
			o.Limiter = counter
		}})
	const limit = 300
	hdr := "x-tenant-id: busy"
	for i := range limit {
		resp, _ := ts.jsonChat(t, `{"message":"hi","stream":false}`, hdr)
		if got, want := resp.Header.Get("x-ratelimit-remaining"), strconv.Itoa(limit-1-i); got != want {
			t.Fatalf("request %d: x-ratelimit-remaining %s, want %s", i+1, got, want)
		}
	}
	resp, b := ts.do(t, "POST", "/chat", `{"message":"hi","stream":false}`, hdr)
	wantError(t, resp, b, 429, CodeRateLimited)
	if counter.leased.Load() == 0 {
		t.Fatal("no permit was leased")
	}
	t.Logf("%d requests: %d asked the RateLimiter, %d permits leased", limit+1, counter.asks.Load(), counter.leased.Load())
}
