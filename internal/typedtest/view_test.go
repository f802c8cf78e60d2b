package typedtest

import (
	"context"
	"io"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tether-go/tether/broker"
	"github.com/tether-go/tether/cache"
	"github.com/tether-go/tether/internal/faultnet"
	"github.com/tether-go/tether/internal/leakcheck"
	"github.com/tether-go/tether/internal/testkit"
	"github.com/tether-go/tether/internal/testkit/brokertest"
	"github.com/tether-go/tether/registry"
)

// TestViewIsEnoughForTypedCode: code that holds only the cache.View a
// typed stub returned watches staleness (StaleChanges), learns why a
// mirror cannot follow (Err), and releases the mirror at once through
// io.Closer, without asserting *cache.Mirror; the local model answers the
// same methods (never stale, no error) and is not an io.Closer, since
// whoever holds its View must not end it.
func TestViewIsEnoughForTypedCode(t *testing.T) {
	leakcheck.Check(t)
	ctx := testkit.Ctx(t, time.Minute)
	mgr := NewManager()
	reg := registry.New()
	require.NoError(t, reg.Register("users", mgr))
	_, addr := brokertest.Serve(t, reg, broker.WithName("server"))
	proxy, err := faultnet.New(addr)
	require.NoError(t, err)
	t.Cleanup(func() { proxy.Close() })
	users := remoteUsers(t, ctx, connect(t, proxy.Addr()))

	dir, err := users.Directory(ctx)
	require.NoError(t, err)
	stale := make(chan bool, 8)
	dir.StaleChanges().Connect(func(s bool) { stale <- s })
	require.NoError(t, dir.Err())
	require.Equal(t, 1, mgr.Dir.Subscribers())

	proxy.Refuse(true)
	proxy.Reset()
	assert.True(t, next(t, ctx, stale), "StaleChanges fires true when the link is cut")
	assert.True(t, dir.Stale())
	proxy.Restore()
	assert.False(t, next(t, ctx, stale), "and false once the mirror has resumed")
	assert.NoError(t, dir.Err())

	c, ok := dir.(io.Closer)
	require.True(t, ok, "a mirror received as a View can be closed")
	require.NoError(t, c.Close())
	require.Eventually(t, func() bool { return mgr.Dir.Subscribers() == 0 }, 30*time.Second, 10*time.Millisecond,
		"closing it ends its subscription on the owner")

	local, err := mgr.Directory(ctx)
	require.NoError(t, err)
	assert.NoError(t, local.Err())
	assert.NotNil(t, local.StaleChanges())
	_, closable := local.(io.Closer)
	assert.False(t, closable, "the model itself cannot be ended through its View")
	var vv cache.ValueView[int] = cache.NewValue(1)
	assert.NoError(t, vv.Err())
	assert.NotNil(t, vv.StaleChanges())
}

// next returns the next value from ch, failing t when none comes before
// ctx ends.
func next[T any](t *testing.T, ctx context.Context, ch <-chan T) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-ctx.Done():
		t.Fatalf("nothing came: %v", ctx.Err())
		var zero T
		return zero
	}
}
