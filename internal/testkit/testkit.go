package testkit

import (
	"context"
	"sync"
	"testing"
	"time"
)

// Patience is how long Eventually waits for its condition. It bounds a
// liveness wait, not a timing assertion: reaching it means the condition
// never held, even on a loaded machine.
const Patience = 30 * time.Second

// pollMin and pollMax bound the interval between two checks of a condition:
// a condition that holds almost at once is seen within a millisecond, and
// an expensive one (an HTTP round trip, a lock the code under test wants)
// is not checked more often than every 20 ms.
const (
	pollMin = time.Millisecond
	pollMax = 20 * time.Millisecond
)

// Ctx returns a context that ends after d or when the test ends, whichever
// comes first, so that a deadlocked test fails instead of hanging. It is
// cancelled by a cleanup registered now, after the cleanups registered
// before the call and before those registered after it.
func Ctx(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// Eventually checks cond until it holds and fails the test, naming what it
// waited for, if it does not hold within Patience. cond runs on the test's
// goroutine, so it may use the test's assertions.
func Eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(Patience)
	interval := pollMin
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", Patience, what)
		}
		time.Sleep(interval)
		interval = min(2*interval, pollMax)
	}
}

// Writer runs step(0), step(1), ... in a goroutine of its own until the
// returned stop is called, or until the test ends: a model's writer that
// goes on while the test looks. stop waits for the goroutine, and may be
// called more than once.
func Writer(t testing.TB, step func(i int)) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-done:
				return
			default:
			}
			step(i)
		}
	}()
	stop = sync.OnceFunc(func() { close(done); wg.Wait() })
	t.Cleanup(stop)
	return stop
}
