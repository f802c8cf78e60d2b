//go:build go1.25

package leakcheck

import (
	"fmt"
	"testing"
	"testing/synctest"
	"time"
)

// recorder captures what Check reports instead of failing the real test.
type recorder struct {
	testing.TB
	cleanups []func()
	errors   []string
}

func (r *recorder) Cleanup(f func()) { r.cleanups = append(r.cleanups, f) }
func (r *recorder) Errorf(format string, args ...any) {
	r.errors = append(r.errors, fmt.Sprintf(format, args...))
}
func (r *recorder) Helper() {}

func (r *recorder) finish() {
	for i := len(r.cleanups) - 1; i >= 0; i-- {
		r.cleanups[i]()
	}
}

// TestReportsLeakedGoroutine runs in a synctest bubble: Check's wait and
// the goroutine that ends in time sleep on the bubble's clock, so whether
// the goroutine ends before Check gives up does not depend on the
// machine's load.
func TestReportsLeakedGoroutine(t *testing.T) {
	synctest.Test(t, reportsLeakedGoroutine)
}

// reportsLeakedGoroutine is the test's body, run in the bubble.
func reportsLeakedGoroutine(t *testing.T) {
	old := Wait
	Wait = 100 * time.Millisecond
	defer func() { Wait = old }()

	stop := make(chan struct{})
	rec := &recorder{TB: t}
	Check(rec)
	go func() { <-stop }()
	rec.finish()
	close(stop)
	if len(rec.errors) != 1 {
		t.Fatalf("want one leak report, got %v", rec.errors)
	}

	rec = &recorder{TB: t}
	Check(rec)
	done := make(chan struct{})
	go func() { time.Sleep(20 * time.Millisecond); close(done) }()
	rec.finish()
	<-done
	if len(rec.errors) != 0 {
		t.Fatalf("a goroutine that ends in time is not a leak: %v", rec.errors)
	}
}
