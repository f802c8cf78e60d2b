package gateway_test

import (
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tether-go/tether/gateway"
	"github.com/tether-go/tether/internal/faultnet"
	"github.com/tether-go/tether/internal/leakcheck"
	"github.com/tether-go/tether/internal/testkit"
	"github.com/tether-go/tether/internal/testkit/brokertest"
	"github.com/tether-go/tether/registry"
)

// probe GETs (or HEADs) /healthz and returns the status and the body.
func (e *env) probe(t *testing.T, method string) (int, map[string]string) {
	t.Helper()
	req, err := http.NewRequestWithContext(testkit.Ctx(t, time.Minute), method, e.http.URL+gateway.HealthPath, nil)
	require.NoError(t, err)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	var body map[string]string
	if method == http.MethodGet {
		require.NoError(t, json.NewDecoder(resp.Body).Decode(&body))
	}
	return resp.StatusCode, body
}

// TestHealthz: 200 while the upstream serves (without the bearer token
// JSON-RPC requests need), 503 once it drains and while it is out of
// reach, 200 again when the gateway's client reaches its successor, 503
// once the gateway is closed.
func TestHealthz(t *testing.T) {
	leakcheck.Check(t)
	reg := registry.New()
	require.NoError(t, reg.Register("shop", newShop()))
	a, addrA := brokertest.Serve(t, reg)
	_, addrB := brokertest.Serve(t, reg)
	proxy, err := faultnet.New(addrA)
	require.NoError(t, err)
	t.Cleanup(func() { proxy.Close() })
	e := (&env{}).connect(t, proxy.Addr(), gateway.WithToken("secret"))
	ctx := testkit.Ctx(t, time.Minute)
	require.NoError(t, e.cl.WaitConnected(ctx))

	status, body := e.probe(t, http.MethodGet)
	assert.Equal(t, http.StatusOK, status)
	assert.Equal(t, map[string]string{"status": "serving", "link": "connected"}, body)
	status, _ = e.probe(t, http.MethodHead)
	assert.Equal(t, http.StatusOK, status)

	require.NoError(t, a.Shutdown(ctx))
	status, body = e.probe(t, http.MethodGet)
	assert.Equal(t, http.StatusServiceUnavailable, status)
	assert.Contains(t, []string{"draining", "unreachable"}, body["status"], "%v", body)

	proxy.SetTarget(addrB)
	require.Eventually(t, func() bool {
		status, _ := e.probe(t, http.MethodGet)
		return status == http.StatusOK
	}, 20*time.Second, 10*time.Millisecond, "the gateway reaches the next server")

	require.NoError(t, e.gw.Close())
	status, body = e.probe(t, http.MethodGet)
	assert.Equal(t, http.StatusServiceUnavailable, status)
	assert.Equal(t, "closed", body["status"])
}
