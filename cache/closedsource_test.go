package cache_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tether-go/tether/broker"
	"github.com/tether-go/tether/cache"
	"github.com/tether-go/tether/internal/leakcheck"
	"github.com/tether-go/tether/internal/testkit"
	"github.com/tether-go/tether/remoteable"
)

// republisher hands out the mirror it keeps (a typed relay).
type republisher struct {
	remoteable.Referenceable
	mir *cache.Mirror[string, Item]
}

// Model returns the mirror it keeps: the caller gets a mirror of it.
func (r *republisher) Model(ctx context.Context) (*cache.Mirror[string, Item], error) {
	return r.mir, nil
}

// TestMirrorOfAClosedMirrorIsLost: server → P → client, where P republishes
// a mirror it keeps; P's user closes that mirror. The client's mirror can
// no longer follow anything: it says so (Err matches ErrSourceLost, Lost
// fires) rather than staying stale for ever with no error, or with an
// error that matches no sentinel. Before, the client's resubscription to
// the closed mirror's feed succeeded, and the mirror sat stale with Err
// "the model's owner ended the subscription".
func TestMirrorOfAClosedMirrorIsLost(t *testing.T) {
	leakcheck.Check(t)
	model := cache.NewMap[string, Item]()
	require.NoError(t, model.Set("a", Item{Count: 1}))
	srv := startPlainServer(t, model)
	mid := plainMirror(t, connect(t, srv.addr))
	addr := serveManager(t, "mid", &republisher{mir: mid})

	cl := connect(t, addr)
	mgr, err := cl.Registry().Lookup(testkit.Ctx(t, 90*time.Second), "mid")
	require.NoError(t, err)
	var down *cache.Mirror[string, Item]
	require.NoError(t, mgr.Call(testkit.Ctx(t, 90*time.Second), "Model", &down))
	t.Cleanup(func() { down.Close() })
	lostc := make(chan error, 4)
	down.Lost.Connect(func(err error) { lostc <- err })
	requireEqualModel(t, model, down)

	require.NoError(t, mid.Close())
	select {
	case err := <-lostc:
		require.ErrorIs(t, err, cache.ErrSourceLost)
		require.Equal(t, broker.FailedPrecondition, broker.CodeOf(err))
		require.True(t, strings.HasPrefix(err.Error(), "tether: "), err.Error())
		require.Equal(t, 1, strings.Count(err.Error(), "tether:"), err.Error())
	case <-time.After(20 * time.Second):
		t.Fatalf("the client's mirror never reported its source closed; Err: %v, stale: %v", down.Err(), down.Stale())
	}
	require.ErrorIs(t, down.Err(), cache.ErrSourceLost)
	require.True(t, down.Stale())
	v, _ := down.Get("a")
	require.Equal(t, 1, v.Count, "the mirror keeps its last state")
}
