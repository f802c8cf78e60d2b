//go:build go1.25

package remote

import (
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tether-go/tether/internal/feed"
	"github.com/tether-go/tether/internal/leakcheck"
)

// TestIdleEventsDoNotPileUpDropTimers: each time a relay mirror's last
// holder leaves (its connection died: a resume window begins), the relay
// asks for a drop check. Before, each request added a timer, and a timer
// that fired within a window re-armed itself, so under churn (holders
// that come, fail and never return, while the window keeps being
// extended) a relay mirror gathered one live timer per idle event until a
// quiet minute. Now a relay mirror has at most one pending check.
//
// It runs in a synctest bubble: the drop checks are the process's own
// timers, so the bubble's clock fires them without the test waiting.
func TestIdleEventsDoNotPileUpDropTimers(t *testing.T) {
	leakcheck.Check(t)
	synctest.Test(t, idleEventsDoNotPileUpDropTimers)
}

// idleEventsDoNotPileUpDropTimers is the test's body, run in the bubble.
func idleEventsDoNotPileUpDropTimers(t *testing.T) {
	rm := &relayMirrors{}
	m := &relayMirror{fl: feed.NewFollower(nil, nil, feed.Options{}), ready: make(chan struct{})}
	close(m.ready)
	rm.all = map[*relayMirror]struct{}{m: {}}
	t.Cleanup(rm.closeAll)
	before := pendingDropChecks.Load()
	for i := 0; i < 100; i++ {
		// What the publisher's idle function (relayMirrors.idle) does when the
		// last holder's connection died.
		rm.mu.Lock()
		m.keep = time.Now().Add(time.Hour)
		rm.mu.Unlock()
		rm.dropAfter(m, time.Hour)
	}
	require.Equal(t, int64(1), pendingDropChecks.Load()-before, "pending drop checks")
	// An earlier check (a holder released it) still comes first.
	rm.mu.Lock()
	m.keep = time.Time{}
	rm.mu.Unlock()
	rm.dropAfter(m, 10*time.Millisecond)
	time.Sleep(10 * time.Millisecond)
	synctest.Wait() // the check that fired has run
	rm.mu.Lock()
	_, still := rm.all[m]
	rm.mu.Unlock()
	require.False(t, still, "the relay mirror was not dropped after its last holder released it")
}
