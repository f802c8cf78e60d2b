package remote

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tether-go/tether/broker"
	"github.com/tether-go/tether/internal/leakcheck"
	"github.com/tether-go/tether/internal/testkit"
	"github.com/tether-go/tether/registry"
)

// TestClosedClientErrSaysTetherOnce: Err on a closed client is
// broker.ErrClosed with one "tether:" prefix (it read "tether: client
// closed: tether: closed"), and says the same as a call on it.
func TestClosedClientErrSaysTetherOnce(t *testing.T) {
	leakcheck.Check(t)
	s := startServer(t, "127.0.0.1:0", publish(t, newUsers("x")))
	cl := connect(t, s.addr)
	require.NoError(t, cl.WaitConnected(testkit.Ctx(t, time.Minute)))
	require.NoError(t, cl.Close())
	err := cl.Err()
	require.ErrorIs(t, err, broker.ErrClosed)
	assert.Equal(t, 1, strings.Count(err.Error(), "tether:"), "a repeated prefix: %v", err)
	_, callErr := cl.Registry().Lookup(testkit.Ctx(t, time.Minute), "users")
	require.ErrorIs(t, callErr, broker.ErrClosed)
	assert.Equal(t, callErr.Error(), err.Error(), "Err says what a call made now fails with")
}

// TestRelayRegistryListDuringOutageSaysTetherOnce: a registry whose
// upstream is down lists its own names and an error that matches
// ErrDisconnected and starts "tether:" once (it read "registry: upstream:
// tether: disconnected: ..."), here and for a peer that asks it.
func TestRelayRegistryListDuringOutageSaysTetherOnce(t *testing.T) {
	leakcheck.Check(t)
	var reg *registry.Registry
	ch := startChain(t, func(up *Client) any {
		reg = registry.New(registry.WithUpstream(up.Registry()))
		require.NoError(t, reg.Register("local", newUsers("relay")))
		return reg
	})
	ctx := testkit.Ctx(t, time.Minute)
	require.NoError(t, ch.up.WaitConnected(ctx))
	ch.link.Refuse(true)
	ch.link.Reset()
	waitState(t, ch.up, Waiting)
	defer ch.link.Restore()

	names, err := reg.List(ctx)
	assert.Equal(t, []string{"local"}, names)
	require.ErrorIs(t, err, ErrDisconnected)
	assert.True(t, strings.HasPrefix(err.Error(), "tether: "), err.Error())
	assert.Equal(t, 1, strings.Count(err.Error(), "tether:"), "a repeated prefix: %v", err)

	_, err = ch.client.Registry().List(ctx)
	require.ErrorIs(t, err, ErrDisconnected)
	assert.True(t, strings.HasPrefix(err.Error(), "tether: "), err.Error())
	assert.Equal(t, 1, strings.Count(err.Error(), "tether:"), "a repeated prefix: %v", err)
}
