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
