//go:build !unix

package rag_test

import "time"

// processCPU is unavailable here; benchmarks report 0.
func processCPU() time.Duration { return 0 }
