package gctune

import (
	"runtime"
	"runtime/debug"
	"testing"
	"time"
)

func TestPercentFor(t *testing.T) {
	const mib = 1 << 20
	for _, tc := range []struct {
		name           string
		live, headroom uint64
		want           int
	}{
		{"small heap: the headroom sets the goal", 16 * mib, 64 * mib, 400},
		{"rounded up to a multiple of 10", 15 * mib, 64 * mib, 430},
		{"heap as large as the headroom: the default", 64 * mib, 64 * mib, 100},
		{"large heap: the default, never less", 2048 * mib, 64 * mib, 100},
		{"below the runtime's heap minimum, as if at it", 1 * mib, 64 * mib, 1600},
		{"nothing measured yet", 0, 64 * mib, 1600},
		{"bounded", 0, 1 << 40, maxPercent},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := percentFor(tc.live, tc.headroom); got != tc.want {
				t.Fatalf("percentFor(%d, %d) = %d, want %d", tc.live, tc.headroom, got, tc.want)
			}
		})
	}
}

// TestTunerFollowsCollections checks the tuner against the runtime: it sets the percent at
// start, sets it again after collections as the live heap changes, and Stop restores the percent
// it found.
func TestTunerFollowsCollections(t *testing.T) {
	before := debug.SetGCPercent(100)
	defer debug.SetGCPercent(before)

	if Start(0) != nil {
		t.Fatal("Start(0) started a tuner")
	}
	tu := Start(64 << 20)
	if got := debug.SetGCPercent(-1); got != tu.Percent() || got <= 100 {
		t.Fatalf("percent after Start: %d (tuner says %d), want it above 100", got, tu.Percent())
	}
	debug.SetGCPercent(tu.Percent())

	// A live heap larger than the headroom: after a collection the tuner goes back to 100.
	hold := make([][]byte, 0, 96)
	for range 96 {
		hold = append(hold, make([]byte, 1<<20))
	}
	deadline := time.Now().Add(10 * time.Second)
	for tu.Percent() != 100 {
		if time.Now().After(deadline) {
			t.Fatalf("percent %d with 96 MiB live and 64 MiB of headroom, want 100", tu.Percent())
		}
		runtime.GC()
		time.Sleep(10 * time.Millisecond) // cleanups run on their own goroutine
	}
	runtime.KeepAlive(hold)
	hold = nil

	// The heap empties again: the percent rises again.
	deadline = time.Now().Add(10 * time.Second)
	for tu.Percent() == 100 {
		if time.Now().After(deadline) {
			t.Fatal("percent stayed 100 after the live heap shrank")
		}
		runtime.GC()
		time.Sleep(10 * time.Millisecond)
	}

	tu.Stop()
	if got := debug.SetGCPercent(100); got != 100 {
		t.Fatalf("percent after Stop: %d, want the 100 found at Start", got)
	}
	runtime.GC()
	time.Sleep(10 * time.Millisecond)
	if got := debug.SetGCPercent(100); got != 100 {
		t.Fatalf("a stopped tuner set the percent to %d", got)
	}
}
