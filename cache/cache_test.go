package cache_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tether-go/tether/broker"
	"github.com/tether-go/tether/cache"
	"github.com/tether-go/tether/internal/leakcheck"
	"github.com/tether-go/tether/internal/testkit"
)

func TestMirrorHoldsSnapshotWhenCallReturns(t *testing.T) {
	leakcheck.Check(t)
	ctx := testkit.Ctx(t, 90*time.Second)
	st := newStore()
	for i := 0; i < 10; i++ {
		require.NoError(t, st.m.Set(string(rune('a'+i)), Item{Name: "n", Count: i}))
	}
	s := startServer(t, st)
	conn, err := broker.Dial(ctx, "tcp", s.addr)
	require.NoError(t, err)
	defer conn.Close()
	storeRef, err := broker.Call[*broker.Ref](ctx, conn.Root(), "Lookup", "store")
	require.NoError(t, err)

	var mir *cache.Mirror[string, Item]
	require.NoError(t, storeRef.Call(ctx, "Model", &mir))
	require.Equal(t, 10, mir.Len())
	require.Equal(t, st.m.Version(), mir.Version())
	require.Equal(t, st.m.Epoch(), mir.Epoch())
	got, ok := mir.Get("c")
	require.True(t, ok)
	require.Equal(t, Item{Name: "n", Count: 2}, got)
	require.False(t, mir.Stale())

	// Read-your-writes: the change a call made is in the mirror when it returns.
	require.NoError(t, storeRef.Call(ctx, "Put", nil, "zz", 99))
	got, ok = mir.Get("zz")
	require.True(t, ok)
	require.Equal(t, 99, got.Count)
	var removed bool
	require.NoError(t, storeRef.Call(ctx, "Remove", &removed, "a"))
	require.True(t, removed)
	_, ok = mir.Get("a")
	require.False(t, ok)
	require.Equal(t, st.m.Version(), mir.Version())

	require.NoError(t, mir.Close())
	testkit.Eventually(t, "the owner drops the subscription", func() bool { return st.m.Subscribers() == 0 })
}
