package gateway_test

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tether-go/tether/broker"
	"github.com/tether-go/tether/gateway"
	"github.com/tether-go/tether/internal/leakcheck"
	"github.com/tether-go/tether/internal/logbuf"
	"github.com/tether-go/tether/internal/testkit"
)

// logLines are the JSON log lines written to buf whose message is msg.
func logLines(t *testing.T, buf *logbuf.Buffer, msg string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		if line == "" {
			continue
		}
		var m map[string]any
		require.NoError(t, json.Unmarshal([]byte(line), &m), line)
		if m["msg"] == msg {
			out = append(out, m)
		}
	}
	return out
}

// waitLines waits for n access-log lines and returns them.
func waitLines(t *testing.T, buf *logbuf.Buffer, n int) []map[string]any {
	t.Helper()
	testkit.Eventually(t, "the access log's lines", func() bool { return len(logLines(t, buf, "tether gateway: request")) >= n })
	return logLines(t, buf, "tether gateway: request")
}

// TestAccessLog: WithLogger writes one line per HTTP request, at Info,
// with the HTTP fields, the JSON-RPC method or methods and the error
// codes; and the upstream link going down and up.
func TestAccessLog(t *testing.T) {
	leakcheck.Check(t)
	var buf logbuf.Buffer
	logger := slog.New(slog.NewJSONHandler(&buf, nil))
	e := newEnv(t, nil, gateway.WithLogger(logger), gateway.WithToken("s3cret"))
	auth := []string{"Authorization", "Bearer s3cret"}

	e.post(t, `{"jsonrpc":"2.0","id":1,"method":"shop.Add","params":[1,2]}`, auth...)
	e.post(t, `{"jsonrpc":"2.0","id":2,"method":"shop.Add","params":["x"]}`, auth...)
	e.post(t, `[{"jsonrpc":"2.0","id":3,"method":"shop.Add","params":[1,2]},{"jsonrpc":"2.0","id":4,"method":"shop.Nope"}]`, auth...)
	e.post(t, `{"jsonrpc":"2.0","id":5,"method":"shop.Add","params":[1,2]}`)
	s := e.watch(t, "shop.Model", "", auth...)
	assert.Equal(t, "snapshot", s.next(t).Kind)
	s.close()

	lines := waitLines(t, &buf, 5)
	require.Len(t, lines, 5, buf.String())
	for _, l := range lines {
		assert.Equal(t, "INFO", l["level"])
		assert.Contains(t, l["remote"], "127.0.0.1:")
		assert.IsType(t, 0.0, l["duration"], "a duration, in nanoseconds in JSON")
	}
	one := lines[0]
	assert.Equal(t, "POST", one["method"])
	assert.Equal(t, "/", one["path"])
	assert.Equal(t, 200.0, one["status"])
	assert.Equal(t, "shop.Add", one["rpc"])
	assert.NotContains(t, one, "code", "no error")
	assert.Equal(t, float64(gateway.CodeInvalidParams), lines[1]["code"])
	batch := lines[2]
	assert.Equal(t, 2.0, batch["batch"])
	assert.Equal(t, []any{"shop.Add", "shop.Nope"}, batch["rpc"], "in the batch's order")
	assert.Equal(t, []any{float64(gateway.CodeMethodNotFound)}, batch["codes"])
	assert.Equal(t, 401.0, lines[3]["status"])
	assert.Equal(t, float64(gateway.CodeUnauthorized), lines[3]["code"])
	watch := lines[4]
	assert.Equal(t, "GET", watch["method"])
	assert.Equal(t, gateway.WatchPath, watch["path"])
	assert.Equal(t, "shop.Model", watch["rpc"])
	assert.Equal(t, 200.0, watch["status"])

	// The upstream link goes down and comes back.
	e.proxy.Reset()
	testkit.Eventually(t, "the link's fall and return are logged", func() bool {
		return len(logLines(t, &buf, "tether gateway: upstream link down; requests fail with -32001 until it is back")) == 1 &&
			len(logLines(t, &buf, "tether gateway: upstream link up")) >= 1
	})
	down := logLines(t, &buf, "tether gateway: upstream link down; requests fail with -32001 until it is back")[0]
	assert.Equal(t, "WARN", down["level"])
	assert.NotEmpty(t, down["err"])
	resp, err := http.Get(e.http.URL + gateway.HealthPath)
	require.NoError(t, err)
	resp.Body.Close()
	health := waitLines(t, &buf, 6)[5]
	assert.Equal(t, gateway.HealthPath, health["path"])
	assert.NotContains(t, health, "rpc")
}

// TestWithLoggerNilIsRefused: a nil logger is a mistake, not "silent".
func TestWithLoggerNilIsRefused(t *testing.T) {
	_, err := gateway.New(nil, gateway.WithLogger(nil))
	assert.ErrorIs(t, err, broker.ErrInvalidOption)
	assert.Contains(t, err.Error(), "WithLogger")
}
