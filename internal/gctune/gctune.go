// Package gctune gives the Go garbage collector a floor of headroom: a collection starts once the
// heap grew by at least a fixed number of bytes over what the last one left live, or by the live
// heap itself (GOGC=100, the runtime's default), whichever is more.
//
// A gateway's live heap is small (tens of MiB) while it allocates fast (tens of KiB per request),
// so with GOGC=100 alone it collects many times a second, and each collection has a fixed cost
// (stacks, globals, the mark workers' start and stop) beside the marking. Under /chat load at
// 3,000 requests a second that was 6–8 % of the node's CPU. With a floor of headroom the small heap
// collects a few times less often, for some MiB of memory; a large heap (a million idle sessions)
// is left to GOGC=100, where the headroom is its own size anyway. A GOMEMLIMIT still bounds it all.
package gctune

import (
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync"
)

// defaultPercent is GOGC's default, the least this package sets.
const defaultPercent = 100

// maxPercent bounds the percent set.
const maxPercent = 10_000

// heapMinimum is the runtime's least heap goal at GOGC=100; at another percent it scales with it
// (4 MiB × GOGC/100), so below it the percent alone sets the goal.
const heapMinimum = 4 << 20

// Tuner sets the collector's percent after every collection. Start one per process.
type Tuner struct {
	headroom uint64

	mu      sync.Mutex
	stopped bool
	percent int // last set
	before  int // the percent when it started, restored by Stop
	sample  []metrics.Sample
}

// Start starts a tuner that keeps at least headroom bytes between the live heap and the next
// collection. It returns nil (nothing to stop) when headroom is 0.
func Start(headroom uint64) *Tuner {
	if headroom == 0 {
		return nil
	}
	t := &Tuner{headroom: headroom, sample: []metrics.Sample{{Name: "/gc/heap/live:bytes"}}}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.percent = t.target()
	t.before = debug.SetGCPercent(t.percent)
	t.arm()
	return t
}

// Percent is the percent the tuner set last.
func (t *Tuner) Percent() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.percent
}

// Stop stops tuning and restores the percent found at Start.
func (t *Tuner) Stop() {
	if t == nil {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.stopped {
		return
	}
	t.stopped = true
	debug.SetGCPercent(t.before)
}

// sentinel is garbage whose cleanup runs after the collection that found it unreachable. It holds
// a pointer so that it is not a tiny allocation (whose cleanups may never run).
type sentinel struct{ _ *Tuner }

// arm allocates the next sentinel. Called with mu held.
func (t *Tuner) arm() {
	runtime.AddCleanup(&sentinel{}, (*Tuner).collected, t)
}

// collected runs after each collection: it sets the percent for the next one, and arms again.
func (t *Tuner) collected() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.stopped {
		return
	}
	if p := t.target(); p != t.percent {
		t.percent = p
		debug.SetGCPercent(p)
	}
	t.arm()
}

// target is the percent that puts the next collection headroom bytes past the live heap, or at
// twice the live heap when that is further. Called with mu held.
func (t *Tuner) target() int {
	metrics.Read(t.sample)
	live := uint64(0)
	if t.sample[0].Value.Kind() == metrics.KindUint64 {
		live = t.sample[0].Value.Uint64()
	}
	return percentFor(live, t.headroom)
}

// percentFor is the GOGC percent that starts a collection once the heap grew by headroom over live
// bytes, never less than the default (growth by live) nor more than maxPercent. The percent is
// rounded up to a multiple of 10 % of the default, so that small changes of the live heap do not
// change it after every collection.
func percentFor(live, headroom uint64) int {
	live = max(live, heapMinimum)
	p := headroom * 100 / live
	if p <= defaultPercent {
		return defaultPercent
	}
	if p >= maxPercent {
		return maxPercent
	}
	return int((p + 9) / 10 * 10)
}
