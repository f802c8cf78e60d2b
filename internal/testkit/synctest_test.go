//go:build go1.25

package testkit

import (
	"strings"
	"testing"
	"testing/synctest"
	"time"
)

// TestEventuallyFailsNamingWhatItWaitedFor runs in a synctest bubble, whose
// clock jumps over the Patience that Eventually waits out.
func TestEventuallyFailsNamingWhatItWaitedFor(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rec := &recorder{TB: t}
		start := time.Now()
		func() {
			defer func() {
				if p := recover(); p != nil && p != rec {
					panic(p)
				}
			}()
			Eventually(rec, "pigs to fly", func() bool { return false })
		}()
		if rec.fatal == "" {
			t.Fatal("Eventually returned for a condition that never holds")
		}
		if want := "waiting for pigs to fly"; !strings.Contains(rec.fatal, want) {
			t.Fatalf("the failure reads %q, want it to contain %q", rec.fatal, want)
		}
		if waited := time.Since(start); waited < Patience {
			t.Fatalf("gave up after %v, before Patience (%v)", waited, Patience)
		}
	})
}
