package remote

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tether-go/tether/broker"
	"github.com/tether-go/tether/internal/leakcheck"
)

// TestClosedClientErrSaysTetherOnce: Err on a closed client is
// broker.ErrClosed with one "tether:" prefix (it read "tether: client
// closed: tether: closed"), and says the same as a call on it.
func TestClosedClientErrSaysTetherOnce(t *testing.T) {
	leakcheck.Check(t)
	s := startServer(t, "127.0.0.1:0", publish(t, newUsers("x")))
	cl := connect(t, s.addr)
	require.NoError(t, cl.WaitConnected(testCtx(t)))
	require.NoError(t, cl.Close())
	err := cl.Err()
	require.ErrorIs(t, err, broker.ErrClosed)
	assert.Equal(t, 1, strings.Count(err.Error(), "tether:"), "a repeated prefix: %v", err)
	_, callErr := cl.Registry().Lookup(testCtx(t), "users")
	require.ErrorIs(t, callErr, broker.ErrClosed)
	assert.Equal(t, callErr.Error(), err.Error(), "Err says what a call made now fails with")
}
