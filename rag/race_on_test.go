//go:build race

package rag_test

// raceEnabled: the race detector slows local/minilm's forward pass about twentyfold, so the
// quality table (hundreds of embeddings) runs without it; its concurrency is tested elsewhere.
const raceEnabled = true
