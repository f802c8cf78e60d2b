package cache_test

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tether-go/tether/cache"
	"github.com/tether-go/tether/internal/leakcheck"
	"github.com/tether-go/tether/internal/testkit"
)

// TestLastChangeOfBurstArrives: the feed publishes a change's tail only
// when a pusher waits for it, else leaves it pending for the pusher's
// next look (internal/feed, Feed.publish). Bursts of every length, each
// followed by quiet, must still bring every mirror to the burst's last
// change: a pusher that was busy while the burst ended and then waits
// must publish the pending tail itself, since no change follows to do so.
func TestLastChangeOfBurstArrives(t *testing.T) {
	leakcheck.Check(t)
	st := newStore()
	s := startServer(t, st)
	cl := connect(t, s.addr)
	mirs := []*cache.Mirror[string, Item]{lookupMirror(t, cl), lookupMirror(t, cl), lookupMirror(t, cl)}
	rounds := 300
	if raceEnabled {
		rounds = 100
	}
	// The last version is counted, not read: Map.Version takes the
	// feed's lock, and its unlock publishes a pending tail for a waiting
	// pusher (internal/feed, Feed.unlock), which would hide the loss this
	// test looks for.
	last := st.m.Version()
	for r := range rounds {
		for i := range r%40 + 1 {
			k := fmt.Sprint("k", i%7)
			if i%5 == 4 {
				if st.m.Delete(k) {
					last++
				}
				continue
			}
			if err := st.m.Set(k, Item{Name: k, Count: r}); err != nil {
				t.Fatal(err)
			}
			last++
		}
		for j, mir := range mirs {
			testkit.Eventually(t, fmt.Sprint("mirror ", j, " at version ", last, " after burst ", r), func() bool {
				return mir.Version() == last
			})
		}
	}
	require.Equal(t, last, st.m.Version())
	for _, mir := range mirs {
		requireEqualModel(t, st.m, mir)
	}
}
