package testkit

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"
)

// recorder stands in for a test, so that a failure can be observed rather
// than failing the real test.
type recorder struct {
	testing.TB
	cleanups []func()
	fatal    string
}

func (r *recorder) Helper()          {}
func (r *recorder) Cleanup(f func()) { r.cleanups = append(r.cleanups, f) }

// Fatalf records the message and ends the calling goroutine, as the real
// Fatalf does.
func (r *recorder) Fatalf(format string, args ...any) {
	r.fatal = fmt.Sprintf(format, args...)
	panic(r)
}

// finish runs the cleanups, last registered first.
func (r *recorder) finish() {
	for i := len(r.cleanups) - 1; i >= 0; i-- {
		r.cleanups[i]()
	}
}

func TestCtxEndsWithTheTest(t *testing.T) {
	rec := &recorder{TB: t}
	ctx := Ctx(rec, time.Hour)
	if err := ctx.Err(); err != nil {
		t.Fatalf("a fresh context is done: %v", err)
	}
	if _, ok := ctx.Deadline(); !ok {
		t.Fatal("the context has no deadline")
	}
	rec.finish()
	if !errors.Is(ctx.Err(), context.Canceled) {
		t.Fatalf("after the test the context's error is %v, want Canceled", ctx.Err())
	}
}

func TestCtxEndsAfterItsDuration(t *testing.T) {
	ctx := Ctx(t, time.Millisecond)
	<-ctx.Done()
	if !errors.Is(ctx.Err(), context.DeadlineExceeded) {
		t.Fatalf("the context's error is %v, want DeadlineExceeded", ctx.Err())
	}
}

func TestEventuallyWaitsForTheCondition(t *testing.T) {
	var n atomic.Int32
	Eventually(t, "the fifth check", func() bool { return n.Add(1) == 5 })
	if got := n.Load(); got != 5 {
		t.Fatalf("cond ran %d times, want 5", got)
	}
}

func TestWriterStepsUntilStopped(t *testing.T) {
	var steps atomic.Int64
	stop := Writer(t, func(i int) {
		if int64(i) != steps.Load() {
			t.Errorf("step %d came after %d steps", i, steps.Load())
		}
		steps.Add(1)
	})
	Eventually(t, "a hundred steps", func() bool { return steps.Load() >= 100 })
	stop()
	n := steps.Load()
	time.Sleep(10 * time.Millisecond)
	if steps.Load() != n {
		t.Fatalf("%d steps after stop returned", steps.Load()-n)
	}
	stop() // a second stop (and the cleanup's) returns at once
}
