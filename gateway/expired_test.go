package gateway_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tether-go/tether/broker"
	"github.com/tether-go/tether/gateway"
	"github.com/tether-go/tether/internal/leakcheck"
	"github.com/tether-go/tether/internal/testkit"
)

// TestHandleExpiresWhenItsServerRestarts: after the server restarts, a
// handle that the gateway cannot obtain again (the call that returned it
// is not idempotent) answers with its own code, not the outage's; one it
// can obtain again works.
func TestHandleExpiresWhenItsServerRestarts(t *testing.T) {
	leakcheck.Check(t)
	e := newEnv(t, nil)
	made := e.result(t, "shop.Make", "once").(map[string]any)["$ref"].(string)
	opened := e.result(t, "shop.Open", "again").(map[string]any)["$ref"].(string)
	assert.Equal(t, 1.0, e.result(t, made+".Add", 1))
	assert.Equal(t, 1.0, e.result(t, opened+".Add", 1))

	// A new server process takes the old one's place.
	e.proxy.SetTarget(startShop(t, newShop()))
	e.proxy.Reset()
	testkit.Eventually(t, "calls work again", func() bool {
		return e.call(t, "shop.Add", 1, 2)["result"] == 3.0
	})

	code, msg, name := e.failure(t, made+".Add", 1)
	assert.Equal(t, gateway.CodeHandleExpired, code, msg)
	assert.Equal(t, "handle expired: obtain it again", msg)
	assert.Equal(t, "tether.handle-expired", name)
	m := e.call(t, made+".Add", 1)
	assert.Equal(t, "failed_precondition", m["error"].(map[string]any)["data"].(map[string]any)["code"], "retrying does not help")

	// In Go, the error still says what it was.
	_, err := e.gw.Call(testkit.Ctx(t, time.Minute), made+".Name", nil)
	assert.ErrorIs(t, err, broker.ErrDeadReference)
	var ge *gateway.Error
	require.ErrorAs(t, err, &ge)
	assert.Equal(t, gateway.CodeHandleExpired, ge.Code)

	// The handle obtained by an idempotent call is obtained again: a new
	// counter on the new server.
	assert.Equal(t, 1.0, e.result(t, opened+".Add", 1))

}
