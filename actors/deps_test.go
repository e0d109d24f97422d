package actors

import (
	"bytes"
	"context"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// goroutineID is the running goroutine's number, from its stack trace's first line.
func goroutineID(t *testing.T) int {
	var buf [64]byte
	line := buf[:runtime.Stack(buf[:], false)]
	line = bytes.TrimPrefix(line, []byte("goroutine "))
	id, err := strconv.Atoi(string(line[:bytes.IndexByte(line, ' ')]))
	if err != nil {
		t.Fatalf("goroutine id: %v", err)
	}
	return id
}

func TestAfterWork(t *testing.T) {
	t.Run("every piece runs once and Wait waits for work started meanwhile", func(t *testing.T) {
		var w AfterWork
		var ran atomic.Int64
		var wg sync.WaitGroup
		for range 8 {
			wg.Go(func() {
				for range 200 {
					w.Go(func() {
						ran.Add(1)
						// Work that starts more work before it ends, as a removal's report does.
						w.Go(func() { ran.Add(1) })
					})
				}
			})
		}
		wg.Wait()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := w.Wait(ctx); err != nil {
			t.Fatal(err)
		}
		if got := ran.Load(); got != 8*200*2 {
			t.Fatalf("ran %d pieces, want %d", got, 8*200*2)
		}
	})
	t.Run("a goroutine that finished waits for the next piece", func(t *testing.T) {
		var w AfterWork
		ids := map[int]bool{}
		for range 20 {
			got := make(chan int, 1)
			w.Go(func() { got <- goroutineID(t) })
			ids[<-got] = true
			if err := w.Wait(context.Background()); err != nil {
				t.Fatal(err)
			}
			time.Sleep(5 * time.Millisecond) // the worker is back waiting for work
		}
		if len(ids) != 1 {
			t.Fatalf("20 pieces one after another ran on %d goroutines, want 1", len(ids))
		}
	})
	t.Run("Wait gives up with its context", func(t *testing.T) {
		var w AfterWork
		release := make(chan struct{})
		w.Go(func() { <-release })
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
		defer cancel()
		if err := w.Wait(ctx); err == nil {
			t.Fatal("Wait returned while work ran")
		}
		close(release)
		if err := w.Wait(context.Background()); err != nil {
			t.Fatal(err)
		}
	})
}
