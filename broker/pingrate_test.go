//go:build go1.25

package broker

import (
	"testing"
	"testing/synctest"

	"github.com/stretchr/testify/require"
)

// TestReadGuardPingRate checks that the bucket refills at one ping per
// pingInterval, so that yamux keepalives at the minimum dead-peer timeout
// always pass.
//
// It runs in a synctest bubble, where the clock stands still while the
// test computes: on the real clock, a loaded machine could take a
// pingInterval over the loop and refill a token that "but not faster"
// expects to be missing.
func TestReadGuardPingRate(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := guardFor(t, dialSide)
		require.NoError(t, g.scan(yxPings(pingBurst)))
		// As if time passed: keepalives every pingInterval, for a long time.
		for i := 0; i < 1000; i++ {
			g.refilled = g.refilled.Add(-pingInterval)
			require.NoError(t, g.scan(yxPings(1)), "keepalive %d", i)
		}
		require.ErrorIs(t, g.scan(yxPings(1)), ErrProtocol, "but not faster")
	})
}
