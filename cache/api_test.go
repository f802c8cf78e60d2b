package cache_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tether-go/tether/broker"
	"github.com/tether-go/tether/cache"
	"github.com/tether-go/tether/internal/leakcheck"
)

func dialStore(t *testing.T, s *server) (*broker.Conn, *broker.Ref) {
	ctx := testCtx(t)
	conn, err := broker.Dial(ctx, "tcp", s.addr)
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close() })
	ref, err := broker.Call[*broker.Ref](ctx, conn.Root(), "Lookup", "store")
	require.NoError(t, err)
	return conn, ref
}

func TestValueMirror(t *testing.T) {
	leakcheck.Check(t)
	ctx := testCtx(t)
	st := newStore()
	require.NoError(t, st.v.Set(41))
	_, ref := dialStore(t, startServer(t, st))
	var vm *cache.ValueMirror[int]
	require.NoError(t, ref.Call(ctx, "Counter", &vm))
	defer vm.Close()
	require.Equal(t, 41, vm.Get())
	require.Equal(t, st.v.Version(), vm.Version())
	got := make(chan cache.Change[struct{}, int], 1)
	vm.Changed.Connect(func(c cache.Change[struct{}, int]) { got <- c })
	require.NoError(t, st.v.Set(42))
	c := <-got
	require.Equal(t, 42, c.Value)
	require.Equal(t, st.v.Version(), c.Version)
	require.Equal(t, 42, vm.Get())
}

func TestMirrorAsArgumentAndModelComingHome(t *testing.T) {
	leakcheck.Check(t)
	ctx := testCtx(t)
	st := newStore()
	_, ref := dialStore(t, startServer(t, st))

	// The client's own model, passed as an argument, is a mirror for the
	// handler, attached before it runs.
	mine := cache.NewMap[string, int]()
	require.NoError(t, mine.Set("x", 7))
	var seen int
	require.NoError(t, ref.Call(ctx, "Watch", &seen, mine))
	require.Equal(t, 7, seen)
	eventually(t, "the handler's mirror is dropped", func() bool { return mine.Subscribers() == 0 })

	// The server's model sent back to it is the model itself, not a mirror.
	var feed *broker.Ref
	require.NoError(t, ref.Call(ctx, "Model", &feed))
	require.True(t, feed.Cacheable())
	var same bool
	require.NoError(t, ref.Call(ctx, "IsMine", &same, feed))
	require.True(t, same)
	feed.Release()
}

func TestMirrorOfTheWrongTypeIsAClearError(t *testing.T) {
	leakcheck.Check(t)
	ctx := testCtx(t)
	st := newStore()
	require.NoError(t, st.m.Set("a", Item{Count: 1}))
	_, ref := dialStore(t, startServer(t, st))
	var wrong *cache.Mirror[int, string]
	err := ref.Call(ctx, "Model", &wrong)
	require.Error(t, err)
	require.Contains(t, err.Error(), "cannot attach mirror")
	require.Contains(t, err.Error(), "cannot decode")
	eventually(t, "nothing is left subscribed", func() bool { return st.m.Subscribers() == 0 })

	// A model is not received into a plain struct or a string.
	var s string
	err = ref.Call(ctx, "Model", &s)
	require.ErrorIs(t, err, broker.ErrBadReply)

	// The connection still serves.
	var mir *cache.Mirror[string, Item]
	require.NoError(t, ref.Call(ctx, "Model", &mir))
	require.Equal(t, 1, mir.Len())
	require.NoError(t, mir.Close())
}

func TestObserversOfAClosedConnectionAreDropped(t *testing.T) {
	leakcheck.Check(t)
	ctx := testCtx(t)
	st := newStore()
	s := startServer(t, st)
	conn, ref := dialStore(t, s)
	for i := 0; i < 5; i++ {
		var mir *cache.Mirror[string, Item]
		require.NoError(t, ref.Call(ctx, "Model", &mir))
	}
	require.Equal(t, 5, st.m.Subscribers())
	require.NoError(t, conn.Close())
	eventually(t, "subscriptions of the closed connection dropped", func() bool { return st.m.Subscribers() == 0 })
	require.NoError(t, st.m.Set("after", Item{}))
}

func TestLocalMapEvents(t *testing.T) {
	m := cache.NewMap[string, int]()
	require.Equal(t, uint64(0), m.Version())
	ch := make(chan cache.Change[string, int], 10)
	stop := m.Changed.Connect(func(c cache.Change[string, int]) { ch <- c })
	defer stop()
	require.NoError(t, m.Set("a", 1))
	require.False(t, m.Delete("nope"), "deleting an absent key is not a change")
	require.True(t, m.Delete("a"))
	require.Equal(t, cache.Change[string, int]{Key: "a", Value: 1, Version: 1}, <-ch)
	require.Equal(t, cache.Change[string, int]{Key: "a", Value: 1, Deleted: true, Version: 2}, <-ch)
	require.Equal(t, uint64(2), m.Version())
	require.Error(t, cache.NewMap[string, any]().Set("ch", make(chan int)), "values that cannot travel are refused")
	var _ context.Context
}
