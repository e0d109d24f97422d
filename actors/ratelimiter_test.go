package actors

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/rs/zerolog"

	"github.com/crispy-enigma/crispy/actors/pb"
)

// TestRateLimiterCeilingKeepsUserWindows: a ceiling asked with a user decides its own window first
// and, only when it admits, the user's, which it keeps beside its own: each user has its own limit,
// a request the ceiling denies makes no user window, and windows no admitted request is relevant to
// any more are dropped.
func TestRateLimiterCeilingKeepsUserWindows(t *testing.T) {
	clock := newFakeClock()
	r := newRateLimiter(Deps{Now: clock.Now, Logger: zerolog.Nop()}.withDefaults())
	ask := func(user string) *pb.RateLimitRequest {
		req := pbRateLimit(3, 3, 60, 10) // the ceiling: 3 per minute
		req.User, req.UserLimits = user, pbRateLimit(2, 2, 60, 10)
		return req
	}
	type want struct {
		ceiling, user bool // allowed
		userRemaining int32
		noUser        bool // no user decision in the reply
	}
	for i, tc := range []struct {
		user string
		want want
	}{
		{"user:a", want{ceiling: true, user: true, userRemaining: 1}},
		{"user:a", want{ceiling: true, user: true, userRemaining: 0}},
		{"user:a", want{ceiling: true, user: false}}, // the user's limit; the ceiling counted it
		{"user:b", want{noUser: true}},               // the ceiling's limit: no window for b
	} {
		res := r.decide(ask(tc.user))
		got := want{ceiling: res.GetAllowed(), user: res.GetUser().GetAllowed(), userRemaining: res.GetUser().GetRemaining(), noUser: res.GetUser() == nil}
		if diff := cmp.Diff(tc.want, got, cmp.AllowUnexported(want{})); diff != "" {
			t.Errorf("request %d (%s) (-want +got):\n%s", i, tc.user, diff)
		}
	}
	if _, ok := r.users["user:b"]; ok || len(r.users) != 1 {
		t.Errorf("user windows %v, want user:a only", r.users)
	}
	// A request without a user is the ceiling's own window only, as before.
	if res := r.decide(pbRateLimit(10, 10, 60, 10)); !res.GetAllowed() || res.GetUser() != nil {
		t.Errorf("ceiling-only request: %v, want allowed without a user decision", res)
	}

	clock.Advance(61 * time.Second)
	r.sweep(r.now())
	if len(r.users) != 0 {
		t.Errorf("after a whole window: %d user windows kept, want 0", len(r.users))
	}
	if res := r.decide(ask("user:a")); !res.GetUser().GetAllowed() || res.GetUser().GetRemaining() != 1 {
		t.Errorf("after a whole window: %v, want user:a admitted with 1 remaining", res)
	}
}

// TestRateLimiterSweepsUserWindowsAsItGoes: many users passing through a ceiling leave at most
// about twice the live windows behind, without waiting for the idle timeout.
func TestRateLimiterSweepsUserWindowsAsItGoes(t *testing.T) {
	clock := newFakeClock()
	r := newRateLimiter(Deps{Now: clock.Now, Logger: zerolog.Nop()}.withDefaults())
	for i := range 10_000 {
		req := pbRateLimit(1_000_000, 0, 1, 1)
		req.User, req.UserLimits = "user:"+string(rune('a'+i%26))+time.Duration(i).String(), pbRateLimit(5, 0, 1, 1)
		if res := r.decide(req); !res.GetUser().GetAllowed() {
			t.Fatalf("request %d denied: %v", i, res)
		}
		clock.Advance(10 * time.Millisecond) // 100 users per one-second window
	}
	if n := len(r.users); n > 2*100+64 {
		t.Errorf("%d user windows kept, want about the 100 of the last window", n)
	}
}

// leaseRequest is a ceiling request for user:a (ceiling 100,000 a minute) asking for want permits
// for 100 ms and giving back returned permits recorded at at.
func leaseRequest(user *pb.RateLimitRequest, want, returned int32, at int64) *pb.RateLimitRequest {
	req := pbRateLimit(100000, 0, 60, 10)
	req.User, req.UserLimits = "user:a", user
	req.Lease, req.LeaseMs = want, 100
	req.Returned, req.ReturnedAtMs = returned, at
	return req
}

