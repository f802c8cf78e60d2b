package cache_test

import (
	"testing"
	"time"
	"weak"

	"github.com/stretchr/testify/require"

	"github.com/tether-go/tether/cache"
	"github.com/tether-go/tether/internal/leakcheck"
	"github.com/tether-go/tether/internal/testkit"
	"github.com/tether-go/tether/remoteable"
)

// watchAndForget obtains the model as a mirror through ref, connects fn to
// its Changed signal, and drops the mirror and the disconnect function:
// the natural code of one who wants only the events. (A kept disconnect
// function would keep the mirror reachable.) It returns a weak pointer, to
// watch the mirror's fate.
//
//go:noinline
func watchAndForget(t testing.TB, ref remoteable.Caller, fn func(cache.Change[string, Item])) weak.Pointer[cache.Mirror[string, Item]] {
	var mir *cache.Mirror[string, Item]
	require.NoError(t, ref.Call(testkit.Ctx(t, 90*time.Second), "Model", &mir))
	mir.Changed.Connect(fn)
	return weak.Make(mir)
}

// valueWatchAndForget does the same with a Value's mirror and its
// StaleChanged signal, connected before the call.
//
//go:noinline
func valueWatchAndForget(t testing.TB, ref remoteable.Caller) weak.Pointer[cache.ValueMirror[int]] {
	vm := cache.NewValueMirror[int]()
	vm.StaleChanged.Connect(func(bool) {})
	require.NoError(t, ref.Call(testkit.Ctx(t, 90*time.Second), "Counter", &vm))
	return weak.Make(vm)
}

// TestWatchedMirrorKeepsFollowing: a mirror kept only for its signals (a
// function connected, the mirror dropped) is not collected: it goes on
// following its model and calling the function, as a local model's
// watcher goes on hearing its writer, until it is closed (or its functions
// disconnected); then it is released like any mirror nobody holds.
func TestWatchedMirrorKeepsFollowing(t *testing.T) {
	leakcheck.Check(t)
	st := newStore()
	_, ref := dialStore(t, startServer(t, st))
	seen := make(chan int, 16)
	wm := watchAndForget(t, ref, func(c cache.Change[string, Item]) { seen <- c.Value.Count })
	for i := range 4 {
		gcRounds()
		require.NotNil(t, wm.Value(), "a watched mirror is not collected")
		require.NoError(t, st.m.Set("k", Item{Count: i}))
		select {
		case got := <-seen:
			require.Equal(t, i, got)
		case <-time.After(30 * time.Second):
			t.Fatalf("change %d never reached the watcher of a dropped mirror", i)
		}
	}
	require.Equal(t, 1, st.m.Subscribers(), "the watched mirror is still subscribed")
	require.NoError(t, wm.Value().Close())
	collected(t, "closed, the mirror is released", func() bool { return wm.Value() == nil })
	require.Equal(t, 0, st.m.Subscribers())

	wv := valueWatchAndForget(t, ref)
	gcRounds()
	require.NotNil(t, wv.Value(), "a watched value mirror is kept too")
	require.Equal(t, 1, cache.ValueSubscribers(st.v))
	require.NoError(t, wv.Value().Close())
	collected(t, "closed, the value mirror is released", func() bool { return wv.Value() == nil })
}

// TestWatchedMirrorEndsWithItsConnection: a watched mirror nobody holds is
// released once it stops following for good (here its connection is
// closed): the pin ends with the follower, so neither the mirror nor its
// goroutines outlive it, and the owner drops the subscriber.
func TestWatchedMirrorEndsWithItsConnection(t *testing.T) {
	leakcheck.Check(t)
	st := newStore()
	conn, ref := dialStore(t, startServer(t, st))
	wm := watchAndForget(t, ref, func(cache.Change[string, Item]) {})
	gcRounds()
	require.NotNil(t, wm.Value(), "a watched mirror is not collected")
	require.NoError(t, conn.Close())
	collected(t, "its connection closed, the watched mirror is released", func() bool { return wm.Value() == nil })
	testkit.Eventually(t, "the owner drops the subscriber", func() bool { return st.m.Subscribers() == 0 })
}
