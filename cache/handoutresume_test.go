package cache_test

import (
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tether-go/tether/cache"
	"github.com/tether-go/tether/internal/feed"
	"github.com/tether-go/tether/internal/leakcheck"
	"github.com/tether-go/tether/internal/testkit"
)

// TestHandedOutMirrorWaitsForItsHolderToResume: a mirror handed out by a
// manager that does not keep it lives while the peer holds it. When that
// peer's link dies, the peer's mirror comes back with the feed's token:
// the handed-out mirror must still be there (as a relay's mirror is, for
// its resume window), not collected the moment the link died.
func TestHandedOutMirrorWaitsForItsHolderToResume(t *testing.T) {
	leakcheck.Check(t)
	st := newStore()
	require.NoError(t, st.m.Set("a", Item{Count: 1}))
	down := proxyTo(t, startHandout(t, st))
	cl := connect(t, down.Addr())
	mgr, err := cl.Registry().Lookup(testkit.Ctx(t, 90*time.Second), "handout")
	require.NoError(t, err)
	var mir *cache.Mirror[string, Item]
	require.NoError(t, mgr.Call(testkit.Ctx(t, 90*time.Second), "Model", &mir))
	t.Cleanup(func() { mir.Close() })
	rec := watch(mir, &mir.StaleChanged)

	down.Refuse(true)
	down.Reset()
	rec.waitStale(t, true)
	time.Sleep(time.Second) // the handout's server notices the link died
	gcRounds()
	require.NoError(t, st.m.Set("a", Item{Count: 2}))
	down.Restore()
	testkit.Eventually(t, "the mirror resumes or is lost", func() bool {
		v, _ := mir.Get("a")
		return errors.Is(mir.Err(), cache.ErrSourceLost) || v.Count == 2
	})
	require.NotErrorIs(t, mir.Err(), cache.ErrSourceLost)
	testkit.Eventually(t, "the mirror catches up", func() bool { v, _ := mir.Get("a"); return v.Count == 2 })
}

// TestHandedOutMirrorIsCollectedWhenItsHolderNeverComesBack: the hold
// after a link died lasts ResumeHold only; then the handed-out mirror is
// collected and the model upstream drops it.
func TestHandedOutMirrorIsCollectedWhenItsHolderNeverComesBack(t *testing.T) {
	leakcheck.Check(t)
	old := feed.ResumeHold
	feed.ResumeHold = 300 * time.Millisecond
	t.Cleanup(func() { feed.ResumeHold = old })
	st := newStore()
	require.NoError(t, st.m.Set("a", Item{Count: 1}))
	down := proxyTo(t, startHandout(t, st))
	cl := connect(t, down.Addr())
	mgr, err := cl.Registry().Lookup(testkit.Ctx(t, 90*time.Second), "handout")
	require.NoError(t, err)
	var mir *cache.Mirror[string, Item]
	require.NoError(t, mgr.Call(testkit.Ctx(t, 90*time.Second), "Model", &mir))
	t.Cleanup(func() { mir.Close() })
	require.Equal(t, 1, st.m.Subscribers())

	down.Refuse(true)
	down.Reset()
	collected(t, "the handed-out mirror is collected after the hold", func() bool { return st.m.Subscribers() == 0 })
}
