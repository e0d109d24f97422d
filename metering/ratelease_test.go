package metering

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/crispy-enigma/crispy/actors"
	"github.com/crispy-enigma/crispy/observe"
)

// leasingLimiter admits everything, grants what a request asks for up to grant permits, and
// records what each request asked for and gave back.
type leasingLimiter struct {
	mu        sync.Mutex
	grant     int
	remaining int // the user's Remaining it answers
	asked     []actors.RateLease
	until     int64 // the Lease.Until it answers: the number of the call
}

func (l *leasingLimiter) Allow(context.Context, string, string, actors.RateLimit) (actors.RateDecision, error) {
	return actors.RateDecision{Allowed: true}, nil
}

func (l *leasingLimiter) AllowWithCeiling(ctx context.Context, tenantID, ceilingID string, cl actors.RateLimit, userID string, ul actors.RateLimit) (actors.RateDecision, actors.RateDecision, error) {
	c, u, _, err := l.AllowWithLease(ctx, tenantID, ceilingID, cl, userID, ul, actors.RateLease{})
	return c, u, err
}

func (l *leasingLimiter) AllowWithLease(_ context.Context, _, _ string, _ actors.RateLimit, _ string, ul actors.RateLimit, lease actors.RateLease) (actors.RateDecision, actors.RateDecision, actors.Lease, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.asked = append(l.asked, lease)
	l.until++
	user := actors.RateDecision{Allowed: true, Limit: ul.PerMinute, Remaining: l.remaining}
	return actors.RateDecision{Allowed: true}, user, actors.Lease{Permits: min(lease.Want, l.grant), Until: l.until}, nil
}

func (l *leasingLimiter) calls() []actors.RateLease {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]actors.RateLease(nil), l.asked...)
}

// TestRateLeasesAdmitABusyUserFromALease: a user is decided by the grain until it made MinRate
// requests in one Life; then one request asks for what the last Life took, the next ones are
// admitted from the lease (headers from the grant plus what is left), and what a lease leaves
// unused when it ends, or when the limits change, goes back with the next request.
func TestRateLeasesAdmitABusyUserFromALease(t *testing.T) {
	clock := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	now := func() time.Time { return clock }
	inner := &leasingLimiter{grant: 5, remaining: 100}
	metrics := observe.NewMetrics()
	r := newRateLeases(inner, RateLeaseOptions{Life: 100 * time.Millisecond, MinRate: 4, MaxPermits: 64, MaxUsers: 16}, now, metrics)
	lim := actors.RateLimit{PerMinute: 1000}
	allow := func(ul actors.RateLimit) actors.RateDecision {
		t.Helper()
		c, u, err := r.AllowWithCeiling(t.Context(), "acme", "tenant", actors.RateLimit{PerMinute: 5000}, "user:a", ul)
		if err != nil || !c.Allowed || !u.Allowed {
			t.Fatalf("AllowWithCeiling = %+v, %+v, %v; want both allowed", c, u, err)
		}
		return u
	}

	for range 6 { // the first Life: six requests, each decided by the grain, none asking
		allow(lim)
	}
	clock = clock.Add(100 * time.Millisecond)
	// A new Life: asks for the last one's 6, is granted 5, which are this node's to hand out.
	if got := allow(lim).Remaining; got != 105 {
		t.Errorf("Remaining of the request granted a lease of 5 = %d, want the grain's 100 + 5", got)
	}
	var remaining []int
	for range 5 {
		remaining = append(remaining, allow(lim).Remaining)
	}
	if diff := cmp.Diff([]int{104, 103, 102, 101, 100}, remaining); diff != "" {
		t.Errorf("Remaining of the leased admissions (-want +got):\n%s", diff)
	}
	allow(lim) // the lease is used up: asks again, is granted 5
	allow(lim) // from the lease: 4 left
	clock = clock.Add(100 * time.Millisecond)
	allow(lim)                             // the lease ended with 4 left: they go back, and a new lease is asked for
	allow(lim)                             // from the new lease: 4 left
	allow(actors.RateLimit{PerMinute: 10}) // new limits: the 4 go back, and a lease is asked for under them

	want := []actors.RateLease{
		{}, {}, {}, {}, {}, {},
		{Want: 6, Life: 100 * time.Millisecond},
		{Want: 6, Life: 100 * time.Millisecond},
		{Want: 8, Life: 100 * time.Millisecond, Returned: 4, ReturnedAt: 8},
		{Want: 8, Life: 100 * time.Millisecond, Returned: 4, ReturnedAt: 9},
	}
	if diff := cmp.Diff(want, inner.calls()); diff != "" {
		t.Errorf("requests to the grain (-want +got):\n%s", diff)
	}
	// crispy_rate_limit_admitted_total: the busy user's admissions, from leases and by the limiter
	// (the first Life's six were not a busy user's yet).
	for source, want := range map[string]float64{"lease": 7, "limiter": 4} {
		if got := testutil.ToFloat64(metrics.RateAdmitted.WithLabelValues("acme", source)); got != want {
			t.Errorf("admitted by %s = %v, want %v", source, got, want)
		}
	}
}

