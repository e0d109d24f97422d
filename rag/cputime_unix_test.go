//go:build unix

package rag_test

import (
	"syscall"
	"time"
)

// processCPU is the user+system CPU time of the process so far: on a machine shared with other
// work, CPU time per query is steadier than wall time.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
