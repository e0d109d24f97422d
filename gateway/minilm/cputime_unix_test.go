//go:build unix

package minilm

import (
	"syscall"
	"time"
)

// cpuTime is the user+system CPU time of the process so far: on a machine
// shared with other work, CPU time per operation is steadier than wall time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