// TestRateLimiterLeaseGrant: a lease is at most an eighth of the room both windows have after the
// request, is left out of both remaining counts, and what comes back is room again.
func TestRateLimiterLeaseGrant(t *testing.T) {
	clock := newFakeClock()
	r := newRateLimiter(Deps{Now: clock.Now, Logger: zerolog.Nop()}.withDefaults())
	user := pbRateLimit(100, 0, 60, 10)

	res := r.decide(leaseRequest(user, 50, 0, 0))
	// 99 left after the request: an eighth is 12.
	if res.GetLeased() != 12 || res.GetUser().GetRemaining() != 87 || res.GetRemaining() != 99999-12 {
		t.Fatalf("first lease: leased %d, user remaining %d, ceiling remaining %d; want 12, 87, 99987",
			res.GetLeased(), res.GetUser().GetRemaining(), res.GetRemaining())
	}
	if want := clock.Now().UnixMilli() + 100; res.GetLeaseUntilMs() != want {
		t.Errorf("lease until %d, want now + 100 ms = %d", res.GetLeaseUntilMs(), want)
	}
	at := res.GetLeaseUntilMs()

	clock.Advance(10 * time.Millisecond)
	res = r.decide(leaseRequest(user, 5, 0, 0)) // asks for fewer than an eighth: gets what it asked
	if res.GetLeased() != 5 || res.GetUser().GetRemaining() != 81 {
		t.Fatalf("second lease: leased %d, user remaining %d; want 5, 81", res.GetLeased(), res.GetUser().GetRemaining())
	}

	clock.Advance(200 * time.Millisecond)
	res = r.decide(leaseRequest(user, 0, 12, at)) // the first lease's 12 come back unused
	if res.GetLeased() != 0 || res.GetUser().GetRemaining() != 92 {
		t.Errorf("after giving back 12: leased %d, user remaining %d; want 0, 92", res.GetLeased(), res.GetUser().GetRemaining())
	}

	// A denied request gets no lease, and near the limit the room's eighth is nothing.
	small := pbRateLimit(8, 0, 60, 10)
	clock.Advance(time.Minute)
	for i := range 8 {
		res = r.decide(leaseRequest(small, 50, 0, 0))
		if !res.GetUser().GetAllowed() || res.GetLeased() != 0 {
			t.Fatalf("request %d under a limit of 8: allowed %v, leased %d; want allowed, no lease", i, res.GetUser().GetAllowed(), res.GetLeased())
		}
	}
	if res = r.decide(leaseRequest(small, 50, 0, 0)); res.GetUser().GetAllowed() || res.GetLeased() != 0 {
		t.Errorf("9th request under a limit of 8: allowed %v, leased %d; want denied, no lease", res.GetUser().GetAllowed(), res.GetLeased())
	}
}

// TestRateLimiterLeasesNeverExceedALimit drives the grain as a node admitting from leases does,
// a request every 5 ms for 10 s and then four, for three minutes, and checks what the user was actually admitted
// against its limits at every instant: never more than the limit in any window or burst window,
// and most of the limit used (leases waste little of it).
func TestRateLimiterLeasesNeverExceedALimit(t *testing.T) {
	for _, tc := range []struct {
		name                string
		perMinute, burst    int32
		wantLeased, wantMin int
	}{
		{name: "tight", perMinute: 120, burst: 30, wantMin: 3 * 120 * 9 / 10},
		{name: "at the limit", perMinute: 6000, burst: 1500, wantLeased: 1000, wantMin: 3 * 6000 * 9 / 10},
		{name: "at the limit, no burst", perMinute: 6000, wantLeased: 1000, wantMin: 3 * 6000 * 9 / 10},
		{name: "under the limit", perMinute: 60000, burst: 20000, wantLeased: 100000, wantMin: 2000 + 4*34000}, // every request
	} {
		t.Run(tc.name, func(t *testing.T) {
			clock := newFakeClock()
			r := newRateLimiter(Deps{Now: clock.Now, Logger: zerolog.Nop()}.withDefaults())
			user := pbRateLimit(tc.perMinute, tc.burst, 60, 10)
			var (
				used                 []int64 // when each admitted request was admitted, grain's or lease's
				left                 int32
				until, at            int64
				returned, returnedAt = int32(0), int64(0)
				leased               int
			)
			start := clock.Now().UnixMilli()
			for clock.Now().UnixMilli()-start < 180_000 {
				now := clock.Now().UnixMilli()
				// One request per step for 10 s, then four: permits leased at the slow rate leave
				// the window while the node asks for more than it can have.
				for range 1 + 3*min(1, (now-start)/10_000) {
					if left > 0 && now >= until {
						returned, returnedAt, left = left, at, 0
					}
					if left > 0 {
						left--
						used = append(used, now)
						leased++
						continue
					}
					res := r.decide(leaseRequest(user, 20, returned, returnedAt))
					returned = 0
					if res.GetUser().GetAllowed() {
						used = append(used, now)
					}
					if res.GetLeased() > 0 {
						// The node's own end of the lease: its clock when it sent the request, plus 100 ms.
						left, until, at = res.GetLeased(), now+100, res.GetLeaseUntilMs()
					}
				}
				clock.Advance(5 * time.Millisecond)
			}
			for i, j, k := 0, 0, 0; i < len(used); i++ { // j, k: the oldest admission in the window, in the burst window
				for used[i]-used[j] >= 60_000 {
					j++
				}
				for used[i]-used[k] >= 10_000 {
					k++
				}
				if i-j+1 > int(tc.perMinute) || (tc.burst > 0 && i-k+1 > int(tc.burst)) {
					t.Fatalf("at +%d ms: %d admitted in the last 60 s (limit %d), %d in the last 10 s (burst %d)",
						used[i]-start, i-j+1, tc.perMinute, i-k+1, tc.burst)
				}
			}
			if leased == 0 || leased < tc.wantLeased {
				t.Errorf("%d requests admitted from leases, want at least max(1, %d)", leased, tc.wantLeased)
			}
			if len(used) < tc.wantMin {
				t.Errorf("admitted %d requests in three minutes, want at least %d", len(used), tc.wantMin)
			}
			t.Logf("admitted %d in 3 minutes, %d of them from leases", len(used), leased)
		})
	}
}