// TestRateLeasesKeepAtMostMaxUsers: past MaxUsers, a new user is decided by the grain alone; users
// idle for two Lifes make room at the next sweep.
func TestRateLeasesKeepAtMostMaxUsers(t *testing.T) {
	clock := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	inner := &leasingLimiter{grant: 5}
	r := newRateLeases(inner, RateLeaseOptions{Life: 100 * time.Millisecond, MinRate: 1, MaxPermits: 64, MaxUsers: 2}, func() time.Time { return clock }, observe.NewMetrics())
	for _, u := range []string{"user:a", "user:b", "user:c", "user:d"} {
		if _, _, err := r.AllowWithCeiling(t.Context(), "acme", "tenant", actors.RateLimit{}, u, actors.RateLimit{}); err != nil {
			t.Fatal(err)
		}
	}
	if len(r.users) != 2 {
		t.Fatalf("%d users kept, want MaxUsers = 2", len(r.users))
	}
	clock = clock.Add(200 * time.Millisecond)
	if _, _, err := r.AllowWithCeiling(t.Context(), "acme", "tenant", actors.RateLimit{}, "user:e", actors.RateLimit{}); err != nil {
		t.Fatal(err)
	}
	if _, ok := r.users[leaseUser{"acme", "user:e"}]; !ok || len(r.users) != 1 {
		t.Errorf("after two idle Lifes: users %v, want user:e alone", r.users)
	}
}

// TestRateLeasesConcurrentUse: requests of one user from many goroutines never admit from a lease
// more permits than it was granted (run with -race).
func TestRateLeasesConcurrentUse(t *testing.T) {
	inner := &leasingLimiter{grant: 50}
	r := newRateLeases(inner, RateLeaseOptions{Life: time.Hour, MinRate: 1, MaxPermits: 50, MaxUsers: 16}, time.Now, observe.NewMetrics())
	// Make the user busy for the first Life and start the next, which asks for a lease.
	r.users[leaseUser{"acme", "user:a"}] = &userLease{period: time.Now().Add(-time.Hour), count: 50}
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 100 {
				if _, _, err := r.AllowWithCeiling(context.Background(), "acme", "tenant", actors.RateLimit{}, "user:a", actors.RateLimit{}); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	calls := inner.calls()
	granted := 0
	for _, c := range calls {
		granted += min(c.Want, inner.grant)
	}
	// Every request was admitted by the grain or from a lease: 800 = calls + permits used, and no
	// more permits were used than granted.
	if used := 800 - len(calls); used > granted || used < 0 {
		t.Errorf("%d requests admitted from leases, %d permits granted", used, granted)
	}
}
