package gateway_test

import (
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tether-go/tether/broker"
	"github.com/tether-go/tether/gateway"
	"github.com/tether-go/tether/internal/leakcheck"
	"github.com/tether-go/tether/internal/testkit"
)

// TestUpstreamRefusalIsNotAnOutage: when the server refuses the gateway's
// client (here: it wants a token the client does not send), a call fails
// at once with -32001 named tether.auth-failed, an error that matches
// broker.ErrAuthFailed in the gateway's process (the tether command's exit
// code depends on it), and tells an HTTP client that the gateway was
// refused, without the server's address.
func TestUpstreamRefusalIsNotAnOutage(t *testing.T) {
	leakcheck.Check(t)
	addr := startShop(t, newShop(), broker.WithToken("right"))
	e := (&env{shop: newShop()}).connect(t, addr)

	_, err := e.gw.Call(testkit.Ctx(t, time.Minute), "shop.Add", json.RawMessage(`[1, 2]`))
	require.ErrorIs(t, err, broker.ErrAuthFailed)
	var ge *gateway.Error
	require.True(t, errors.As(err, &ge))
	assert.Equal(t, gateway.CodeRefused, ge.Code)
	assert.Equal(t, broker.Unauthenticated, broker.CodeOf(err))
	assert.Equal(t, "unauthenticated", ge.Data.Code)
	assert.Equal(t, "tether.auth-failed", ge.Data.Name)

	code, msg, name := e.failure(t, "shop.Add", 1, 2)
	assert.Equal(t, gateway.CodeRefused, code)
	assert.Equal(t, "tether.auth-failed", name)
	assert.Contains(t, msg, "authentication failed: the gateway was refused by its server")
	assert.NotContains(t, msg, addr)
}
