package actors

import (
	"slices"
	"sort"
)

// limits are the rate limits of one decision, in milliseconds (docs/api.md "Rate limits").
type limits struct {
	perWindow   int   // perMinute: requests admitted per window
	burst       int   // requests admitted per burst window; <= 0 disables the burst check
	windowMs    int64 // windowSec * 1000
	burstWindow int64 // burstWindowSec * 1000
}

// decision is the outcome of one rate-limit check.
type decision struct {
	allowed      bool
	limit        int
	remaining    int
	resetAtMs    int64
	retryAfterMs int64 // 0 when allowed
}

// slidingWindow holds the epoch-millisecond timestamps of admitted requests, oldest first. Only
// admitted requests are recorded (docs/api.md "Rate limits", so a client that keeps retrying is not starved).
type slidingWindow struct {
	admitted []int64
}

// decide applies docs/api.md's sliding window at time now: the request is allowed iff fewer than
// perWindow requests were admitted in the last window AND fewer than burst in the last burst window.
// An allowed request is recorded. Timestamps older than both windows are pruned first, so the state
// never grows beyond max(perWindow, burst) entries.
//
// "In the last window" means now − t < window: a request admitted exactly one window ago no longer counts.
func (w *slidingWindow) decide(now int64, lim limits) decision {
	keep := max(lim.windowMs, lim.burstWindow)
	w.prune(now - keep)

	inWindow := w.since(now - lim.windowMs)
	count := len(inWindow)
	var inBurst []int64
	burstBlocked := false
	if lim.burst > 0 {
		inBurst = w.since(now - lim.burstWindow)
		burstBlocked = len(inBurst) >= lim.burst
	}
	windowBlocked := count >= lim.perWindow

	if !windowBlocked && !burstBlocked {
		if n := len(w.admitted); n == 0 || w.admitted[n-1] <= now {
			w.admitted = append(w.admitted, now)
		} else {
			w.recordAt(now, 1) // behind a lease's permits, recorded at its end
		}
		oldest := now
		if count > 0 {
			oldest = inWindow[0]
		}
		return decision{
			allowed:   true,
			limit:     lim.perWindow,
			remaining: max(0, lim.perWindow-count-1),
			resetAtMs: oldest + lim.windowMs,
		}
	}

	d := decision{limit: lim.perWindow, resetAtMs: now + lim.windowMs}
	if count > 0 {
		d.resetAtMs = inWindow[0] + lim.windowMs
	}
	// Retry-After: the time until every blocking window has a free slot. A window with n ≥ limit
	// entries frees its (n−limit+1)-th slot when entry n−limit leaves it.
	if windowBlocked {
		d.retryAfterMs = max(d.retryAfterMs, freesAt(inWindow, lim.perWindow, lim.windowMs)-now)
	}
	if burstBlocked {
		d.retryAfterMs = max(d.retryAfterMs, freesAt(inBurst, lim.burst, lim.burstWindow)-now)
	}
	if lim.perWindow <= 0 {
		// A zero limit never frees a slot; tell the client to come back after a whole window.
		d.retryAfterMs = lim.windowMs
	}
	d.retryAfterMs = max(d.retryAfterMs, 1)
	return d
}

// freesAt is the time at which a window holding ts (oldest first, len(ts) ≥ limit > 0) drops below limit.
func freesAt(ts []int64, limit int, window int64) int64 {
	if limit <= 0 || len(ts) < limit {
		return 0
	}
	return ts[len(ts)-limit] + window
}

// since returns the admitted timestamps t with t > cutoff, oldest first (a subslice, not a copy).
// Binary search: a large limit (thousands per window) must not make every decision linear.
func (w *slidingWindow) since(cutoff int64) []int64 {
	i := sort.Search(len(w.admitted), func(i int) bool { return w.admitted[i] > cutoff })
	return w.admitted[i:]
}

// prune drops timestamps t ≤ cutoff. It reslices, and compacts into the backing array only once
// half of it is dead, so pruning is amortised O(1) per admitted request.
func (w *slidingWindow) prune(cutoff int64) {
	i := sort.Search(len(w.admitted), func(i int) bool { return w.admitted[i] > cutoff })
	if i == 0 {
		return
	}
	w.admitted = w.admitted[i:]
	if len(w.admitted) < cap(w.admitted)/2 {
		w.admitted = append(make([]int64, 0, max(8, 2*len(w.admitted))), w.admitted...)
	}
}

// empty reports whether no admitted request is still relevant at now.
func (w *slidingWindow) empty(now int64, lim limits) bool {
	w.prune(now - max(lim.windowMs, lim.burstWindow))
	return len(w.admitted) == 0
}

// room is how many more requests the window would admit at now: the free slots of the window and
// of the burst window, whichever is fewer.
func (w *slidingWindow) room(now int64, lim limits) int {
	free := lim.perWindow - len(w.since(now-lim.windowMs))
	if lim.burst > 0 {
		free = min(free, lim.burst-len(w.since(now-lim.burstWindow)))
	}
	return max(0, free)
}

// recordAt records n admissions at ts, which may lie in the future (a lease's end), keeping the
// timestamps sorted. A future timestamp counts in every decision until ts + window.
func (w *slidingWindow) recordAt(ts int64, n int) {
	i := sort.Search(len(w.admitted), func(i int) bool { return w.admitted[i] > ts })
	w.admitted = slices.Insert(w.admitted, i, slices.Repeat([]int64{ts}, n)...)
}

// drop removes up to n admissions recorded at exactly ts (permits of a lease given back).
func (w *slidingWindow) drop(ts int64, n int) {
	i := sort.Search(len(w.admitted), func(i int) bool { return w.admitted[i] >= ts })
	j := i
	for j < len(w.admitted) && j-i < n && w.admitted[j] == ts {
		j++
	}
	w.admitted = slices.Delete(w.admitted, i, j)
}
