package feed

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tether-go/tether/internal/leakcheck"
	"github.com/tether-go/tether/internal/testkit"
)

// TestMirrorLogsOnceSentOn: a mirror's feed logs nothing while nobody can
// follow it (its publisher never sent to a peer); once it is sent, it
// logs the steps it applies from then on, and a mirror of it that resumes
// from there gets the steps, not a snapshot.
func TestMirrorLogsOnceSentOn(t *testing.T) {
	leakcheck.Check(t)
	src := New(0, nil)
	dial := serveFeed(t, src)
	ctx := testkit.Ctx(t, 60*time.Second)
	sink := &intSink{state: map[string]int{}}
	fl := NewFollower(dial(), sink, Options{})
	require.NoError(t, fl.Attach(ctx))
	t.Cleanup(fl.Close)
	mid := fl.Feed()

	write := func(n int) uint64 {
		for i := range n {
			src.Set(enc(fmt.Sprint("k", i%7)), enc(i))
		}
		v := src.Version()
		testkit.Eventually(t, "the mirror follows", func() bool { return mid.Version() == v })
		return v
	}
	write(100)
	n, _, _ := logState(mid)
	require.Zero(t, n, "a mirror nobody can follow keeps no log")

	// Its feed served to a peer, as a relay or a method returning the
	// mirror would.
	down := NewFollower(serveFeed(t, mid)(), &intSink{state: map[string]int{}}, Options{})
	require.NoError(t, down.Attach(ctx))
	t.Cleanup(down.Close)
	from := write(1)
	to := write(100)
	testkit.Eventually(t, "the mirror downstream follows", func() bool { return down.Feed().Version() == to })
	n, _, first := logState(mid)
	require.Equal(t, int(to-from+1), n, "it logs what it applies once sent on")
	require.LessOrEqual(t, first, from-1)
	mid.mu.Lock()
	defer mid.mu.Unlock()
	require.True(t, mid.covered(from), "a mirror downstream that resumes from there gets the steps")
}
